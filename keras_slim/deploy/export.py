"""Export to TFLite (LiteRT), ONNX or SavedModel, checked against Keras.

TensorFlow-specific: the core of keras_slim imports only Keras and NumPy.

How the conversion goes (TensorFlow 2.21, Keras 3.15): the model is written
as a SavedModel by `model.export(..., format="tf_saved_model")` and converted
by `tf.lite.TFLiteConverter.from_saved_model`, the route Keras' own
`format="litert"` export takes; BatchNormalization is folded into the
convolutions on the way. The TFLite file is then loaded in the LiteRT
interpreter (`ai_edge_litert`; `tf.lite.Interpreter` is deprecated) and run
on a few inputs against Keras. ONNX files are written by Keras'
`format="onnx"` export (tf2onnx) and checked in ONNX Runtime
(`onnx_export.py`). Under the JAX or PyTorch backend the conversion runs in
a TensorFlow-backend child process (`conversion_process.py`); the check
still runs here, against the model as this backend computes it.
"""

import dataclasses
import os
import tempfile
import warnings

import keras
import numpy as np

from keras_slim.core.files import atomic_path
from keras_slim.core.graph import check_model
from keras_slim.deploy.console import ProgressLine, quiet_native_output
from keras_slim.deploy.conversion_process import convert_in_tensorflow
from keras_slim.deploy.inputs import (  # noqa: F401  (re-exported)
    as_input_list,
    input_specs,
    keras_outputs,
    packed_inputs,
    random_inputs,
)
from keras_slim.deploy.onnx_export import ONNXModel, write_onnx
from keras_slim.deploy.tflite import TFLiteModel

__all__ = ["ExportResult", "FORMATS", "QUANTIZATIONS", "export"]

FORMATS = ("tflite", "saved_model", "onnx")
QUANTIZATIONS = (None, "dynamic", "int8")

# Largest |exported - keras| / max |keras| accepted, per output.
FLOAT_TOLERANCE = 1e-4
# Dynamic-range quantization stores weights in int8 and quantizes
# activations on the fly: differences of a few percent of the output range
# are normal.
DYNAMIC_TOLERANCE = 0.1
# Full-integer quantization: share of the checked examples whose top class
# must agree with Keras (classification outputs) ...
INT8_AGREEMENT = 0.9
# ... or the relative difference allowed for other outputs.
INT8_TOLERANCE = 0.2

CHECK_SAMPLES = 16  # parity inputs for float and dynamic-range exports
INT8_CHECK_SAMPLES = 256  # representative examples checked for int8


@dataclasses.dataclass
class ExportResult:
    """What `export` wrote and how well it agrees with Keras.

    Attributes:
        path: the file (TFLite, ONNX) or directory (SavedModel) written.
        format: "tflite", "saved_model" or "onnx".
        quantize: None, "dynamic" or "int8".
        size_bytes: size on disk (summed over a SavedModel's files).
        max_difference: largest |exported - keras| over the checked inputs
            and outputs (`None` when not checked).
        relative_difference: largest `max_difference / max |keras|` over
            the outputs.
        agreement: share of checked examples whose top class (argmax of
            each output wider than 1) agrees with Keras; int8 only.
        tolerance: the bound the check applied.
        checked: number of examples checked (0 when `check=False`).
    """

    path: str
    format: str
    quantize: object
    size_bytes: int
    max_difference: object = None
    relative_difference: object = None
    agreement: object = None
    tolerance: object = None
    checked: int = 0

    def summary(self):
        parts = [f"{self.path} ({self.size_bytes / 1024:.1f} KiB)"]
        if self.checked:
            parts.append(
                f"max difference {self.max_difference:.3g} "
                f"(relative {self.relative_difference:.3g}) on "
                f"{self.checked} inputs"
            )
        if self.agreement is not None:
            parts.append(f"top-1 agreement {self.agreement:.1%}")
        return ", ".join(parts)


def _check_choice(value, choices, argument):
    if value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"Expected `{argument}` to be one of {shown}. "
            f"Received: {argument}={value!r}"
        )


def _convert(saved_model_dir, quantize, representative, names):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "int8":
        def examples():
            for i in range(len(representative[0])):
                yield {n: a[i:i + 1] for n, a in zip(names, representative)}

        converter.representative_dataset = examples
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        ]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with quiet_native_output(), warnings.catch_warnings():
            # The calibration step of "int8" uses the deprecated
            # tf.lite.Interpreter inside TensorFlow; nothing we can change.
            warnings.simplefilter("ignore", UserWarning)
            return converter.convert()
    except Exception as error:  # the converter's errors are pages long
        first = str(error).strip().splitlines()
        raise RuntimeError(
            "TFLite conversion failed: "
            f"{first[0] if first else type(error).__name__}"
        ) from error


def _saved_model_size(path):
    return sum(
        os.path.getsize(os.path.join(root, f))
        for root, _, files in os.walk(path) for f in files
    )


def _differences(reference, exported):
    if len(reference) != len(exported):
        raise RuntimeError(
            f"The export has {len(exported)} outputs; Keras has "
            f"{len(reference)}."
        )
    absolute, relative = 0.0, 0.0
    for ref, got in zip(reference, exported):
        ref = ref.astype("float64")
        got = got.reshape(ref.shape)
        if not ref.size:
            continue
        # NaN or infinity on either side counts as an infinite difference
        # (NumPy's max would propagate NaN, which compares as "within").
        gap = np.abs(ref - got)
        same = (ref == got) | (np.isnan(ref) & np.isnan(got))
        gap = np.where(same, 0.0, gap)
        gap = np.where(np.isfinite(gap), gap, np.inf)
        diff = float(np.max(gap))
        absolute = max(absolute, diff)
        scale = float(np.max(np.abs(np.where(np.isfinite(ref), ref, 0.0))))
        relative = max(relative, diff / max(scale, 1e-30))
    return absolute, relative


def _agreement(reference, exported):
    shares = [
        float(np.mean(np.argmax(ref, -1) == np.argmax(got.reshape(ref.shape), -1)))
        for ref, got in zip(reference, exported) if ref.shape[-1] > 1
    ]
    return min(shares) if shares else None


def export(model, path, format="tflite", quantize=None,
           representative_data=None, check=True, verbose=False):
    """Write `model` as a TFLite file, an ONNX file or a SavedModel and
    check it.

    After writing, the export runs on a few inputs (the first examples of
    `representative_data`, or random normal ones) next to Keras:

    - float TFLite, ONNX and SavedModel: the largest difference must be within
      `FLOAT_TOLERANCE` (1e-4) of each output's largest magnitude;
    - `quantize="dynamic"` (int8 weights, float activations): within
      `DYNAMIC_TOLERANCE` (10%) of it;
    - `quantize="int8"` (integer weights, activations, inputs and outputs):
      on up to 256 representative examples, the top class must agree with
      Keras on at least `INT8_AGREEMENT` (90%) of them for outputs wider
      than 1, other outputs within `INT8_TOLERANCE` (20%).

    Args:
        model: a `keras.Model` (functional or Sequential). Not modified.
        path: the `.tflite` or `.onnx` file, or the SavedModel directory,
            to write.
        format: "tflite", "saved_model" or "onnx" (ONNX Runtime runs the
            check).
        quantize: None (float32), "dynamic" or "int8" (TFLite only).
        representative_data: example inputs: an array, a list of arrays (one
            per model input) or a dict input name -> array. Required for
            "int8" (it calibrates the activation ranges; a few hundred
            examples are enough); otherwise used for the check.
        check: run the check (default). With `False` nothing is compared.
        verbose: print a progress line per step.

    Returns:
        An `ExportResult` (path, size in bytes, differences, agreement).

    Raises:
        ValueError: a bad `format`, `quantize`, `path` or
            `representative_data`.
        TypeError: `model` is not a functional or Sequential model.
        RuntimeError: the conversion failed, or the export does not agree
            with Keras within the tolerance (the file is left on disk).

    Example:

    >>> result = keras_slim.export(slim, "slim.tflite", quantize="dynamic")
    >>> result.size_bytes, result.relative_difference
    """
    path = _check_arguments(model, path, format, quantize, representative_data)
    representative = None
    if representative_data is not None:
        representative = as_input_list(model, representative_data)
    names = [name for name, _, _ in input_specs(model)]
    in_process = keras.backend.backend() == "tensorflow"
    writing = 2 if in_process and format == "tflite" else 1
    progress = ProgressLine(writing + 1 if check else writing, verbose)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Written under a temporary name beside `path`, renamed once complete:
    # a kill mid-write leaves the earlier file (or folder) intact.
    with atomic_path(path) as temporary:
        if in_process:
            size = _write(model, temporary, format, quantize, representative,
                          names, progress)
        else:
            progress.step(
                f"converting `{model.name}` in a TensorFlow process")
            size = convert_in_tensorflow(model, temporary, format, quantize,
                                         representative, names)
    result = ExportResult(path=path, format=format, quantize=quantize,
                          size_bytes=int(size))
    if check:
        progress.step("checking against Keras")
        _check(model, result, representative, names)
    progress.done(result.summary())
    return result


def _check_arguments(model, path, format, quantize, representative_data):
    """`path` as a string, or a ValueError naming the bad argument."""
    check_model(model)
    _check_choice(format, FORMATS, "format")
    _check_choice(quantize, QUANTIZATIONS, "quantize")
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(
            f"Expected `path` to be a file path. Received: path={path!r}")
    path = os.fspath(path)
    if format != "tflite" and quantize is not None:
        raise ValueError(
            "`quantize` applies to format='tflite' only. Received: "
            f"format={format!r}, quantize={quantize!r}"
        )
    if format != "saved_model" and os.path.isdir(path):
        raise ValueError(
            f"Expected `path` to be a file for format={format!r}; {path!r} "
            "is a directory."
        )
    if (format == "saved_model" and os.path.isdir(path) and os.listdir(path)
            and not os.path.isfile(os.path.join(path, "saved_model.pb"))):
        # The folder is replaced whole: never one that holds other files.
        raise ValueError(
            f"Expected `path` to be a new folder or an earlier SavedModel "
            f"for format='saved_model'; {path!r} holds other files."
        )
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            "quantize='int8' needs `representative_data`: a few hundred "
            "example inputs to calibrate the activation ranges."
        )
    return path


def _write(model, path, format, quantize, representative, names, progress):
    """Write the export under the TensorFlow backend; its size in bytes."""
    if format == "onnx":
        progress.step(f"writing the ONNX file of `{model.name}`")
        write_onnx(model, path)
        return os.path.getsize(path)
    if format == "saved_model":
        progress.step(f"writing the SavedModel of `{model.name}`")
        model.export(path, format="tf_saved_model", verbose=False)
        return _saved_model_size(path)
    progress.step(f"writing the SavedModel of `{model.name}`")
    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        kind = {None: "float32", "dynamic": "dynamic-range",
                "int8": "int8"}[quantize]
        progress.step(f"converting to {kind} TFLite")
        flatbuffer = _convert(tmp, quantize, representative, names)
    with open(path, "wb") as file:  # `path` is export's temporary name
        file.write(flatbuffer)
    return len(flatbuffer)


def _check(model, result, representative, names):
    """Run the export next to Keras and fill in `result`, or raise."""
    count = INT8_CHECK_SAMPLES if result.quantize == "int8" else CHECK_SAMPLES
    if representative is not None:
        inputs = [a[:count] for a in representative]
    else:
        inputs = random_inputs(model, count)
    reference = keras_outputs(model, inputs)
    if result.format == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(result.path)
        outputs = loaded.serve(packed_inputs(model, inputs))
        exported = [np.asarray(o, dtype="float64")
                    for o in keras.tree.flatten(outputs)]
    elif result.format == "onnx":
        exported = ONNXModel(result.path)(inputs)
    else:
        exported = TFLiteModel(result.path)(inputs, names)
    result.checked = len(inputs[0])
    result.max_difference, result.relative_difference = _differences(
        reference, exported
    )
    if result.quantize == "int8":
        result.agreement = _agreement(reference, exported)
        if result.agreement is not None:
            result.tolerance = INT8_AGREEMENT
            ok = result.agreement >= INT8_AGREEMENT
            if not ok:
                raise RuntimeError(
                    f"The int8 export {result.path} agrees with Keras on the "
                    f"top class of only {result.agreement:.1%} of "
                    f"{result.checked} representative examples (expected >= "
                    f"{INT8_AGREEMENT:.0%}). Give more representative "
                    "examples, or use quantize='dynamic'."
                )
            return
        result.tolerance = INT8_TOLERANCE
    else:
        result.tolerance = (DYNAMIC_TOLERANCE if result.quantize == "dynamic"
                            else FLOAT_TOLERANCE)
    if not result.relative_difference <= result.tolerance:
        raise RuntimeError(
            f"The export {result.path} differs from Keras by up to "
            f"{result.max_difference:.3g} ({result.relative_difference:.3g} "
            f"of the output range; tolerance {result.tolerance:g}) on "
            f"{result.checked} inputs."
        )
