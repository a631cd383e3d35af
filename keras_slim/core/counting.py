"""Parameter and multiply-accumulate counts."""

import math
import warnings

from keras_slim.core import rule_registry
from keras_slim.core.graph import ChannelGraph

__all__ = ["count_macs", "count_params", "macs_by_layer"]


def count_params(model):
    """Number of scalars in all weights of `model` (trainable or not).

    Shared layers count once, as in `model.count_params()`.
    """
    return int(sum(math.prod(v.shape) for v in model.weights))


def count_macs(model):
    """Multiply-accumulates of one forward pass for one example.

    Convention: the multiply-accumulates of convolutions (regular, grouped,
    depthwise, separable, transposed) and Dense layers at the model's input
    size, each call of a shared layer counted. BatchNormalization,
    activations, pooling, additions and bias adds are not counted (they are
    foldable or cost far less). With this convention ResNet50 at 224 x 224
    counts about 3.9 G and MobileNetV2 about 300 M, as published.

    Args:
        model: a functional or Sequential `keras.Model` whose input has a
            fixed spatial size.

    Returns:
        An int.

    Raises:
        ValueError: the model's input size is not fully known.
    """
    return sum(macs_by_layer(ChannelGraph(model)).values())


def macs_by_layer(graph, strict=True):
    """Multiply-accumulates of each layer of a `ChannelGraph`, every call
    counted, by layer name (layers that count zero are left out).

    Args:
        graph: a `ChannelGraph`.
        strict: raise on a layer whose shapes are not fully known; with
            `False` such a layer is left out.
    """
    macs = {}
    for call in graph.calls:
        rule = rule_registry.rule_for(call.layer)
        if not _counts_macs(rule, call.layer, call.role.kind):
            continue
        in_shape = graph.shapes[call.inputs[0]]
        out_shape = graph.shapes[call.outputs[0]]
        if any(d is None for d in in_shape[1:] + out_shape[1:]):
            if not strict:
                continue
            raise ValueError(
                f"count_macs needs a fixed input size, but layer "
                f"`{call.layer.name}` sees shape {in_shape}. Build the model "
                "with a concrete input shape, e.g. keras.Input((224, 224, 3))."
            )
        name = call.layer.name
        macs[name] = macs.get(name, 0) + int(
            rule.macs(call.layer, in_shape, out_shape)
        )
    return macs


# Layer classes already warned of a producer rule without `macs`.
_NO_MACS_WARNED = set()


def _counts_macs(rule, layer, kind):
    """Whether `rule` counts `layer`'s multiply-accumulates. A producer
    whose rule defines no `macs` counts 0, as if it were free: warned of
    once per layer class."""
    if type(rule).macs is not rule_registry.Rule.macs:
        return True
    if kind == rule_registry.PRODUCER and type(layer) not in _NO_MACS_WARNED:
        _NO_MACS_WARNED.add(type(layer))
        warnings.warn(
            f"keras_slim: the rule registered for {type(layer).__name__} "
            f"defines no `macs`, so its layers (first `{layer.name}`) count "
            "0 multiply-accumulates in count_macs and MAC budgets. Define "
            "`macs(self, layer, in_shape, out_shape)` in its rule.",
            stacklevel=3,
        )
    return False
