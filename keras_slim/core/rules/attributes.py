"""What the built-in rules read off a layer: its activation, padding,
data format and channel axis."""

import keras
import numpy as np

from keras_slim.core.rule_registry import (
    BARRIER,
    Role,
    rule_for,
)

__all__ = [
    "activation_mixes",
    "apply_activation",
    "has_activation",
    "homogeneous_activation",
    "layer_classes",
    "per_channel_constant",
    "zero_border",
]


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") != "channels_first"


# Built-in activations applied value by value. Anything else (softmax,
# log_softmax, sparsemax, glu, a custom function) mixes channels or may.
_ELEMENTWISE_ACTIVATIONS = (
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu",
    "silu", "swish", "mish", "sigmoid", "hard_sigmoid", "hard_silu",
    "hard_swish", "log_sigmoid", "sparse_sigmoid", "tanh", "hard_tanh",
    "tanh_shrink", "softplus", "softsign", "sparse_plus", "squareplus",
    "exponential", "hard_shrink", "soft_shrink", "threshold",
)


def _builtin(name):
    try:
        return keras.activations.get(name)
    except (ValueError, TypeError):  # pragma: no cover - older Keras
        return None


_ELEMENTWISE = {id(f) for f in map(_builtin, _ELEMENTWISE_ACTIVATIONS) if f}
_MIXING = {id(f) for f in map(_builtin, ("softmax", "log_softmax", "sparsemax",
                                         "glu")) if f}
_LINEAR = _builtin("linear")


def activation_mixes(layer):
    """Why the layer's built-in `activation` mixes channels, or "".

    A layer without an `activation` attribute, or with an elementwise
    built-in one, mixes nothing.
    """
    function = getattr(layer, "activation", None)
    if function is None or id(function) in _ELEMENTWISE:
        return ""
    name = getattr(function, "__name__", repr(function))
    return f"activation `{name}` is not applied channel by channel"


def _activation_barrier(layer):
    """A barrier for an `Activation`/depthwise layer whose activation mixes
    channels; a custom function is flagged so the user is told."""
    custom = id(getattr(layer, "activation", None)) not in _MIXING
    return Role(BARRIER, reason=activation_mixes(layer), warn=custom)


def has_activation(layer):
    """Whether the layer applies a non-identity built-in `activation`."""
    function = getattr(layer, "activation", None)
    return function is not None and function is not _LINEAR


def apply_activation(layer, values):
    """The layer's `activation` applied to a 1-D array of constants."""
    if not has_activation(layer):
        return values
    tensor = keras.ops.convert_to_tensor(np.asarray(values, "float32")[None])
    return keras.ops.convert_to_numpy(layer.activation(tensor))[0].astype(
        np.float64
    )


def zero_border(layer):
    """Whether `layer` pads its input with zeros: a constant map stops being
    constant at its borders (ZeroPadding, "same" or "causal" padding of a
    kernel wider than one tap). Its rule answers (`Rule.zero_border`)."""
    return rule_for(layer).zero_border(layer)


def homogeneous_activation(layer):
    """Whether the layer's `activation` is positively homogeneous:
    `f(alpha * x) = alpha * f(x)` for `alpha > 0` (relu, linear, leaky_relu)."""
    return getattr(layer, "activation", None) in (
        keras.activations.relu,
        keras.activations.linear,
        keras.activations.leaky_relu,
    )


def per_channel_constant(call):
    """Whether an op of `call` takes a constant (a NumPy array, a tensor)
    with one value per channel, such as `x * vec`: its values would have to
    be cut with the channels."""
    width = call.input_width
    if not width or width < 2:
        return False
    arguments = call.node.arguments
    for value in keras.tree.flatten((arguments.args, arguments.kwargs)):
        if isinstance(value, keras.KerasTensor):
            continue
        shape = tuple(getattr(value, "shape", None) or np.shape(value))
        if shape and shape[-1] == width:
            return True
    return False


def _last_axis(axis, rank):
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return len(axes) == 1 and axes[0] in (-1, rank - 1)


def layer_classes(*names):
    """The classes `keras.layers.<name>` this Keras has, for `names`."""
    return [getattr(keras.layers, n) for n in names if hasattr(keras.layers, n)]
