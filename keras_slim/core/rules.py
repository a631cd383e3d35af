"""The built-in rules: how Keras' own layers take part in the channel graph.

Each rule is registered for its layer classes with `register_rule`; see
`slicers.py` for what a rule answers. Imported by `slicers.py`, so the
registry is full as soon as keras_slim is imported.
"""

import math

import keras
import numpy as np

from keras_slim.core.slicers import (
    BARRIER,
    CHANNELWISE,
    CONCAT,
    FLATTEN,
    MERGE,
    PRODUCER,
    Role,
    Rule,
    register_rule,
    take,
)


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
    kernel wider than one tap)."""
    if isinstance(layer, _ZERO_PADDING):
        return bool(np.any(np.asarray(layer.padding)))
    padding = getattr(layer, "padding", None)
    kernel = getattr(layer, "kernel_size", None)
    if padding not in ("same", "causal") or kernel is None:
        return False
    return math.prod(kernel) > 1


def _last_axis(axis, rank):
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return len(axes) == 1 and axes[0] in (-1, rank - 1)

class _Barrier(Rule):
    """Known layers that mix channels in ways a plan cannot follow."""

    def role(self, layer, call):
        return Role(BARRIER, reason=f"{type(layer).__name__} mixes channels")


register_rule(
    keras.layers.LayerNormalization,
    getattr(keras.layers, "GroupNormalization", None),
    getattr(keras.layers, "UnitNormalization", None),
    keras.layers.Masking,
    keras.layers.Permute,
    keras.layers.RepeatVector,
)(_Barrier)


def _kernel_sum(kernel, spatial_axes):
    return kernel.sum(axis=spatial_axes) if spatial_axes else kernel


@register_rule(keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
class _Conv(Rule):
    axes = {"kernel": {-2: "in", -1: "out"}, "bias": {0: "out"}}
    widths = {"filters": "out"}
    constants = "depthwise"  # used when one group per input channel
    carries = True

    def role(self, layer, call):
        if not _channels_last(layer):
            return Role(BARRIER, reason="channels_first convolution")
        groups = getattr(layer, "groups", 1)
        if groups == 1:
            return Role(PRODUCER, frozen_output=activation_mixes(layer))
        if activation_mixes(layer):
            return _activation_barrier(layer)
        if groups == call.input_width:
            return Role(CHANNELWISE, expand=layer.filters // groups)
        return Role(
            BARRIER, reason="grouped convolution with several channels a group"
        )

    def slice(self, layer, weights, pos):
        if getattr(layer, "groups", 1) == 1:
            return super().slice(layer, weights, pos)
        # Depthwise-like grouped convolution: one group per input channel.
        kernel = take(weights["kernel"], -1, pos["out"])
        out = dict(weights, kernel=kernel)
        if "bias" in weights:
            out["bias"] = take(weights["bias"], 0, pos["out"])
        config = {}
        if pos["in"] is not None:
            config = {"groups": int(len(pos["in"])), "filters": int(len(pos["out"]))}
        return config, out

    def fold(self, layer, weights, removed, values):
        kernel = weights["kernel"]
        summed = _kernel_sum(kernel, tuple(range(kernel.ndim - 2)))
        return values @ summed[removed]

    def macs(self, layer, in_shape, out_shape):
        per_output = math.prod(layer.kernel_size) * in_shape[-1] // layer.groups
        return math.prod(out_shape[1:]) * per_output


@register_rule(keras.layers.Dense)
class _Dense(Rule):
    axes = {"kernel": {0: "in", 1: "out"}, "bias": {0: "out"}}
    widths = {"units": "out"}
    carries = True

    def role(self, layer, call):
        if getattr(layer, "lora_enabled", False):
            return Role(BARRIER, reason="Dense with LoRA")
        return Role(PRODUCER, frozen_output=activation_mixes(layer))

    def fold(self, layer, weights, removed, values):
        return values @ weights["kernel"][removed]

    def macs(self, layer, in_shape, out_shape):
        return math.prod(in_shape[1:]) * out_shape[-1]


@register_rule(
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
class _ConvTranspose(Rule):
    # Transposed kernels are (*spatial, out, in).
    axes = {"kernel": {-1: "in", -2: "out"}, "bias": {0: "out"}}
    widths = {"filters": "out"}
    carries = True

    def role(self, layer, call):
        if not _channels_last(layer):
            return Role(BARRIER, reason="channels_first convolution")
        return Role(PRODUCER, frozen_output=activation_mixes(layer))

    def macs(self, layer, in_shape, out_shape):
        return math.prod(in_shape[1:]) * math.prod(layer.kernel_size) * out_shape[-1]

    # No exact fold: with strides, output positions see different numbers
    # of taps, so a constant input is not a constant output.


@register_rule(keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
class _SeparableConv(Rule):
    axes = {
        "depthwise_kernel": {-2: "in"},
        "pointwise_kernel": {-2: "mid", -1: "out"},
        "bias": {0: "out"},
    }
    widths = {"filters": "out"}

    def role(self, layer, call):
        if not _channels_last(layer):
            return Role(BARRIER, reason="channels_first convolution")
        return Role(PRODUCER, expand=layer.depth_multiplier,
                    frozen_output=activation_mixes(layer))

    def fold(self, layer, weights, removed, values):
        depthwise = weights["depthwise_kernel"]
        pointwise = weights["pointwise_kernel"]
        m = depthwise.shape[-1]
        dw = depthwise.sum(axis=tuple(range(depthwise.ndim - 2)))  # (C, m)
        pw = pointwise.reshape(-1, m, pointwise.shape[-1])  # (C, m, F)
        return np.einsum("c,cj,cjf->f", values, dw[removed], pw[removed])

    def macs(self, layer, in_shape, out_shape):
        spatial = math.prod(out_shape[1:-1])
        mid = in_shape[-1] * layer.depth_multiplier
        return spatial * mid * (math.prod(layer.kernel_size) + out_shape[-1])


@register_rule(keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
class _DepthwiseConv(Rule):
    axes = {"kernel": {-2: "in"}, "bias": {0: "out"}}
    constants = "depthwise"

    def role(self, layer, call):
        if not _channels_last(layer):
            return Role(BARRIER, reason="channels_first convolution")
        if activation_mixes(layer):
            return _activation_barrier(layer)
        return Role(CHANNELWISE, expand=layer.depth_multiplier)

    def macs(self, layer, in_shape, out_shape):
        return math.prod(out_shape[1:]) * math.prod(layer.kernel_size)


@register_rule(keras.layers.BatchNormalization)
class _BatchNorm(Rule):
    axes = {
        name: {0: "in"}
        for name in ("gamma", "beta", "moving_mean", "moving_variance")
    }
    constants = "batchnorm"

    def role(self, layer, call):
        if not _last_axis(layer.axis, len(call.input_shape)):
            return Role(BARRIER, reason="BatchNormalization not on channels")
        return Role(CHANNELWISE)


@register_rule(keras.layers.PReLU)
class _PReLU(Rule):
    def role(self, layer, call):
        return Role(CHANNELWISE)

    def slice(self, layer, weights, pos):
        alpha = weights["alpha"]
        if alpha.shape[-1] > 1:
            alpha = take(alpha, -1, pos["in"])
        return {}, dict(weights, alpha=alpha)


@register_rule(keras.layers.Rescaling)
class _Rescaling(Rule):
    def role(self, layer, call):
        return Role(CHANNELWISE)

    def slice(self, layer, weights, pos):
        config = {}
        for key in ("scale", "offset"):
            value = np.asarray(getattr(layer, key))
            if value.ndim and value.shape[-1] > 1 and pos["in"] is not None:
                config[key] = take(value, -1, pos["in"]).tolist()
        return config, dict(weights)


@register_rule(keras.layers.Normalization)
class _Normalization(Rule):
    # The adapted statistics: variables `mean` and `variance` (attributes
    # `adapt_mean`, `adapt_variance`); given ones live in the config.
    axes = {"mean": {-1: "in"}, "variance": {-1: "in"}}

    def role(self, layer, call):
        if not _last_axis(layer.axis, len(call.input_shape)):
            return Role(BARRIER, reason="Normalization not on channels")
        return Role(CHANNELWISE)

    def slice(self, layer, weights, pos):
        config, out = super().slice(layer, weights, pos)
        for key in ("mean", "variance"):
            value = layer.get_config().get(key)
            if value is not None and np.ndim(value) and pos["in"] is not None:
                value = np.asarray(value)
                config[key] = take(value, -1, pos["in"]).tolist()
        return config, out


class _Elementwise(Rule):
    """Value-changing layers applied channel by channel (activations)."""

    def role(self, layer, call):
        if activation_mixes(layer):  # Activation("softmax"), custom ones
            return _activation_barrier(layer)
        return Role(CHANNELWISE)


register_rule(
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
)(_Elementwise)


@register_rule(keras.layers.Softmax)
class _Softmax(Rule):
    constants = "unknown"

    def role(self, layer, call):
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        rank = len(call.input_shape)
        if any(a in (-1, rank - 1) for a in axes):
            return Role(BARRIER, reason="Softmax over channels")
        return Role(CHANNELWISE)


class _ShapeOnly(Rule):
    """Layers that move or drop values but never change one channel's value."""

    constants = "identity"

    def role(self, layer, call):
        if not _channels_last(layer):
            return Role(BARRIER, reason="channels_first layer")
        return Role(CHANNELWISE)


def _layers(*names):
    return [getattr(keras.layers, n) for n in names if hasattr(keras.layers, n)]


_ZERO_PADDING = tuple(_layers("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"))


register_rule(
    *_layers(
        "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
        "GaussianNoise", "GaussianDropout", "AlphaDropout",
        "ActivityRegularization", "Identity",
        "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
        "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
        "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D",
        "GlobalAveragePooling3D",
        "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
        "Cropping1D", "Cropping2D", "Cropping3D",
        "UpSampling1D", "UpSampling2D", "UpSampling3D",
    )
)(_ShapeOnly)


@register_rule(keras.layers.Flatten)
class _Flatten(Rule):
    constants = "identity"

    def role(self, layer, call):
        if not _channels_last(layer):
            return Role(BARRIER, reason="channels_first Flatten")
        return Role(FLATTEN)


@register_rule(keras.layers.Reshape)
class _Reshape(Rule):
    constants = "identity"

    def role(self, layer, call):
        target = tuple(layer.target_shape)
        if target and target[-1] == call.input_width:
            return Role(CHANNELWISE)
        if len(target) == 1:
            return Role(FLATTEN)
        return Role(BARRIER, reason="Reshape that moves the channel axis")

    def slice(self, layer, weights, pos):
        target = list(layer.target_shape)
        if len(target) > 1 and pos["in"] is not None:
            target[-1] = int(len(pos["in"]))
        elif len(target) == 1 and pos["out"] is not None:
            target[0] = int(len(pos["out"]))
        return {"target_shape": tuple(target)}, dict(weights)


class _Merge(Rule):
    """Elementwise layers over several inputs: all inputs share channels."""

    def role(self, layer, call):
        return Role(MERGE)


register_rule(
    *_layers("Add", "Subtract", "Average", "Maximum", "Minimum")
)(_Merge)


@register_rule(keras.layers.Multiply)
class _Multiply(_Merge):
    constants = "multiply"


@register_rule(keras.layers.Concatenate)
class _Concatenate(Rule):
    constants = "concat"

    def role(self, layer, call):
        if _last_axis(layer.axis, len(call.input_shape)):
            return Role(CONCAT)
        return Role(MERGE)


def _ops(module_name, *names):
    try:
        module = __import__(f"keras.src.ops.{module_name}", fromlist=names)
    except ImportError:  # pragma: no cover - other Keras layouts
        return []
    return [getattr(module, n) for n in names if hasattr(module, n)]


class _ArithmeticOp(Rule):
    """`x + 3.0`, `x * y`: with one tensor input a channelwise map, with
    several an elementwise merge."""

    def role(self, layer, call):
        return Role(MERGE if call.tensor_count > 1 else CHANNELWISE)


register_rule(
    *_ops("numpy", "Add", "Subtract", "TrueDivide", "Divide", "Maximum",
          "Minimum")
)(_ArithmeticOp)


@register_rule(*_ops("numpy", "Multiply"))
class _MultiplyOp(_ArithmeticOp):
    constants = "multiply"


register_rule(
    *_ops("numpy", "Absolute", "Negative", "Square", "Sqrt", "Exp", "Clip",
          "Tanh"),
    *_ops("nn", "Relu", "Relu6", "Sigmoid", "HardSigmoid", "Silu", "HardSilu",
          "Gelu", "Elu", "Selu", "LeakyRelu", "Softplus", "Softsign",
          "Celu", "HardTanh"),
)(_Elementwise)


def _custom_scale_layer():
    try:
        from keras.src.applications import inception_resnet_v2
    except ImportError:  # pragma: no cover
        return None
    return getattr(inception_resnet_v2, "CustomScaleLayer", None)


# InceptionResNetV2's residual `inputs[0] + inputs[1] * scale`.
register_rule(_custom_scale_layer())(_Merge)
