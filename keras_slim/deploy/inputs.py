"""The inputs of an export: a model's input specs, representative data given
as arrays or a dataset, random parity inputs, and the Keras outputs to
compare with."""

import keras
import numpy as np

from keras_slim.core.graph import graph_of

__all__ = [
    "as_input_list",
    "input_specs",
    "keras_outputs",
    "packed_inputs",
    "random_inputs",
]


def input_specs(model):
    """(name, shape without batch, dtype) of each input of `model`."""
    return [
        (tensor.name, tuple(tensor.shape[1:]), str(tensor.dtype))
        for tensor in model.inputs
    ]


def as_input_list(model, data, argument="representative_data"):
    """`data` as a list of float arrays, one per model input, in order.

    Args:
        model: the Keras model.
        data: an array (single-input models), a list or tuple of arrays in
            the order of `model.inputs`, or a dict input name -> array.
        argument: the argument's name for error messages.

    Raises:
        ValueError: wrong number of inputs, mismatched shapes or lengths.
    """
    specs = input_specs(model)
    if isinstance(data, dict):
        missing = [name for name, _, _ in specs if name not in data]
        if missing:
            raise ValueError(
                f"`{argument}` has no entry for input(s) {missing}; its keys "
                f"are {sorted(data)}."
            )
        arrays = [data[name] for name, _, _ in specs]
    elif isinstance(data, (list, tuple)):
        arrays = list(data)
    else:
        arrays = [data]
    if len(arrays) != len(specs):
        raise ValueError(
            f"Expected `{argument}` to hold {len(specs)} array(s), one per "
            f"model input. Received {len(arrays)}."
        )
    result = []
    for array, (name, shape, dtype) in zip(arrays, specs):
        try:
            array = np.asarray(array, dtype=dtype)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"`{argument}` for input `{name}` is not numeric: {error}"
            ) from None
        fits = array.ndim == len(shape) + 1 and all(
            d is None or d == a for d, a in zip(shape, array.shape[1:])
        )
        if not fits or len(array) == 0:
            raise ValueError(
                f"Expected `{argument}` for input `{name}` to have shape "
                f"(n, {', '.join(str(d) for d in shape)}) with n >= 1. "
                f"Received shape {array.shape}."
            )
        result.append(array)
    if len({len(a) for a in result}) > 1:
        raise ValueError(
            f"The arrays of `{argument}` hold different numbers of examples: "
            f"{[len(a) for a in result]}."
        )
    return result


def random_inputs(model, count, seed=0):
    """`count` standard-normal examples for each input of `model`."""
    rng = np.random.default_rng(seed)
    arrays = []
    for name, shape, dtype in input_specs(model):
        if any(d is None for d in shape):
            raise ValueError(
                f"Input `{name}` of model `{model.name}` has an unknown size "
                f"{shape}; pass `representative_data` to check the export."
            )
        arrays.append(rng.standard_normal((count,) + shape).astype(dtype))
    return arrays


def packed_inputs(model, inputs):
    """A list of arrays (in the order of `model.inputs`) in the structure
    the model is called with (a single array, a list or a dict)."""
    if len(inputs) == 1:
        return inputs[0]
    return keras.tree.pack_sequence_as(graph_of(model).input, list(inputs))


def keras_outputs(model, inputs):
    """The model's outputs on `inputs`, flattened to a list of arrays."""
    outputs = model(packed_inputs(model, inputs), training=False)
    return [np.asarray(keras.ops.convert_to_numpy(o))
            for o in keras.tree.flatten(outputs)]
