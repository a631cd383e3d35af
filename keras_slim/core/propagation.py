"""Which channels carry a constant, and what constant, in inference mode.

A BatchNormalization channel with gamma = 0 outputs its beta whatever its
input. That constant flows through activations, pooling, depthwise
convolutions and merges until a layer mixes channels (a convolution, a Dense),
where it becomes a fixed contribution that can be folded into a bias. This
module propagates such constants through a `ChannelGraph`: for every tensor an
array over its last axis holding the constant value of each position, or NaN
where the value depends on the input.

How a constant passes through a channelwise or merging layer is that
layer's rule's answer (`Rule.pass_constants`); this module walks the graph.

Values are taken at an interior position: with "same" padding a constant
feature map is not constant at its borders, which is the approximation of
Ye et al. (2018). `propagate` can also say which constants are only
interior values (`inexact`): those a zero padding or a "same"-padded
depthwise convolution has touched, with the names of those layers.
"""

import keras
import numpy as np

from keras_slim.core import copying, rule_registry, rules

__all__ = [
    "layer_weights",
    "producer_inputs",
    "propagate",
    "to_numpy",
]


def to_numpy(variable):
    return keras.ops.convert_to_numpy(keras.ops.copy(variable))


def layer_weights(layer):
    """`{key: numpy array}` of a layer's weights, keyed by their names (by
    their paths below the layer where sublayers repeat names:
    `copying.weight_keys`)."""
    values = layer.get_weights()
    keys = copying.weight_keys(layer) or [v.name for v in layer.weights]
    return dict(zip(keys, values))


def propagate(graph, weights, dead_fn, inexact=None, varying=None):
    """Constants of every tensor of `graph`.

    Args:
        graph: a `ChannelGraph`.
        weights: callable `layer -> {name: array}`.
        dead_fn: callable `layer -> bool mask over the input positions of a
            BatchNormalization layer` (positions whose gamma counts as zero),
            or `None`.
        inexact: a dict to fill, or `None`: tensor key -> `(mask, names)`,
            the positions whose constant holds in the interior of the
            feature map only and the layers that made it so.
        varying: a dict to fill, or `None`: tensor key -> `(mask, names)`,
            the positions whose value is not one constant (NaN) although a
            constant went into it, such as a cut channel's beta times a
            per-sample gate, and the layers where it stopped being one.

    Returns:
        dict tensor key -> float64 array over the last axis, NaN = unknown.
    """
    values = {}
    for tensor_key in _input_keys(graph):
        values[tensor_key] = np.full(graph.layouts[tensor_key].size, np.nan)
        for marks in (inexact, varying):
            if marks is not None:
                marks[tensor_key] = (np.zeros(values[tensor_key].shape, bool),
                                     set())
    for call in graph.calls:
        ins = [values[k] for k in call.inputs]
        outs = _call_constants(graph, call, ins, weights, dead_fn)
        for key, value in zip(call.outputs, outs):
            values[key] = value
        if inexact is not None:
            marks = _inexact(graph, call, [inexact[k] for k in call.inputs],
                             ins, outs, dead_fn)
            inexact.update(zip(call.outputs, marks))
        if varying is not None:
            marks = _varying(call, [varying[k] for k in call.inputs], ins,
                             outs)
            varying.update(zip(call.outputs, marks))
    return values


def _varying(call, ins, in_values, outs):
    """Which unknown outputs a constant went into (see `propagate`)."""
    kind = call.role.kind
    if kind in (rule_registry.PRODUCER, rule_registry.BARRIER) or not ins:
        return [(np.zeros(out.shape, bool), set()) for out in outs]
    names = set().union(*(n for _, n in ins))
    if kind == rule_registry.CONCAT:  # values are moved, not changed
        return [(np.concatenate([m for m, _ in ins]), names)]
    if kind == rule_registry.FLATTEN:
        return [(np.tile(ins[0][0], outs[0].shape[0] // ins[0][0].shape[0]),
                 names)]
    # A position a constant (or a varying value) went into.
    touched = [m | ~np.isnan(v) for (m, _), v in zip(ins, in_values)]
    if kind == rule_registry.MERGE:
        width = outs[0].shape[0]
        went_in = np.any([np.broadcast_to(t, (width,)) for t in touched],
                         axis=0)
        inherited = np.any([np.broadcast_to(m, (width,)) for m, _ in ins],
                           axis=0)
    else:  # CHANNELWISE
        went_in = np.repeat(touched[0], call.role.expand)
        inherited = np.repeat(ins[0][0], call.role.expand)
    mask = went_in & np.isnan(outs[0])
    if not np.any(mask & inherited):
        names = set()
    if np.any(mask & ~inherited):
        names = names | {call.layer.name}
    return [(mask, names)]


def _inexact(graph, call, ins, in_values, outs, dead_fn):
    """Which output constants hold in the interior only (see `propagate`)."""
    kind = call.role.kind
    clean = [(np.zeros(out.shape, bool), set()) for out in outs]
    if kind in (rule_registry.PRODUCER, rule_registry.BARRIER) or not ins:
        return clean
    names = set().union(*(n for _, n in ins))
    if kind == rule_registry.CONCAT:
        return [(np.concatenate([m for m, _ in ins]), names)]
    if kind == rule_registry.FLATTEN:
        return [(np.tile(ins[0][0], outs[0].shape[0] // ins[0][0].shape[0]),
                 names)]
    if kind == rule_registry.MERGE:
        width = outs[0].shape[0]
        mask = np.any([np.broadcast_to(m, (width,)) for m, _ in ins], axis=0)
    else:  # CHANNELWISE
        mask = np.repeat(ins[0][0], call.role.expand)
        if dead_fn and rule_registry.rule_for(call.layer).scales_channels(
                call.layer):
            dead = dead_fn(call.layer)
            if dead is not None:
                mask = mask & ~dead  # beta, whatever came in
        if rules.zero_border(call.layer):
            touched = np.repeat(
                ~np.isnan(in_values[0]) & (in_values[0] != 0), call.role.expand
            )
            if np.any(touched):
                mask = mask | touched
                names = names | {call.layer.name}
    mask = mask & ~np.isnan(outs[0])
    return [(mask, names if np.any(mask) else set())]


def producer_inputs(graph, values):
    """The input constants of each layer that mixes channels, agreed over
    its calls.

    A shared layer has one bias: a constant can only be folded into it when
    every call sees the same constant at that position. Positions where the
    calls disagree are NaN (not foldable).

    Returns:
        dict id(layer) -> float64 array over the layer's input positions.
    """
    agreed = {}
    for call in graph.calls:
        if call.role.kind != rule_registry.PRODUCER:
            continue
        value = values[call.inputs[0]]
        previous = agreed.get(id(call.layer))
        if previous is None:
            agreed[id(call.layer)] = value
        elif previous.shape == value.shape:
            same = np.isclose(previous, value, rtol=1e-6, atol=0)
            agreed[id(call.layer)] = np.where(same, previous, np.nan)
        else:
            agreed[id(call.layer)] = np.full(previous.shape, np.nan)
    return agreed


def _input_keys(graph):
    produced = {k for call in graph.calls for k in call.outputs}
    return [k for k in graph.layouts if k not in produced]


def _unknown(graph, call):
    return [np.full(graph.layouts[k].size, np.nan) for k in call.outputs]


def _call_constants(graph, call, ins, weights, dead_fn):
    kind = call.role.kind
    if kind in (rule_registry.PRODUCER, rule_registry.BARRIER):
        return _unknown(graph, call)
    if kind == rule_registry.CONCAT:
        return [np.concatenate(ins)]
    if kind == rule_registry.FLATTEN:
        tile = graph.layouts[call.outputs[0]].tile
        tile //= max(graph.layouts[call.inputs[0]].tile, 1)
        return [np.tile(ins[0], tile)]
    # CHANNELWISE and MERGE: the rule says.
    rule = rule_registry.rule_for(call.layer)
    dead = None
    if dead_fn is not None and rule.scales_channels(call.layer):
        dead = dead_fn(call.layer)
    own = (weights(call.layer) if isinstance(call.layer, keras.layers.Layer)
           else {})
    return [rule.pass_constants(call.layer, call, ins, own, dead)]
