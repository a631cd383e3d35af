"""Converting under the TensorFlow backend from a JAX or PyTorch process.

Keras picks its backend once per process, and TFLite, SavedModel and ONNX
conversion (tf2onnx) need TensorFlow's. A `.keras` file holds no trace of
the backend that trained it, so a model built on JAX or PyTorch is saved to
a temporary `.keras` file and converted in a child process with
`KERAS_BACKEND=tensorflow` (`python -m keras_slim.deploy.conversion_child`).
The caller then checks the file against its own model (`export._check`), so
the parity check compares the export with the backend that trained the
model.

Custom layers must be importable in the child (registered with
`keras.saving.register_keras_serializable` in a module it imports); the
error says so when loading fails there.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

from keras_slim.core.files import write_bytes
from keras_slim.deploy.onnx_export import write_onnx
from keras_slim.deploy.tflite import tflite_flatbuffer

__all__ = [
    "child_environment",
    "convert_in_tensorflow",
    "write_one",
    "write_runtime_files",
]


_CHILD = (sys.executable, "-m", "keras_slim.deploy.conversion_child")


def _package_root():
    # keras_slim/deploy/conversion_process.py -> the folder holding keras_slim
    here = os.path.abspath(__file__)
    return os.path.dirname(os.path.dirname(os.path.dirname(here)))


def child_environment():
    """This process's environment with the TensorFlow backend and this
    keras_slim first on the path."""
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "tensorflow"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _package_root() + (os.pathsep + path if path else "")
    return env


def convert_in_tensorflow(model, path, format, quantize, representative,
                          names):
    """Write `model` to `path` in a TensorFlow-backend child process.

    Args:
        model: the Keras model (any backend). Not modified.
        path: the file or directory to write.
        format: "tflite", "saved_model" or "onnx".
        quantize: None, "dynamic" or "int8".
        representative: a list of arrays (one per input, in the order of
            `names`) or None.
        names: the model's input names.

    Returns:
        The size in bytes of what was written.

    Raises:
        RuntimeError: the child failed (its last error line is quoted).
    """
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "model.keras")
        model.save(saved)
        command = [*_CHILD, "export", saved, os.path.abspath(path), format,
                   quantize or "none"]
        if representative is not None:
            data = os.path.join(tmp, "representative.npz")
            np.savez(data, **dict(zip(names, representative)))
            command.append(data)
        _run_child(command)
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, f))
                   for root, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def _run_child(command):
    done = subprocess.run(command, env=child_environment(), text=True,
                          capture_output=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise RuntimeError(
            "The conversion under the TensorFlow backend failed: "
            f"{reason}. (Custom layers must be registered in a module the "
            "child process imports.)"
        )


def write_one(model, path, format, batch=None):
    """Write `model` (TensorFlow backend) to `path` as "onnx" or "tflite",
    inputs at batch `batch` (`None`: the model's own; TFLite: 1)."""
    if format == "onnx":
        write_onnx(model, path, batch=batch)
    else:
        write_bytes(path, tflite_flatbuffer(model, batch or 1))


def write_runtime_files(models, paths, format, batch=None):
    """Write each model to its path as "onnx" or "tflite", inputs at batch
    `batch`, for a runtime to time.

    Under the TensorFlow backend in this process; under another, all the
    models in one TensorFlow-backend child process, so that a latency
    table's dozens of small models start TensorFlow once.

    Raises:
        RuntimeError: a conversion failed.
    """
    import keras

    if format not in ("onnx", "tflite"):
        raise ValueError(
            'Expected `format` to be "onnx" or "tflite". '
            f"Received: format={format!r}"
        )
    if keras.backend.backend() == "tensorflow":
        for model, path in zip(models, paths):
            write_one(model, path, format, batch)
        return
    command = [*_CHILD, "write", format, str(batch or 0)]
    with tempfile.TemporaryDirectory() as tmp:
        for index, (model, path) in enumerate(zip(models, paths)):
            saved = os.path.join(tmp, f"model_{index}.keras")
            model.save(saved)
            command += [saved, os.path.abspath(path)]
        _run_child(command)

