"""`plan_dead`: cut every unit whose contribution is exactly zero.

The transformer counterpart of `plan_zero_gamma`, and the base of
mask-then-slim: zero some heads' rows of an attention layer's output
projection, or some MLP units' rows of the down projection, and
`plan_dead` + `slim_model` gives a smaller model computing the same.
"""

import numpy as np

from keras_slim.core import propagation, rule_registry
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.plan import PruningPlan
from keras_slim.planners import criteria

__all__ = ["plan_dead"]


def plan_dead(model):
    """Cut every channel and unit whose contribution is exactly zero.

    Three cases, each exactly zero, so that `slim_model` returns a model
    that computes what `model` computes (up to float rounding):

    - a BatchNormalization channel whose gamma is 0 in every
      BatchNormalization of its group: it outputs its beta, a constant
      `slim_model` folds into the layers that read it (`plan_zero_gamma`);
    - a channel whose slice is zero in the weights of every layer that
      reads it (the row of an MLP's down projection, of every consumer's
      kernel);
    - a unit inside a layer whose slices are zero in the weights through
      which it reaches the output (`Rule.unit_outputs`): an attention head
      whose rows of the output projection are zero. Grouped-query attention
      keeps the units its rule needs to be cut whole (`Rule.units_kept`).

    Every group keeps at least one channel or unit.

    Args:
        model: a functional or Sequential `keras.Model`.

    Returns:
        A `PruningPlan` naming each prunable group that loses channels.

    Example:

    >>> plan = keras_slim.plan_dead(model)
    >>> slim = keras_slim.slim_model(model, plan, verify=True)
    """
    graph = ChannelGraph(model)
    zero_gamma = criteria.plan_zero_gamma(model)
    cache = {}

    def weights(layer):
        if id(layer) not in cache:
            cache[id(layer)] = propagation.layer_weights(layer)
        return cache[id(layer)]

    kept, widths = {}, {}
    for group in graph.groups:
        if not group.prunable:
            continue
        if group.unit == "channel":
            dead = _unread(graph, group, weights)
            if group.name in zero_gamma.kept:
                dead[zero_gamma.removed(group.name)] = True
        else:
            dead = _silent_units(graph, group, weights)
        if not np.any(dead):
            continue
        if np.all(dead):
            dead[0] = False  # every group keeps one
        if group.unit != "channel":
            layer = graph.layer(group.members[0])
            rule = rule_registry.rule_for(layer)
            dead = ~np.asarray(rule.units_kept(layer, group.unit, ~dead))
        if np.any(dead):
            kept[group.name] = np.flatnonzero(~dead)
            widths[group.name] = group.width
    return PruningPlan(kept, widths)


def _unread(graph, group, weights):
    """Channels of `group` whose slice is zero in every weight that reads
    them, in every call of every layer that mixes them (False for all when
    the group has no such reader)."""
    find = graph.spaces.find
    dead = np.ones(group.width, bool)
    readers = 0
    for call in graph.calls:
        if call.role.kind != rule_registry.PRODUCER:
            continue
        layer = call.layer
        slots = graph.layer_slots.get(id(layer), {})
        layouts = {"in": graph.layer_input.get(id(layer)), **slots}
        rule = rule_registry.rule_for(layer)
        for slot, layout in layouts.items():
            rows = (layout.channel_positions(group.root, find)
                    if layout is not None else None)
            if rows is None:
                continue
            read = rule.reads(layer, call, slot)
            if not read:
                return np.zeros(group.width, bool)  # cannot tell: keep all
            readers += 1
            for name, axis in read.items():
                value = weights(layer).get(name)
                if value is None:
                    continue
                dead &= _zero_slices(value, axis, rows)
    return dead if readers else np.zeros(group.width, bool)


def _silent_units(graph, group, weights):
    """Units of `group` (heads) whose slices are zero in every weight
    through which they reach their layer's output."""
    layer = graph.layer(group.members[0])
    outputs = rule_registry.rule_for(layer).unit_outputs(layer, group.unit)
    dead = np.ones(group.width, bool) if outputs else np.zeros(group.width,
                                                              bool)
    rows = np.arange(group.width)[:, None]
    for name, axis in outputs.items():
        dead &= _zero_slices(weights(layer)[name], axis, rows)
    return dead


def _zero_slices(value, axis, rows):
    """Per row of `rows` (channel -> its positions on `axis`), whether the
    slices of `value` at those positions are all zero."""
    moved = np.moveaxis(np.asarray(value), axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    zero = ~np.any(flat != 0, axis=1)
    return np.all(zero[rows], axis=1)
