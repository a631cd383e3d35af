"""The child process of `conversion_process`, run under the TensorFlow
backend as `python -m keras_slim.deploy.conversion_child`:

    export SAVED.keras OUT FORMAT QUANTIZE [REPRESENTATIVE.npz]
    write FORMAT BATCH (SAVED.keras OUT)...

`export` writes one model with `export(..., check=False)` (QUANTIZE is
"none", "dynamic" or "int8"; the caller checks the file against its own
model); `write` writes each model as "onnx" or "tflite" for a runtime to
time (BATCH 0: the model's own batch). The `.keras` files were saved by the
caller from models in its memory, so loading them runs no code the caller
did not. An error is one line on stderr and exit status 1.
"""

import sys

import numpy as np

from keras_slim.deploy.conversion_process import write_one
from keras_slim.deploy.export import export
from keras_slim.deploy.loading import load_model

__all__ = ["main"]


def _export(saved, path, format, quantize, representative=None):
    model = load_model(saved, unsafe=True)
    data = None
    if representative is not None:
        with np.load(representative, allow_pickle=False) as arrays:
            names = [t.name for t in model.inputs]
            if not set(names) <= set(arrays.files):
                names = arrays.files
            data = [arrays[name] for name in names]
    export(model, path, format=format,
           quantize=None if quantize == "none" else quantize,
           representative_data=data, check=False, verbose=False)


def _write(format, batch, *pairs):
    for saved, path in zip(pairs[::2], pairs[1::2]):
        write_one(load_model(saved, unsafe=True), path, format,
                  int(batch) or None)


def main(argv):
    """Run the child's command `argv` (see the module docstring)."""
    commands = {"export": _export, "write": _write}
    if not argv or argv[0] not in commands:
        sys.stderr.write(
            f"Expected a command, one of {', '.join(commands)}. "
            f"Received: {argv[:1]}\n")
        return 2
    try:
        commands[argv[0]](*argv[1:])
    except Exception as error:  # noqa: BLE001  (one line for the parent)
        message = " ".join(str(error).split()) or type(error).__name__
        sys.stderr.write(f"{type(error).__name__}: {message}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
