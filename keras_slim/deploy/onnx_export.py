"""ONNX files: written by Keras' own exporter, run with ONNX Runtime.

The second deployment target next to TFLite. `write_onnx` calls Keras'
`model.export(path, format="onnx")`, which under the TensorFlow backend
traces the model to a `tf.function` and converts it with tf2onnx (packages
`tf2onnx` and `onnx`). `ONNXModel` runs the file in ONNX Runtime
(`onnxruntime`), the way `tflite.TFLiteModel` runs a TFLite file in LiteRT;
`keras_slim.export(..., format="onnx")` uses both and checks the file
against Keras.
"""

import logging
import os
import warnings

import keras
import numpy as np

from keras_slim.core.files import atomic_path
from keras_slim.deploy.console import quiet_native_output

__all__ = [
    "input_signature",
    "ONNXModel",
    "random_feed",
    "session",
    "write_onnx",
]


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "Running ONNX files needs ONNX Runtime: pip install onnxruntime "
            "(or keras-slim[onnx])."
        ) from None
    return onnxruntime


def input_signature(model, batch=None):
    """`keras.InputSpec`s of the model's inputs, in the structure the model
    is called with (Keras' `input_signature`): batch size `batch`, or as
    the model's inputs have it when `None` (usually left open)."""
    spec = keras.tree.map_structure(
        lambda t: keras.InputSpec(
            shape=t.shape if batch is None else (batch,) + tuple(t.shape[1:]),
            dtype=t.dtype, name=t.name),
        model.input,
    )
    return [spec]


def write_onnx(model, path, batch=None):
    """Write `model` as an ONNX file with Keras' exporter.

    Args:
        model: a built functional or Sequential model.
        path: the `.onnx` file to write.
        batch: a fixed batch size for the file's inputs (`None`: the
            model's, usually left open).

    Raises:
        ImportError: tf2onnx or onnx is missing.
        RuntimeError: the conversion failed.
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "write_onnx converts under the TensorFlow backend; "
            "keras_slim.export runs it in a TensorFlow process for you."
        )
    for module in ("tf2onnx", "onnx"):
        try:
            __import__(module)
        except ImportError:
            raise ImportError(
                f"ONNX export needs `{module}`: pip install tf2onnx onnx "
                "(or keras-slim[onnx])."
            ) from None
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with quiet_native_output(), warnings.catch_warnings():
            # Keras patches tf2onnx for NumPy 2 (np.object) and warns.
            warnings.simplefilter("ignore")
            with atomic_path(path) as temporary:
                model.export(temporary, format="onnx", verbose=False,
                             input_signature=input_signature(model, batch))
    except (ImportError, RuntimeError):
        raise
    except Exception as error:  # tf2onnx's errors are pages long
        first = str(error).strip().splitlines()
        raise RuntimeError(
            "ONNX conversion failed: "
            f"{first[0] if first else type(error).__name__}"
        ) from error
    finally:
        logger.setLevel(level)


def session(path, num_threads=None, spinning=True):
    """An ONNX Runtime CPU session of the file at `path`.

    `spinning=False` stops its intra-op threads from spinning while they
    wait for work (ONNX Runtime's default spins): sessions timed in turns
    in one process then do not take the CPU from each other.
    """
    onnxruntime = _import_onnxruntime()
    if num_threads is not None and (
        not isinstance(num_threads, int) or isinstance(num_threads, bool)
        or num_threads < 1
    ):
        raise ValueError(
            "Expected `num_threads` to be an integer >= 1 or None. "
            f"Received: num_threads={num_threads!r}"
        )
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"No ONNX file at {path!r}.")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "0")
    try:
        return onnxruntime.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:
        first = str(error).strip().splitlines()
        raise ValueError(
            f"{path!r} is not an ONNX model: {first[0] if first else error}"
        ) from None


class ONNXModel:
    """An ONNX file in ONNX Runtime, called like a model.

    Args:
        path: the `.onnx` file.
        num_threads: intra-op threads (`None`: ONNX Runtime's default).

    Raises:
        ValueError: no such file, or not an ONNX model.
    """

    def __init__(self, path, num_threads=None):
        self.session = session(path, num_threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, inputs):
        """Float64 outputs, in the order of Keras' flattened outputs, for
        `inputs`: a list of arrays in the order of the model's inputs."""
        if len(inputs) != len(self.inputs):
            raise ValueError(
                f"The ONNX model has {len(self.inputs)} inputs "
                f"({self.inputs}); received {len(inputs)} arrays."
            )
        feed = {
            name: np.asarray(array, dtype=_numpy_type(detail.type))
            for name, array, detail in zip(
                self.inputs, inputs, self.session.get_inputs()
            )
        }
        results = self.session.run(None, feed)
        return [np.asarray(r, dtype="float64") for r in results]


def _numpy_type(onnx_type):
    """'tensor(float)' -> float32 and so on."""
    inner = onnx_type[len("tensor("):-1] if onnx_type.startswith("tensor(") \
        else onnx_type
    return {"float": "float32", "double": "float64", "float16": "float16",
            "int64": "int64", "int32": "int32", "int8": "int8",
            "uint8": "uint8", "bool": "bool"}.get(inner, "float32")


def random_feed(onnx_session, rng):
    """Random standard-normal inputs (batch 1) for every input of a session.

    Raises:
        ValueError: an input of unknown size (other than the batch).
    """
    feed = {}
    for detail in onnx_session.get_inputs():
        shape = list(detail.shape)
        if any(not isinstance(d, int) for d in shape[1:]):
            raise ValueError(
                f"Input `{detail.name}` has an unknown size {tuple(shape)}; "
                "cannot time it."
            )
        shape[0] = 1 if not isinstance(shape[0], int) else shape[0]
        feed[detail.name] = rng.standard_normal(shape).astype(
            _numpy_type(detail.type)
        )
    return feed
