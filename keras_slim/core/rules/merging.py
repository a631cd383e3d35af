"""Rules of layers and ops that combine tensors: Add and the other merges,
Multiply, Concatenate, arithmetic ops and InceptionResNetV2's scale."""

import keras
import numpy as np

from keras_slim.core import keras_compat
from keras_slim.core.rule_registry import (
    BARRIER,
    CHANNELWISE,
    CONCAT,
    MERGE,
    Role,
    Rule,
    evaluate,
    register_rule,
)
from keras_slim.core.rules.attributes import (
    _last_axis,
    layer_classes,
    per_channel_constant,
)
from keras_slim.core.rules.channelwise import _Elementwise

__all__ = []


class _Merge(Rule):
    """Elementwise layers over several inputs: all inputs share channels."""

    def role(self, layer, call):
        return Role(MERGE)


class _Linear(_Merge):
    """Merges with `f(alpha * x, alpha * y) = alpha * f(x, y)`."""

    def passes_scale(self, layer, count):
        return count > 1


register_rule(
    *layer_classes("Add", "Subtract", "Average", "Maximum", "Minimum")
)(_Linear)


def _product_constants(call, values):
    """A product is zero wherever one factor is a known zero."""
    out = evaluate(call, values)
    if call.role.kind != MERGE:
        return out
    width = out.shape[0]
    zero = np.any([np.broadcast_to(v, (width,)) == 0 for v in values], axis=0)
    return np.where(zero, 0.0, out)


@register_rule(keras.layers.Multiply)
class _Multiply(_Merge):
    def pass_constants(self, layer, call, values, weights, dead):
        return _product_constants(call, values)


@register_rule(keras.layers.Concatenate)
class _Concatenate(Rule):
    def role(self, layer, call):
        if _last_axis(layer.axis, len(call.input_shape)):
            return Role(CONCAT)
        return Role(MERGE)

    def passes_scale(self, layer, count):
        return count > 1


_ops = keras_compat.op_classes


_PER_CHANNEL = ("a per-channel constant operand, whose values would have "
                "to be cut with the channels")


class _ArithmeticOp(Rule):
    """`x + 3.0`, `x * y`: with one tensor input a channelwise map, with
    several an elementwise merge. A constant with one value per channel
    (`x * vec`) is not cut with them: a barrier, named."""

    def role(self, layer, call):
        if per_channel_constant(call):
            return Role(BARRIER, reason=_PER_CHANNEL, warn=True)
        return Role(MERGE if call.tensor_count > 1 else CHANNELWISE)


class _ElementwiseOp(_Elementwise):
    """`keras.ops.relu(x)`, `keras.ops.clip(x, lo, hi)`: channelwise unless
    a constant argument has one value per channel."""

    def role(self, layer, call):
        if per_channel_constant(call):
            return Role(BARRIER, reason=_PER_CHANNEL, warn=True)
        return super().role(layer, call)


register_rule(
    *_ops("numpy", "Add", "Subtract", "TrueDivide", "Divide", "Maximum",
          "Minimum")
)(_ArithmeticOp)


@register_rule(*_ops("numpy", "Multiply"))
class _MultiplyOp(_ArithmeticOp):
    def pass_constants(self, layer, call, values, weights, dead):
        return _product_constants(call, values)


register_rule(
    *_ops("numpy", "Absolute", "Negative", "Square", "Sqrt", "Exp", "Clip",
          "Tanh"),
    *_ops("nn", "Relu", "Relu6", "Sigmoid", "HardSigmoid", "Silu", "HardSilu",
          "Gelu", "Elu", "Selu", "LeakyRelu", "Softplus", "Softsign",
          "Celu", "HardTanh"),
)(_ElementwiseOp)


# InceptionResNetV2's residual `inputs[0] + inputs[1] * scale`.
register_rule(keras_compat.custom_scale_layer())(_Merge)
