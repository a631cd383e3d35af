"""Group magnitude: the norm of each unit's weights over every kernel of its
group.

A unit of a channel group (a channel; an attention head or an MLP unit
where the group's units are those) owns a slice of each kernel that writes
or reads it: a producer's output filter, a consumer's input rows, a
depthwise filter, the rows of a Dense after a `Flatten`. Which slice is
read from each layer's rule: its `axes` name, per weight, the axis cut on
each side of the layer ("in", "mid" or "out"), and the side's layout says
which positions of that axis carry the unit. So a rule whose kernels are
cut along a heads axis is scored per head with no change here.

Only kernels count (weights whose name holds "kernel"): biases,
normalization scales and statistics do not. Keras and NumPy only.
"""

import keras
import numpy as np

from keras_slim.core import propagation, rule_registry
from keras_slim.planners.criteria import reduce_scores

__all__ = ["kernel_masses", "unit_kernel_masses", "unit_norms"]


def _side_layouts(graph, call):
    """The layouts of the sides a rule's `axes` name, as the surgery reads
    them: the layer's input, its input after a depthwise expansion, and
    its output."""
    layer_in = graph.layer_input.get(id(call.layer))
    if layer_in is None and call.inputs:
        layer_in = graph.layouts.get(call.inputs[0])
    sides = {"in": layer_in}
    if layer_in is not None:
        sides["mid"] = layer_in.expanded(call.role.expand)
    if len(call.outputs) == 1:
        sides["out"] = graph.layouts.get(call.outputs[0])
    return sides


def _layer_calls(graph):
    """Each weighted layer once, with its first call (barriers left out)."""
    first = {}
    for call in graph.calls:
        first.setdefault(id(call.layer), call)
    return [call for call in first.values()
            if isinstance(call.layer, keras.layers.Layer)
            and call.role.kind != rule_registry.BARRIER
            and call.layer.weights]


def _axis_mass(value, axis, p, layer, name):
    """sum |w|^p over every axis but `axis`: one number per position."""
    value = np.asarray(value, dtype="float64")
    if not np.all(np.isfinite(value)):
        raise ValueError(
            f"Weight `{name}` of layer `{layer.name}` contains NaN or inf; "
            "the model's weights are broken (a diverged training?)."
        )
    moved = np.moveaxis(np.abs(value) ** p, axis, -1)
    return moved.reshape(-1, moved.shape[-1]).sum(axis=0)


def kernel_masses(graph, group, p=2, cache=None):
    """A `(width, n)` array: for each unit of `group`, the sum of |w|^p of
    its slice of each of the n kernel axes that carry it; `None` when no
    kernel carries the group.

    Args:
        graph: the model's `ChannelGraph`.
        group: one of its `ChannelGroup`s.
        p: the power (2 for the L2 norm).
        cache: a dict kept across the groups of one graph, or `None`.
    """
    cache = {} if cache is None else cache
    if group.unit != "channel":
        return unit_kernel_masses(graph, group, p, cache)
    find = graph.spaces.find
    columns = []
    for call in _layer_calls(graph):
        layer = call.layer
        axes = rule_registry.rule_for(layer).axes
        sides = None
        for name, by_axis in axes.items():
            if "kernel" not in name:
                continue
            for axis, side in by_axis.items():
                if sides is None:
                    sides = _side_layouts(graph, call)
                layout = sides.get(side)
                matrix = (None if layout is None
                          else layout.channel_positions(group.root, find))
                if matrix is None:
                    continue
                key = (id(layer), name, axis)
                if key not in cache:
                    if id(layer) not in cache:
                        cache[id(layer)] = propagation.layer_weights(layer)
                    value = cache[id(layer)].get(name)
                    cache[key] = None if value is None or \
                        value.shape[axis] != layout.size else \
                        _axis_mass(value, axis, p, layer, name)
                if cache[key] is not None:
                    columns.append(cache[key][matrix].sum(axis=1))
    if not columns:
        return None
    return np.stack(columns, axis=1)


def unit_kernel_masses(graph, group, p=2, cache=None):
    """`kernel_masses` of a group of units inside one layer (attention
    heads): each unit's index on the kernel axes the layer's rule names
    after the unit (`axes`: the query, key and value kernels' heads axis)
    and on the axes that carry it to the output (`Rule.unit_outputs`:
    the output projection's rows), read as they are; `None` when no
    kernel has such an axis of the group's width."""
    cache = {} if cache is None else cache
    name, unit = graph.unit_spaces[group.root]
    layer = graph.layer(name)
    rule = rule_registry.rule_for(layer)
    if id(layer) not in cache:
        cache[id(layer)] = propagation.layer_weights(layer)
    weights = cache[id(layer)]
    wanted = [(key, axis) for key, by_axis in rule.axes.items()
              for axis, side in by_axis.items() if side == unit]
    wanted += list(rule.unit_outputs(layer, unit).items())
    columns = []
    for key, axis in dict.fromkeys(wanted):
        value = weights.get(key)
        if ("kernel" in key and value is not None
                and value.shape[axis] == group.width):
            columns.append(_axis_mass(value, axis, p, layer, key))
    if not columns:
        return None
    return np.stack(columns, axis=1)


def unit_norms(graph, group, p=2, reduction="sum", cache=None):
    """Per unit of `group`, the p-norm of its weights over the group's
    kernels: `reduction` ("sum" by default: the norm of all of them
    together) of its per-kernel sums of |w|^p, to the power 1/p; `None`
    when no kernel carries the group."""
    masses = kernel_masses(graph, group, p, cache)
    if masses is None:
        return None
    return np.asarray(reduce_scores(masses, reduction, group),
                      dtype="float64") ** (1.0 / p)
