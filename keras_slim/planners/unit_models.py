"""One layer alone, as a latency table times it.

`build_latency_table` (`latency_table.py`) times each layer that counts
MACs by itself at a few widths (`unit_model`), and, when asked, the merges,
concatenations, pooling and padding whose width a group sets
(`memory_calls`, `memory_unit_model`). Layers of one configuration at one
shape share a timing (`signature`). Keras only: nothing here is timed.
"""

import hashlib
import json

import keras

from keras_slim.core import rule_registry

__all__ = ["is_variable", "memory_calls", "memory_unit_model", "signature",
           "unit_model"]


def signature(call, in_shape, out_shape):
    config = dict(call.layer.get_config())
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None)
    text = json.dumps([type(call.layer).__name__, config, list(in_shape[1:]),
                       list(out_shape[1:]), call.role.kind, call.role.expand],
                      sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def unit_model(call, k_in, k_out, batch=1):
    """One layer alone at input width `k_in` and output width `k_out`."""
    layer = call.layer
    rule = rule_registry.rule_for(layer)
    config = dict(layer.get_config())
    config.pop("name", None)
    for key, which in rule.widths.items():
        config[key] = int(k_in if which == "in" else k_out)
    if call.role.kind == rule_registry.CHANNELWISE and \
            getattr(layer, "groups", 1) > 1:
        config.update(groups=int(k_in), filters=int(k_out))
    shape = tuple(call.input_shape[1:-1]) + (int(k_in),)
    inputs = keras.Input(shape, batch_size=batch)
    return keras.Model(inputs, type(layer).from_config(config)(inputs))


# How a layer that counts no MACs treats a channel's map (`Rule.maps`) when
# its time grows with its width: it moves, pads or pools every value.
# Activations and normalizations (`MAPS_VALUES`) are left out, as are
# dropout and identities (`MAPS_KEPT`): the runtimes fuse the first into
# the convolution or merge before them and drop the second.
_MOVING_MAPS = (rule_registry.MAPS_MOVED, rule_registry.MAPS_PADDED,
                rule_registry.MAPS_SIGNED)


def is_variable(graph, layout):
    return layout is not None and any(
        graph.group_of_space(s.space).prunable for s in layout.segments)


def memory_calls(counter):
    """The calls a table prices beside the MAC calls: merges,
    concatenations and the layers that move, pad or pool every value
    (average and max pooling, padding, cropping, upsampling), whose output
    width a prunable group sets.

    Args:
        counter: the model's `WidthCounter`.

    Returns:
        A list of `(call, output layout)`, in execution order.
    """
    graph = counter.graph
    found = []
    for call in graph.calls:
        layer = call.layer
        if not isinstance(layer, keras.layers.Layer) or \
                len(call.outputs) != 1 or not call.inputs:
            continue
        rule = rule_registry.rule_for(layer)
        if type(rule).macs is not rule_registry.Rule.macs:
            continue  # counted with the MAC calls
        kind = call.role.kind
        if kind not in (rule_registry.MERGE, rule_registry.CONCAT) and not (
                kind == rule_registry.CHANNELWISE and
                rule.maps(layer) in _MOVING_MAPS):
            continue
        layout = graph.layouts[call.outputs[0]]
        if is_variable(graph, layout):
            found.append((call, layout))
    return found


def memory_unit_model(graph, call, width, batch=1):
    """One merge, concatenation or pooling call alone, its output `width`
    channels wide (each input scaled to the same share of its own width)."""
    full = graph.shapes[call.outputs[0]][-1]
    inputs = []
    for key in call.inputs:
        shape = graph.shapes[key]
        size = max(1, int(round(shape[-1] * width / full)))
        inputs.append(keras.Input(tuple(shape[1:-1]) + (size,),
                                  batch_size=batch))
    config = dict(call.layer.get_config())
    config.pop("name", None)
    layer = type(call.layer).from_config(config)
    return keras.Model(inputs, layer(inputs if len(inputs) > 1 else inputs[0]))


def memory_signature(graph, call):
    config = dict(call.layer.get_config())
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None)
    text = json.dumps([type(call.layer).__name__, config,
                       [list(graph.shapes[k][1:]) for k in call.inputs],
                       list(graph.shapes[call.outputs[0]][1:])],
                      sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]
