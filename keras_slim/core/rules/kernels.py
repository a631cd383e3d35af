"""Rules of the layers with a kernel: convolutions, Dense, and the known
layers that mix channels in ways a plan cannot follow."""

import math

import keras
import numpy as np

from keras_slim.core.rule_registry import (
    BARRIER,
    CHANNELWISE,
    PRODUCER,
    Role,
    Rule,
    register_rule,
    take,
)
from keras_slim.core.rules.attributes import (
    _activation_barrier,
    _channels_last,
    activation_mixes,
    apply_activation,
)

__all__ = []


class _Barrier(Rule):
    """Known layers that mix channels in ways a plan cannot follow."""

    def role(self, layer, call):
        return Role(BARRIER, reason=f"{type(layer).__name__} mixes channels")


register_rule(
    keras.layers.LayerNormalization,
    getattr(keras.layers, "GroupNormalization", None),
    getattr(keras.layers, "UnitNormalization", None),
    keras.layers.Masking,
    keras.layers.RepeatVector,
)(_Barrier)


@register_rule(keras.layers.Permute)
class _Permute(_Barrier):
    def passes_scale(self, layer, count):
        return count == 1


def _kernel_sum(kernel, spatial_axes):
    return kernel.sum(axis=spatial_axes) if spatial_axes else kernel


def _depthwise_constants(layer, call, weights, values):
    """Interior output of a depthwise (or one-channel-a-group) convolution:
    kernels are `(*taps, C, m)` or `(*taps, 1, C * m)`, output `c * m + j`."""
    values = values[0]
    if np.all(np.isnan(values)):
        return np.full(values.shape[0] * call.role.expand, np.nan)
    kernel = weights["kernel"]
    summed = kernel.sum(axis=tuple(range(kernel.ndim - 2)))
    summed = summed.reshape(values.shape[0], -1)  # (C, m)
    out = (values[:, None] * summed).ravel()
    if "bias" in weights:
        out = out + weights["bias"]
    return apply_activation(layer, out)


@register_rule(keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
class _Conv(Rule):
    axes = {"kernel": {-2: "in", -1: "out"}, "bias": {0: "out"}}
    widths = {"filters": "out"}
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

    def pass_constants(self, layer, call, values, weights, dead):
        # Channelwise only with one group per input channel.
        return _depthwise_constants(layer, call, weights, values)

    def absorbed_weight(self, layer):
        return "kernel"

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

    def absorbed_weight(self, layer):
        return "kernel"

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

    def absorbed_weight(self, layer):
        return "kernel"

    # No exact fold: with strides, output positions see different numbers
    # of taps, so a constant input is not a constant output.
    def borders_differ(self, layer):
        return True


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

    def absorbed_weight(self, layer):
        return "depthwise_kernel"

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

    def role(self, layer, call):
        if not _channels_last(layer):
            return Role(BARRIER, reason="channels_first convolution")
        if activation_mixes(layer):
            return _activation_barrier(layer)
        return Role(CHANNELWISE, expand=layer.depth_multiplier)

    def pass_constants(self, layer, call, values, weights, dead):
        return _depthwise_constants(layer, call, weights, values)

    def absorbed_weight(self, layer):
        return "kernel"

    def macs(self, layer, in_shape, out_shape):
        return math.prod(out_shape[1:]) * math.prod(layer.kernel_size)
