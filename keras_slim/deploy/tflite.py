"""TFLite files: a Keras model converted to a flatbuffer, and a file run in
the LiteRT interpreter like a model.

TensorFlow and LiteRT (`ai_edge_litert`) are imported only when a model is
converted or a file is run.
"""

import os

import numpy as np

from keras_slim.deploy.console import quiet_native_output

__all__ = [
    "dequantize",
    "litert_interpreter",
    "ordered_outputs",
    "quantize",
    "TFLiteModel",
    "tflite_flatbuffer",
]


def tflite_flatbuffer(model, batch=1):
    """`model` (TensorFlow backend) as a TFLite flatbuffer with its batch
    fixed, converted from a frozen concrete function: weights as
    constants, no SavedModel on disk."""
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants

    specs = [tf.TensorSpec((batch,) + tuple(t.shape[1:]), t.dtype)
             for t in model.inputs]

    def call(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0],
                     training=False)

    function = tf.function(call, input_signature=specs)
    frozen = convert_to_constants.convert_variables_to_constants_v2(
        function.get_concrete_function()
    )
    with quiet_native_output():
        return tf.lite.TFLiteConverter.from_concrete_functions(
            [frozen]
        ).convert()


def litert_interpreter(path_or_bytes, num_threads=None):
    """A LiteRT `Interpreter` of a `.tflite` path or flatbuffer bytes.

    Raises:
        ImportError: LiteRT is not installed.
        ValueError: no such file, not a TFLite model, or a bad
            `num_threads`.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "Running TFLite files needs the LiteRT interpreter: "
            "pip install ai-edge-litert"
        ) from None
    if num_threads is not None and (
        not isinstance(num_threads, int) or isinstance(num_threads, bool)
        or num_threads < 1
    ):
        raise ValueError(
            "Expected `num_threads` to be an integer >= 1 or None. "
            f"Received: num_threads={num_threads!r}"
        )
    if isinstance(path_or_bytes, (bytes, bytearray)):
        with quiet_native_output():
            return Interpreter(model_content=bytes(path_or_bytes),
                               num_threads=num_threads)
    path = os.fspath(path_or_bytes)
    if not os.path.isfile(path):
        raise ValueError(f"No TFLite file at {path!r}.")
    try:
        with quiet_native_output():
            return Interpreter(model_path=path, num_threads=num_threads)
    except ValueError as error:
        raise ValueError(
            f"{path!r} is not a TFLite model: {str(error).splitlines()[0]}"
        ) from None


def ordered_outputs(outputs):
    """Exported outputs (a dict by name) in the order Keras flattens them:
    `output_0, output_1, ...` by number, other names sorted."""
    names = list(outputs)
    if all(n.startswith("output_") and n[7:].isdigit() for n in names):
        names.sort(key=lambda n: int(n[7:]))
    else:
        names.sort()
    return [np.asarray(outputs[n], dtype="float64") for n in names]


class TFLiteModel:
    """A TFLite file loaded in the LiteRT interpreter, called like a model.

    Inputs are float arrays; the inputs of an int8 model are quantized and
    its outputs dequantized, so that results compare with Keras.

    Args:
        path_or_bytes: a `.tflite` path or the flatbuffer bytes.
        num_threads: interpreter threads (`None`: LiteRT's default).

    Raises:
        ValueError: no such file, or not a TFLite model.
    """

    def __init__(self, path_or_bytes, num_threads=None):
        self.interpreter = litert_interpreter(path_or_bytes, num_threads)
        with quiet_native_output():  # "Created ... XNNPACK delegate"
            self.runner = self.interpreter.get_signature_runner()
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()

    def __call__(self, inputs, names=None):
        """Float outputs for `inputs`, a list of arrays in the order of
        `names` (the model's input names; optional for one input)."""
        if names is None:
            if len(self.inputs) != 1:
                raise ValueError(
                    f"The model has {len(self.inputs)} inputs "
                    f"({sorted(self.inputs)}); pass `names`."
                )
            names = list(self.inputs)
        unknown = [n for n in names if n not in self.inputs]
        if unknown:
            raise ValueError(
                f"`names` {unknown} are not inputs of the TFLite model; its "
                f"inputs are {sorted(self.inputs)}."
            )
        feed = {name: quantize(array, self.inputs[name])
                for name, array in zip(names, inputs)}
        with quiet_native_output():  # the first call creates the delegate
            results = self.runner(**feed)
        return ordered_outputs({
            name: dequantize(value, self.outputs[name])
            for name, value in results.items()
        })


def quantize(array, detail):
    """A float array in the dtype of a tensor (quantized when integer)."""
    scale, zero = detail["quantization"]
    if not np.issubdtype(detail["dtype"], np.integer) or not scale:
        return np.asarray(array, dtype=detail["dtype"])
    info = np.iinfo(detail["dtype"])
    values = np.round(np.asarray(array) / scale + zero)
    return np.clip(values, info.min, info.max).astype(detail["dtype"])


def dequantize(array, detail):
    """The float values of a (possibly quantized) tensor."""
    scale, zero = detail["quantization"]
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer) and scale:
        return (array.astype("float64") - zero) * scale
    return array
