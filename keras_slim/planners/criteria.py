"""Criteria: plans from the state of a trained model.

Each criterion scores channels with NumPy and returns a `PruningPlan`; none
cuts a layer.
"""

import math

import numpy as np

from keras_slim.core import propagation, rule_registry
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.plan import PruningPlan

__all__ = ["bn_gamma_scores", "constant_channels", "plan_zero_gamma",
           "reduce_scores", "unscaled_groups"]


def _check_tol(tol):
    if not isinstance(tol, (int, float)) or math.isnan(tol) or tol < 0:
        raise ValueError(
            f"Expected `tol` to be a non-negative number. Received: tol={tol!r}"
        )


def _check_min_channels(min_channels):
    if not isinstance(min_channels, int) or min_channels < 1:
        raise ValueError(
            "Expected `min_channels` to be an integer >= 1. "
            f"Received: min_channels={min_channels!r}"
        )


def _group_gammas(graph, group):
    """|gamma| of each BatchNormalization scaling `group`, as `(width, k)`
    arrays over the positions of each channel; `None` when one of them has
    no gamma (`scale=False`)."""
    found = []
    for name, matrix in group.bn_positions.items():
        bn = graph.layer(name)
        if not bn.scale:
            return None
        found.append(np.abs(propagation.to_numpy(bn.gamma))[matrix])
    return found


def bn_gamma_scores(graph, group, reduction="max"):
    """Per channel of `group`, its |gamma| values over the BatchNormalization
    layers that scale it (over every position a channel occupies) reduced
    to one score: the largest by default (see `reduce_scores`)."""
    gammas = _group_gammas(graph, group)
    if gammas is None:
        return np.full(group.width, np.inf)
    return reduce_scores(np.concatenate(gammas, axis=1), reduction, group)


REDUCTIONS = ("max", "mean", "sum")


def reduce_scores(values, reduction, group):
    """One score per channel from `values`, a `(width, n)` array of the
    channel's n scores in a group (one per BatchNormalization, or producer,
    that the channel passes through).

    `reduction` is "max" (a channel is as important as its most important
    copy: a residual stream stays wide while one branch needs it), "mean",
    "sum" (both let the many small copies of a stream count against it), or
    a function `values -> (width,)` array.
    """
    if callable(reduction):
        name = getattr(reduction, "__name__", repr(reduction))
        score = np.asarray(reduction(values), dtype="float64")
        if score.shape != (group.width,):
            raise ValueError(
                f"Expected the reduction `{name}` to return {group.width} "
                f"scores for group `{group.name}` (one per channel) from "
                f"an array of shape {values.shape}. Received: shape "
                f"{score.shape}"
            )
        return score
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"Expected `reduction` to be one of {', '.join(REDUCTIONS)}, or a "
            "function of a (width, n) array returning one score per channel. "
            f"Received: reduction={reduction!r}"
        )
    return getattr(np, reduction)(values, axis=1)


def _weights_reader():
    """`layer -> {name: array}`, each layer's weights read once."""
    cache = {}

    def weights(layer):
        if id(layer) not in cache:
            cache[id(layer)] = propagation.layer_weights(layer)
        return cache[id(layer)]

    return weights


def constant_channels(graph, dead_fn):
    """For each group, the channels that reach every consumer as a constant
    that consumer can absorb.

    Returns:
        dict group name -> boolean array over the group's channels.
    """
    values = propagation.propagate(graph, _weights_reader(), dead_fn)
    agreed = propagation.producer_inputs(graph, values)
    find = graph.spaces.find
    result = {g.name: np.ones(g.width, bool) for g in graph.groups}
    readers = set()
    for call in graph.calls:
        if call.role.kind not in (rule_registry.PRODUCER, rule_registry.BARRIER):
            continue
        rule = rule_registry.rule_for(call.layer)
        absorbs = type(rule).fold is not rule_registry.Rule.fold
        for key in call.inputs:
            lay = graph.layouts[key]
            value = values[key]
            if key == call.inputs[0]:  # the input one bias sees, agreed
                value = agreed.get(id(call.layer), value)
            for root in {find(s.space) for s in lay.segments}:
                group = graph.group_of_root(root)
                matrix = lay.channel_positions(root, find)
                known = ~np.isnan(value[matrix])
                if not absorbs:
                    known &= value[matrix] == 0
                result[group.name] &= np.all(known, axis=1)
                readers.add(group.name)
    for key in graph.output_keys:
        for seg in graph.layouts[key].segments:
            result[graph.group_of_space(seg.space).name][:] = False
    for name in result:
        if name not in readers:
            # Read by nothing that mixes channels: no evidence either way.
            result[name][:] = False
    return result


def unscaled_groups(graph):
    """The groups with a channel that reaches a layer mixing channels along
    a path none of the group's BatchNormalizations scales.

    With every gamma of the model at zero, such a channel still arrives
    there as a live value (it is read before, or beside, its
    BatchNormalization: a layer shared by the group's two sides reads one
    of them raw). Its gamma does not say what cutting it costs, so gamma
    criteria leave the group whole. A constant made varying on the way (a
    cut channel's beta times a per-sample gate) is still scaled: cutting it
    is `slim_model`'s warning, not an unscaled path.
    """
    def dead(layer):
        return np.ones(layer.gamma.shape[0], bool) if layer.scale else None

    varying = {}
    values = propagation.propagate(graph, _weights_reader(), dead,
                                   varying=varying)
    find = graph.spaces.find
    unscaled = set()
    for call in graph.calls:
        if call.role.kind != rule_registry.PRODUCER:
            continue
        for key in call.inputs:
            lay = graph.layouts[key]
            raw = np.isnan(values[key]) & ~varying[key][0]
            if not np.any(raw):
                continue
            for root in {find(s.space) for s in lay.segments}:
                if np.any(raw[lay.channel_positions(root, find)]):
                    unscaled.add(graph.group_of_root(root).name)
    return unscaled


def _dead_in_every_batchnorm(graph, group, tol):
    gammas = _group_gammas(graph, group)
    if gammas is None:
        return np.zeros(group.width, bool)
    dead = np.ones(group.width, bool)
    for gamma in gammas:
        dead &= np.all(gamma <= tol, axis=1)
    return dead


def plan_zero_gamma(model, tol=0.0, min_channels=1):
    """Keep every channel except those whose BatchNormalization gamma is zero.

    A channel goes when its gamma is within `tol` of zero in every
    BatchNormalization that scales it within its group (every branch of a
    residual sum included), so that it reaches every layer that reads it as
    a constant (the activation of beta), which `slim_model` folds into that
    layer. Channels of a group with a path not scaled by a
    BatchNormalization are kept. This is how ISTA-trained models (Ye et al.,
    2018) are pruned.

    Args:
        model: a functional or Sequential `keras.Model`.
        tol: a gamma with `|gamma| <= tol` counts as zero.
        min_channels: every group keeps at least this many channels (those
            with the largest |gamma|).

    Returns:
        A `PruningPlan` naming each prunable group that loses channels.
    """
    _check_tol(tol)
    _check_min_channels(min_channels)
    graph = ChannelGraph(model)

    def dead(layer):
        if not layer.scale:
            return None
        gamma = propagation.to_numpy(layer.gamma)
        if np.any(np.isnan(gamma)):
            raise ValueError(
                f"The gamma of BatchNormalization layer `{layer.name}` "
                "contains NaN; the model's weights are broken."
            )
        return np.abs(gamma) <= tol

    removable = constant_channels(graph, dead)
    kept, widths = {}, {}
    for group in graph.groups:
        if not group.prunable or not group.batchnorms:
            continue
        gone = removable[group.name] & _dead_in_every_batchnorm(graph, group, tol)
        if not np.any(gone):
            continue
        keep = np.flatnonzero(~gone)
        if keep.size < min_channels:
            score = bn_gamma_scores(graph, group)
            order = np.argsort(-score, kind="stable")
            keep = np.sort(order[: min(min_channels, group.width)])
        if keep.size == group.width:
            continue
        kept[group.name] = keep
        widths[group.name] = group.width
    return PruningPlan(kept, widths)
