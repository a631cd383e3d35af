"""Rules of layers that act channel by channel: BatchNormalization, PReLU,
Rescaling, Normalization, activations, Softmax, shape-only layers, Flatten
and Reshape."""

import keras
import numpy as np

from keras_slim.core.rules.attributes import (
    _activation_barrier,
    _channels_last,
    _last_axis,
    _layers,
    activation_mixes,
)
from keras_slim.core.slicers import (
    BARRIER,
    CHANNELWISE,
    FLATTEN,
    Role,
    Rule,
    register_rule,
    take,
)

__all__ = []


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
