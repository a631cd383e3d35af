"""Rules of the attention layers: MultiHeadAttention and
GroupQueryAttention.

An attention layer is a producer with several inputs (query "in", value,
key: `Role.inputs`) and one unit inside it that no tensor carries, the
head (`Role.units`): one index on the heads axis of its query, key, value
(and gate) kernels `(d, heads, dim)` and biases `(heads, dim)`, and of its
output kernel `(heads, value_dim, *output_shape)`. The heads form a group
of their own, `"<layer>:heads"`, which a plan cuts like any channel group;
the slim layer is the same class with fewer heads in its config. A head
reaches the output through its rows of the output kernel only, so
`verify` zeroes those rows (`Rule.unit_outputs`) to get the original
without the cut heads, and `plan_dead` cuts the heads whose rows are zero.
"""

import math

import keras
import numpy as np

from keras_slim.core.rule_registry import (
    BARRIER,
    PRODUCER,
    Role,
    Rule,
    register_rule,
    take,
)

__all__ = []

_SLOTS = {"query": "in", "value": "value", "key": "key", "query_mask": "",
          "value_mask": "", "key_mask": "", "attention_mask": ""}
_POSITIONAL = ("query", "value", "key")


def _slots(call):
    """The slot of each tensor input of an attention call, in the order of
    `call.inputs`, or a reason why they cannot be told apart."""
    arguments = call.node.arguments
    named = [(_POSITIONAL[i] if i < len(_POSITIONAL) else f"argument {i}",
              value) for i, value in enumerate(arguments.args)]
    named += sorted(arguments.kwargs.items())
    tensors = [(name, value) for name, value in named
               if isinstance(value, keras.KerasTensor)]
    if [id(v) for _, v in tensors] != [id(t) for t in
                                       call.node.input_tensors]:
        return "its tensor arguments are nested"
    unknown = [name for name, _ in tensors if name not in _SLOTS]
    if unknown:
        return f"it reads the tensor argument `{unknown[0]}`"
    slots = tuple(_SLOTS[name] for name, _ in tensors)
    if not slots or slots[0] != "in":
        return "`query` is not its first tensor argument"
    return slots


def _attention_role(layer, call, heads, **options):
    if not layer.built:
        return Role(BARRIER, reason="attention layer not built")
    if getattr(layer, "quantization_mode", None):
        return Role(BARRIER, reason="quantized attention layer: prune "
                    "before quantizing")
    slots = _slots(call)
    if isinstance(slots, str):
        return Role(BARRIER, reason=f"`{layer.name}`: {slots}")
    return Role(PRODUCER, inputs=slots, units=(("heads", heads),), **options)


def _sizes(layer, in_shape):
    """The value and key shapes the layer was built with, the number of
    query positions of this call and of key positions."""
    shapes = layer.get_build_config()["shapes_dict"]
    value = _known(shapes["value_shape"], in_shape)
    key = _known(shapes.get("key_shape") or value, in_shape)
    return value, key, math.prod(in_shape[1:-1]), math.prod(value[1:-1])


def _known(shape, query):
    """`shape` with the sizes it was built without (a block that builds
    its attention for any number of tokens, as keras-hub's ViT does) read
    from the query's: such a layer attends over its own input."""
    shape = tuple(shape)
    if len(shape) == len(query):
        shape = tuple(q if s is None else s for s, q in zip(shape, query))
    return shape


class _Attention(Rule):
    """What MultiHeadAttention and GroupQueryAttention share."""

    def reads(self, layer, call, slot):
        out = super().reads(layer, call, slot)
        if slot == "value" and "key" not in call.role.inputs:
            out.update(super().reads(layer, call, "key"))  # key = value
        return out

    def unit_outputs(self, layer, unit):
        return {"attention_output/kernel": 0} if unit == "heads" else {}

    @staticmethod
    def _inputs(pos):
        """The kept positions of the key input: the value's when the call
        passes no key."""
        pos = dict(pos)
        if "key" not in pos:
            pos["key"] = pos.get("value")
        return pos


@register_rule(keras.layers.MultiHeadAttention)
class _MultiHeadAttention(_Attention):
    axes = {
        "query/kernel": {0: "in", 1: "heads"},
        "query/bias": {0: "heads"},
        "key/kernel": {0: "key", 1: "heads"},
        "key/bias": {0: "heads"},
        "value/kernel": {0: "value", 1: "heads"},
        "value/bias": {0: "heads"},
        "gate/kernel": {0: "in", 1: "heads"},
        "gate/bias": {0: "heads"},
        "attention_output/kernel": {0: "heads", -1: "out"},
        "attention_output/bias": {-1: "out"},
    }
    widths = {"num_heads": "heads"}

    def role(self, layer, call):
        return _attention_role(layer, call, layer.num_heads)

    def slice(self, layer, weights, pos):
        config, out = super().slice(layer, weights, self._inputs(pos))
        kernel = weights["attention_output/kernel"]
        query_width = weights["query/kernel"].shape[0]
        new_query = (len(pos["in"]) if pos.get("in") is not None
                     else query_width)
        new_out = (len(pos["out"]) if pos.get("out") is not None
                   else kernel.shape[-1])
        shape = layer.get_config()["output_shape"]
        if shape:
            config["output_shape"] = tuple(shape[:-1]) + (new_out,)
        elif new_out != new_query:
            # Keras makes the output as wide as the query unless told.
            config["output_shape"] = (new_out,)
        return config, out

    def macs(self, layer, in_shape, out_shape):
        value, key, tokens, source = _sizes(layer, in_shape)
        heads, key_dim = layer.num_heads, layer.key_dim
        value_dim = layer.value_dim
        axes = layer.get_config()["attention_axes"] or ()
        attended = math.prod(value[a] for a in axes) if axes else 1
        projections = heads * (
            tokens * in_shape[-1] * key_dim
            + source * key[-1] * key_dim
            + source * value[-1] * value_dim)
        projections += heads * value_dim * math.prod(out_shape[1:])
        if layer.get_config().get("use_gate"):
            projections += heads * tokens * in_shape[-1] * value_dim
        # QK^T and the weighted sum of values: every query position with
        # every attended key position, in each head.
        scores = heads * tokens * attended * (key_dim + value_dim)
        return projections + scores


@register_rule(getattr(keras.layers, "GroupQueryAttention", None))
class _GroupedQueryAttention(_Attention):
    """Query heads `u` read key-value group `u // (heads / groups)`. A plan
    keeps query heads; the kept ones must fill some groups equally (whole
    groups cut, or as many query heads cut in every group kept)."""

    # For `reads` (plan_dead); `slice` cuts by its own table.
    axes = {"key/kernel": {0: "key"}, "value/kernel": {0: "value"}}

    def role(self, layer, call):
        frozen = ("GroupQueryAttention makes its output as wide as its "
                  "query")
        return _attention_role(layer, call, layer.num_query_heads,
                               frozen_output=frozen, frozen_input=frozen)

    def units_kept(self, layer, unit, keep):
        """Keep whole groups where some query head is kept, and in each
        the same number of query heads (the most any kept group needs)."""
        per_group = np.asarray(keep).reshape(layer.num_key_value_heads, -1)
        need = per_group.sum(axis=1).max()
        out = per_group.copy()
        for row in out:
            if row.any():
                extra = np.flatnonzero(~row)[: need - row.sum()]
                row[extra] = True
        return out.ravel()

    def _kept_groups(self, layer, heads):
        repeats = layer.num_query_heads // layer.num_key_value_heads
        groups, counts = np.unique(heads // repeats, return_counts=True)
        if np.any(counts != counts[0]):
            detail = ", ".join(f"group {g}: {c}" for g, c in zip(groups,
                                                                 counts))
            raise ValueError(
                f"GroupQueryAttention layer `{layer.name}` must keep as "
                "many query heads in every key-value group it keeps "
                f"({repeats} heads a group); the plan keeps {detail}. Cut "
                "whole groups, or the same number of heads in each.")
        return groups

    def slice(self, layer, weights, pos):
        pos = self._inputs(pos)
        heads = pos.get("heads")
        groups = None
        config = {}
        if heads is not None:
            groups = self._kept_groups(layer, heads)
            config = {"num_query_heads": int(len(heads)),
                      "num_key_value_heads": int(len(groups))}
        where = {"q": heads, "kv": groups}
        axes = {
            "query/kernel": {1: "q"}, "query/bias": {0: "q"},
            "gate/kernel": {1: "q"}, "gate/bias": {0: "q"},
            "key/kernel": {0: "key", 1: "kv"}, "key/bias": {0: "kv"},
            "value/kernel": {0: "value", 1: "kv"}, "value/bias": {0: "kv"},
            "attention_output/kernel": {0: "q"},
        }
        out = {}
        for name, value in weights.items():
            for axis, which in axes.get(name, {}).items():
                index = where[which] if which in where else pos.get(which)
                value = take(value, axis, index)
            out[name] = value
        return config, out

    def macs(self, layer, in_shape, out_shape):
        value, key, tokens, source = _sizes(layer, in_shape)
        heads, groups = layer.num_query_heads, layer.num_key_value_heads
        dim = layer.head_dim
        projections = dim * (
            heads * tokens * in_shape[-1]
            + groups * source * (key[-1] + value[-1])
            + heads * tokens * out_shape[-1])
        if layer.use_gate:
            projections += dim * heads * tokens * in_shape[-1]
        return projections + 2 * heads * tokens * source * dim
