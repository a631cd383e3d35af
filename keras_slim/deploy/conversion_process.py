"""Converting under the TensorFlow backend from a JAX or PyTorch process.

Keras picks its backend once per process, and TFLite, SavedModel and ONNX
conversion (tf2onnx) need TensorFlow's. A `.keras` file holds no trace of
the backend that trained it, so a model built on JAX or PyTorch is saved to
a temporary `.keras` file and `keras-slim export --no-check` converts it in
a child process with `KERAS_BACKEND=tensorflow`. The caller then checks the
file against its own model (`export._check`), so the parity check compares
the export with the backend that trained the model.

Custom layers must be importable in the child (registered with
`keras.saving.register_keras_serializable` in a module it imports); the
error says so when loading fails there.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

import keras_slim

__all__ = [
    "child_environment",
    "convert_in_tensorflow",
    "write_runtime_files",
]


def _package_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(keras_slim.__file__)))


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
    command = [sys.executable, "-m", "keras_slim.tools.cli", "export"]
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "model.keras")
        model.save(saved)
        command += [saved, "-o", os.path.abspath(path), "--format", format,
                    "--no-check", "--unsafe"]
        if quantize is not None:
            command += ["--quantize", quantize]
        if representative is not None:
            data = os.path.join(tmp, "representative.npz")
            np.savez(data, **dict(zip(names, representative)))
            command += ["--representative-data", data]
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


def _write_one(model, path, format, batch):
    if format == "onnx":
        from keras_slim.deploy.onnx_export import write_onnx

        write_onnx(model, path, batch=batch)
    else:
        from keras_slim.deploy.timers import tflite_flatbuffer

        with open(path, "wb") as file:
            file.write(tflite_flatbuffer(model, batch or 1))


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
            _write_one(model, path, format, batch)
        return
    command = [sys.executable, "-c",
               "import sys; from keras_slim.deploy.conversion_process "
               "import _write_saved; _write_saved(sys.argv[1:])",
               format, str(batch or 0)]
    with tempfile.TemporaryDirectory() as tmp:
        for index, (model, path) in enumerate(zip(models, paths)):
            saved = os.path.join(tmp, f"model_{index}.keras")
            model.save(saved)
            command += [saved, os.path.abspath(path)]
        _run_child(command)


def _write_saved(argv):
    """The child's side of `write_runtime_files`:
    `FORMAT BATCH (SAVED PATH)...`."""
    import keras

    format, batch = argv[0], int(argv[1]) or None
    # The files were saved by `write_runtime_files` from models in the
    # caller's memory, so loading them runs no code the caller did not.
    for saved, path in zip(argv[2::2], argv[3::2]):
        model = keras.saving.load_model(saved, safe_mode=False)
        _write_one(model, path, format, batch)
