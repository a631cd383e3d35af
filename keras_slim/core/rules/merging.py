"""Rules of layers and ops that combine tensors: Add and the other merges,
Multiply, Concatenate, arithmetic ops and InceptionResNetV2's scale."""

import keras

from keras_slim.core import keras_compat
from keras_slim.core.rules.attributes import (
    _last_axis,
    _layers,
)
from keras_slim.core.rules.channelwise import _Elementwise
from keras_slim.core.slicers import (
    CHANNELWISE,
    CONCAT,
    MERGE,
    Role,
    Rule,
    register_rule,
)

__all__ = []


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


_ops = keras_compat.op_classes


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


# InceptionResNetV2's residual `inputs[0] + inputs[1] * scale`.
register_rule(keras_compat.custom_scale_layer())(_Merge)
