"""Exact folding of cut constant channels with "same" padding: carriers.

A cut channel that reaches a convolution as a constant `v` is not constant
at the borders when the convolution (or a `ZeroPadding` before it) pads with
zeros, so folding `v` into the bias is exact only in the interior (Ye et
al., 2018). But every constant channel that reaches a layer through the same
layers has the same spatial map up to its value: `v_k * P`. Keep one of them,
the *carrier* `r`, and add `v_k / v_r` times the weights that read each other
removed constant channel `k` to the weights that read `r`: the layer then
computes exactly what it computed with all of them, borders included, at the
cost of one kept channel per group and pattern.

This module finds the patterns (`patterns`, from what each layer's rule
says of the maps it makes: `Rule.maps`, `Rule.borders_differ`), chooses the
carriers (`add_carriers`) and says where the fold stays approximate (a
warning names the layer that breaks proportionality, such as a depthwise
convolution with "same" padding). Imports only keras and numpy.
"""

import dataclasses
import warnings

import numpy as np

from keras_slim.core import propagation, rule_registry
from keras_slim.core.folding import producer_calls

__all__ = ["add_carriers", "Carriers", "patterns"]

FULL = ()  # the constant fills the whole map


def _broken(layer):
    return ("broken", layer.name)


def _is_broken(tag):
    return isinstance(tag, tuple) and len(tag) == 2 and tag[0] == "broken"


def _arr(items):
    """An object array of tags (tuples stay elements, never an axis)."""
    items = list(items)
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def _derive(tags, key):
    """A new common pattern for each pattern in `tags` (linear, uniform)."""
    return _arr(t if t is None or _is_broken(t) else ("d", key, t)
                for t in tags)


def _pads(layer):
    """Whether a layer's own borders differ from its interior for a
    constant input (its rule says)."""
    return rule_registry.rule_for(layer).borders_differ(layer)


def _objects(size, value=None):
    return _arr([value] * size)


def patterns(graph, values, dead_fn):
    """The spatial pattern of every constant position of every tensor.

    Two positions with equal tags carry maps proportional to one common map
    (`FULL`: a constant over the whole map); a tag `("broken", name)` says
    layer `name` made the maps of different channels differ (such as a
    depthwise convolution with "same" padding); `None` where the value is
    unknown.

    Args:
        graph: a `ChannelGraph`.
        values: its constants, as `constants.propagate` returns them.
        dead_fn: as for `constants.propagate`.

    Returns:
        dict tensor key -> object array of tags over the last axis.
    """
    tags = {}
    produced = {k for call in graph.calls for k in call.outputs}
    for key, layout in graph.layouts.items():
        if key not in produced:
            tags[key] = _objects(layout.size)
    for index, call in enumerate(graph.calls):
        outs = _call_patterns(graph, index, call, [tags[k] for k in call.inputs],
                              [values[k] for k in call.inputs], dead_fn)
        for key, tag in zip(call.outputs, outs):
            if tag is None:
                tags[key] = _objects(graph.layouts[key].size)
            else:
                known = ~np.isnan(values[key])
                tags[key] = _arr(t if k else None for t, k in zip(tag, known))
    return tags


def _call_patterns(graph, index, call, ins, in_values, dead_fn):
    kind = call.role.kind
    layer = call.layer
    if kind in (rule_registry.PRODUCER, rule_registry.BARRIER):
        return [None] * len(call.outputs)
    if kind == rule_registry.CONCAT:
        return [np.concatenate(ins)]
    if kind == rule_registry.FLATTEN:
        out_size = graph.layouts[call.outputs[0]].size
        tile = out_size // max(ins[0].size, 1)
        return [_arr(t if t is None or t == FULL or _is_broken(t)
                     else ("d", index, s, t)
                     for s in range(tile) for t in ins[0])]
    tags, value = ins[0], in_values[0]
    if kind == rule_registry.CHANNELWISE:
        rule = rule_registry.rule_for(layer)
        expand = call.role.expand
        full = np.array([t == FULL for t in tags], dtype=bool)
        if rule.scales_channels(layer):
            out = _arr(FULL if f else _broken(layer) for f in full)
            if dead_fn is not None:
                for p in np.flatnonzero(dead_fn(layer)):
                    out[p] = FULL
            return [out]
        maps = rule.maps(layer)
        if maps == rule_registry.MAPS_KEPT:
            return [tags]
        if maps == rule_registry.MAPS_SIGNED:
            return [_arr(
                t if t is None or t == FULL or _is_broken(t)
                else ("d", index, t, float(np.sign(v)))
                for t, v in zip(tags, value))]
        if maps == rule_registry.MAPS_PADDED:
            return [_arr(
                t if t is None or _is_broken(t) else ("d", index, t)
                for t in tags)]
        if maps == rule_registry.MAPS_MOVED:
            # Linear and alike for every channel; a full map stays full.
            return [_arr(FULL if f else t
                         for f, t in zip(full, _derive(tags, index)))]
        # Value-changing maps (activations, affine maps, depthwise
        # convolutions) keep a full map full, unless a kernel meets its own
        # zero border.
        bordered = _pads(layer)
        out = _arr(FULL if f and not bordered else _broken(layer)
                   for f in full)
        return [_arr(out[i] for i in np.repeat(np.arange(len(out)), expand))]
    # MERGE: a full map where every input is full.
    width = graph.layouts[call.outputs[0]].size
    full = np.all([np.broadcast_to(np.array([t == FULL for t in tag]), (width,))
                   for tag in ins], axis=0)
    return [_arr(FULL if f else _broken(layer) for f in full)]


def _owners(graph, layout):
    """Group name and channel index of every position of a layout."""
    names, channels = [], []
    for seg in layout.segments:
        names.extend([graph.group_of_space(seg.space).name] * seg.size)
        channels.append(np.repeat(np.arange(seg.width), seg.expand))
    names = _arr(names * layout.tile)
    channels = np.tile(np.concatenate(channels) if channels
                       else np.zeros(0, np.int64), layout.tile)
    return names, channels


@dataclasses.dataclass
class Carriers:
    """What `add_carriers` decided.

    Attributes:
        kept: the kept indices with the carriers added.
        values: the constants every cut position is folded at.
        moves: id(layer) -> (removed positions, carrier positions, scales)
            on the input of each consuming layer.
        added: group name -> carrier channels added to the plan.
    """

    kept: dict
    values: dict
    moves: dict
    added: dict


def add_carriers(graph, kept, weights, dead_fn, warn=True):
    """Choose carriers and force them dead in `weights`.

    A carrier is a channel of the group of the removed ones with a nonzero
    constant and the same pattern at the consuming layer; a channel the
    plan keeps is taken first. A cut channel taken as carrier stays in the
    slim model with its gamma set to zero in every BatchNormalization of its
    group, so that it outputs the constant it was folded at.

    Args:
        graph: the `ChannelGraph`.
        kept: dict group name -> kept indices (only groups that lose some).
        weights: `id(layer) -> {name: array}`; carriers' gammas are zeroed
            in place.
        dead_fn: the dead mask of `kept`.
        warn: warn where a fold stays approximate, naming the layer.

    Returns:
        A `Carriers`.
    """
    values = propagation.propagate(graph, lambda layer: weights[id(layer)], dead_fn)
    tags = patterns(graph, values, dead_fn)
    kept = {name: np.asarray(idx) for name, idx in kept.items()}
    added = {}
    # A channel one consumer takes as its carrier is kept for every other
    # consumer too, so the carriers are settled first (a later consumer can
    # take a channel that an earlier one folded away), then the moves are
    # made against the final kept channels.
    while True:
        count = sum(len(idx) for idx in kept.values())
        _moves(graph, kept, added, weights, values, tags, warn=False)
        if sum(len(idx) for idx in kept.values()) == count:
            break
    moves = _moves(graph, kept, added, weights, values, tags, warn)
    return Carriers(kept, values, moves, added)


def _moves(graph, kept, added, weights, values, tags, warn):
    """id(layer) -> (removed positions, carrier positions, scales) of each
    consuming layer, choosing (and keeping) carriers where none is kept."""
    moves = {}
    for call in producer_calls(graph):
        layer = call.layer
        layout = graph.layer_input.get(id(layer))
        key = call.inputs[0]
        value, tag = values[key], tags[key]
        if layout is None or graph.kept_positions(layout, kept) is None:
            continue
        names, channels = _owners(graph, layout)
        removed = np.setdiff1d(np.arange(value.shape[0]),
                               graph.kept_positions(layout, kept))
        need = [p for p in removed
                if not np.isnan(value[p]) and value[p] != 0
                and (tag[p] != FULL or _pads(layer))]
        if not need:
            continue
        rule = rule_registry.rule_for(layer)
        if not getattr(rule, "carries", False):
            _warn(warn, layer, f"its rule cannot carry constants "
                  f"({type(layer).__name__})")
            continue
        chosen = {}
        sources, targets, scales = [], [], []
        for p in need:
            if channels[p] in kept.get(names[p], ()):
                continue  # taken as a carrier meanwhile
            if _is_broken(tag[p]):
                _warn(warn, layer, f"the cut channels reach it through "
                      f"`{tag[p][1]}`, where their maps stop being alike")
                continue
            q = chosen.get(tag[p])
            if q is None:
                q = _choose(graph, kept, names, channels, value, tag, tag[p])
                if q is None:
                    _warn(warn, layer, "no channel of the group can carry "
                          "the constant (no BatchNormalization gamma)")
                    continue
                chosen[tag[p]] = q
                _keep(graph, kept, added, weights, names[q], channels[q])
                if q == p:
                    continue
            sources.append(p)
            targets.append(q)
            scales.append(value[p] / value[q])
        if sources:
            moves[id(layer)] = (np.array(sources), np.array(targets),
                                np.array(scales))
    return moves


def _choose(graph, kept, names, channels, value, tag, wanted):
    """The carrier position for pattern `wanted`: kept channels first,
    then the cut channel with the largest constant."""
    best, best_key = None, None
    for q in range(value.shape[0]):
        if tag[q] != wanted or np.isnan(value[q]) or value[q] == 0:
            continue
        group = graph.group_by_name[names[q]]
        if not _can_force_dead(graph, group):
            continue
        is_kept = (names[q] not in kept
                   or channels[q] in kept[names[q]])
        rank = (is_kept, abs(value[q]))
        if best is None or rank > best_key:
            best, best_key = q, rank
    return best


def _can_force_dead(graph, group):
    return bool(group.batchnorms) and all(
        graph.layer(bn).scale for bn in group.batchnorms)


def _keep(graph, kept, added, weights, name, channel):
    if name not in kept or channel in kept[name]:
        return
    kept[name] = np.union1d(kept[name], [channel]).astype(np.int64)
    added.setdefault(name, []).append(int(channel))
    group = graph.group_by_name[name]
    for bn, matrix in group.bn_positions.items():
        gamma = weights[id(graph.layer(bn))]["gamma"]
        gamma[matrix[channel]] = 0


def _warn(enabled, layer, why):
    if enabled:
        warnings.warn(
            f"fold='exact': layer `{layer.name}` gets the constants of the "
            f"cut channels in its bias instead: {why}. Its output is exact "
            "away from the borders only.",
            stacklevel=4,
        )
