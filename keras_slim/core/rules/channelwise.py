"""Rules of layers that act channel by channel: BatchNormalization, PReLU,
Rescaling, Normalization, activations, Softmax, shape-only layers, Flatten
and Reshape."""

import keras
import numpy as np

from keras_slim.core import keras_compat
from keras_slim.core.rule_registry import (
    BARRIER,
    CHANNELWISE,
    FLATTEN,
    MAPS_KEPT,
    MAPS_MOVED,
    MAPS_PADDED,
    MAPS_SIGNED,
    Role,
    Rule,
    register_rule,
    take,
)
from keras_slim.core.rules.attributes import (
    _activation_barrier,
    _channels_last,
    _last_axis,
    activation_mixes,
    homogeneous_activation,
    layer_classes,
)

__all__ = []


@register_rule(keras.layers.BatchNormalization)
class _BatchNorm(Rule):
    axes = {
        name: {0: "in"}
        for name in ("gamma", "beta", "moving_mean", "moving_variance")
    }

    def role(self, layer, call):
        if not _last_axis(layer.axis, len(call.input_shape)):
            return Role(BARRIER, reason="BatchNormalization not on channels")
        return Role(CHANNELWISE)

    def scales_channels(self, layer):
        return True

    def pass_constants(self, layer, call, values, weights, dead):
        # In inference: (x - mean) * gamma / sqrt(variance + eps) + beta; a
        # dead position outputs beta whatever its input.
        values = values[0]
        width = values.shape[0]
        gamma = weights.get("gamma", np.ones(width))
        beta = weights.get("beta", np.zeros(width))
        scale = gamma / np.sqrt(weights["moving_variance"] + layer.epsilon)
        out = (values - weights["moving_mean"]) * scale + beta
        if dead is not None:
            out = np.where(dead, beta, out)
        return out

    def shift_input(self, layer, weights, delta):
        mean = weights["moving_mean"]
        return dict(weights, moving_mean=mean - delta.astype(mean.dtype))


@register_rule(keras.layers.PReLU)
class _PReLU(Rule):
    def role(self, layer, call):
        return Role(CHANNELWISE)

    def passes_scale(self, layer, count):
        return count == 1

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


register_rule(keras.layers.ELU)(_Elementwise)


@register_rule(keras.layers.Activation)
class _Activation(_Elementwise):
    def passes_scale(self, layer, count):
        return count == 1 and homogeneous_activation(layer)


@register_rule(keras.layers.ReLU)
class _ReLU(_Elementwise):
    def passes_scale(self, layer, count):
        return count == 1 and layer.max_value is None and not layer.threshold


@register_rule(keras.layers.LeakyReLU)
class _LeakyReLU(_Elementwise):
    def passes_scale(self, layer, count):
        return count == 1


@register_rule(keras.layers.Softmax)
class _Softmax(Rule):
    # Over other axes than the channels: the constants are not followed.
    def pass_constants(self, layer, call, values, weights, dead):
        return np.full(values[0].shape[0], np.nan)

    def role(self, layer, call):
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        rank = len(call.input_shape)
        if any(a in (-1, rank - 1) for a in axes):
            return Role(BARRIER, reason="Softmax over channels")
        return Role(CHANNELWISE)


class _ShapeOnly(Rule):
    """Layers that move or drop values but never change one channel's value:
    their constants pass unchanged, and a scaled input gives a scaled
    output. Cropping, upsampling and average pooling move (or average)
    every channel's map alike."""

    def role(self, layer, call):
        if not _channels_last(layer):
            return Role(BARRIER, reason="channels_first layer")
        return Role(CHANNELWISE)

    def pass_constants(self, layer, call, values, weights, dead):
        return values[0]

    def maps(self, layer):
        return MAPS_MOVED

    def passes_scale(self, layer, count):
        return count == 1


register_rule(
    *layer_classes(
        "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D",
        "GlobalAveragePooling3D",
        "Cropping1D", "Cropping2D", "Cropping3D",
        "UpSampling1D", "UpSampling2D", "UpSampling3D",
    )
)(_ShapeOnly)


class _SameMap(_ShapeOnly):
    """Layers that leave every value where it is in inference."""

    def maps(self, layer):
        return MAPS_KEPT


register_rule(
    *layer_classes(
        "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
        "GaussianDropout", "Identity",
    )
)(_SameMap)


class _TrainingShift(_SameMap):
    """The identity in inference, but not positively homogeneous in
    training: noise added (`GaussianNoise`), an affine map (`AlphaDropout`),
    an activity loss (`ActivityRegularization`)."""

    def passes_scale(self, layer, count):
        return False


register_rule(
    *layer_classes("GaussianNoise", "AlphaDropout", "ActivityRegularization")
)(_TrainingShift)


class _MaxPooling(_ShapeOnly):
    """Max over windows: `max(v * P) = v * max(P)` for v > 0 only."""

    def maps(self, layer):
        return MAPS_SIGNED


register_rule(
    *layer_classes(
        "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
        "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    )
)(_MaxPooling)


class _ZeroPadding(_ShapeOnly):
    """A zero border around the map."""

    def maps(self, layer):
        return MAPS_PADDED

    def zero_border(self, layer):
        return bool(np.any(np.asarray(layer.padding)))


register_rule(
    *layer_classes("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
)(_ZeroPadding)


@register_rule(keras.layers.Flatten)
class _Flatten(_ShapeOnly):

    def role(self, layer, call):
        if not _channels_last(layer):
            return Role(BARRIER, reason="channels_first Flatten")
        return Role(FLATTEN)


@register_rule(keras.layers.Reshape)
class _Reshape(_ShapeOnly):

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


class _ReduceOp(_ShapeOnly):
    """`keras.ops.mean(x, axis=(1, 2), keepdims=True)`, as a squeeze-excite
    block squeezes: a reduction over axes other than the channel axis
    averages (or takes the extreme of) each channel's map by itself, so a
    constant channel stays the same constant."""

    def role(self, layer, call):
        rank = len(call.input_shape)
        axis = layer.axis
        if axis is None or call.tensor_count != 1:
            return Role(BARRIER, reason="reduction over every axis")
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if any(a % rank == rank - 1 for a in axes):
            return Role(BARRIER, reason="reduction over the channel axis")
        return Role(CHANNELWISE)


register_rule(
    *keras_compat.op_classes("numpy", "Mean", "Max", "Min", "Amax", "Amin")
)(_ReduceOp)
