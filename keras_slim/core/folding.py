"""Folding the constants of cut channels into the layers that read them.

A cut channel whose value is a known constant (a BatchNormalization channel
with gamma zero outputs its beta) contributes a fixed amount to each layer
that mixes channels and reads it. `fold_constants` adds that amount (the
rule's `fold`) to the layer's bias, to the statistics of the normalization
after it (`Rule.shift_input`) when it has none, or to a new bias, and warns
where the fold is exact away from the borders only. Exact folding at the
borders too is `carriers.py`. Imports only keras and numpy.
"""

import warnings

import numpy as np

from keras_slim.core import propagation, rule_registry, rules

__all__ = ["FOLDS", "fold_constants", "producer_calls"]

FOLDS = ("exact", "bias", "none")


def producer_calls(graph):
    """The first call of every producer layer (Conv, Dense, ...) of `graph`,
    in call order: the calls whose input a fold or a carrier acts on."""
    done = set()
    for call in graph.calls:
        if call.role.kind == rule_registry.PRODUCER and id(call.layer) not in done:
            done.add(id(call.layer))
            yield call


def fold_constants(graph, kept, weights, positions, configs, dead_fn,
                   carried=None):
    """Fold the constants of cut channels into the layers that read them.

    Each producer that reads a cut constant channel takes `rule.fold`'s
    change of its outputs into its bias, into the statistics of the
    normalization after it (`Rule.shift_input`) when it has no bias, or
    into a new bias; with `carried` (fold="exact") the carriers' weight
    moves are made first. An approximate fold (a zero border between the
    constant and its reader) is warned about, naming the layers.

    Args:
        graph: the `ChannelGraph`.
        kept: dict group name -> kept indices (groups that lose some).
        weights: `id(layer) -> {name: array}`, updated in place.
        positions: `id(layer) -> {"in", "mid", "out"}` kept positions.
        configs: `id(layer) -> config updates`, updated in place.
        dead_fn: the dead mask of `kept`.
        carried: the `Carriers` of fold="exact", or `None`.

    Returns:
        The names of the layers whose change went into the statistics of
        the layer after them.
    """
    inexact, varying = {}, {}
    values = propagation.propagate(
        graph, lambda layer: weights[id(layer)], dead_fn, inexact, varying
    )
    _warn_varying(graph, kept, varying)
    if carried is not None:
        values = carried.values
    agreed = propagation.producer_inputs(graph, values)
    approximate = {}  # consumer name -> layers whose zero padding matters
    readers = {}
    for call in graph.calls:
        for key in call.inputs:
            readers.setdefault(key, []).append(call)
    shifted = set()  # layers whose change went into the next BN's mean
    for call in producer_calls(graph):
        layer = call.layer
        _warn_unabsorbed_slots(call, values, positions[id(layer)])
        pos_in = positions[id(layer)]["in"]
        if pos_in is None:
            continue
        value = agreed[id(layer)]
        removed = np.setdiff1d(np.arange(value.shape[0]), pos_in)
        rule = rule_registry.rule_for(layer)
        move = carried.moves.get(id(layer)) if carried else None
        if move is not None:
            sources, targets, scales = move
            weights[id(layer)] = rule.carry(layer, weights[id(layer)],
                                            sources, targets, scales)
            removed = np.setdiff1d(removed, sources)
        removed_values = value[removed]
        known = ~np.isnan(removed_values) & (removed_values != 0)
        first = values[call.inputs[0]][removed]
        if np.any(np.isnan(removed_values) & ~np.isnan(first)):
            warnings.warn(
                f"Layer `{layer.name}` is called several times and its calls "
                "see different constants on channels cut from its input; "
                "one bias cannot absorb them all, so they are dropped and "
                "its output shifts.",
                stacklevel=3,
            )
        if not np.any(known):
            continue
        mask, culprits = inexact[call.inputs[0]]
        culprits = set(culprits) if np.any(mask[removed[known]]) else set()
        if rules.zero_border(layer):
            culprits.add(layer.name)
        delta = rule.fold(layer, weights[id(layer)], removed[known],
                          removed_values[known])
        if delta is None:
            warnings.warn(
                f"Layer `{layer.name}` ({type(layer).__name__}) cannot absorb "
                "the constant output of the channels cut from its input; "
                "they are dropped, so its output shifts.",
                stacklevel=3,
            )
            continue
        if culprits:
            approximate[layer.name] = culprits
        if _absorb(graph, call, readers, delta, weights, configs):
            shifted.add(layer.name)
    if approximate:
        _warn_approximate(approximate, exact_offered=carried is None)
    return shifted


def _warn_unabsorbed_slots(call, values, pos):
    """Constants cut from the other inputs of a producer with several
    (attention's value and key) have no bias to go to: warn."""
    for index, slot in enumerate(call.role.inputs[1:], 1):
        if pos.get(slot) is None:
            continue
        value = values[call.inputs[index]]
        removed = value[np.setdiff1d(np.arange(value.shape[0]), pos[slot])]
        if np.any(~np.isnan(removed) & (removed != 0)):
            warnings.warn(
                f"Layer `{call.layer.name}` ({type(call.layer).__name__}) "
                f"cannot absorb the constant output of the channels cut "
                f"from its input `{slot}`; they are dropped, so its output "
                "shifts.", stacklevel=4)


def _shown(names):
    names = sorted(names)
    shown = ", ".join(f"`{name}`" for name in names[:5])
    if len(names) > 5:
        shown += f" and {len(names) - 5} more"
    return shown


def _warn_varying(graph, kept, varying):
    """Warn where cut channels reach a layer that mixes channels as values
    that are not one constant: no fold can stand for them."""
    readers, culprits = set(), set()
    for call in graph.calls:
        if call.role.kind != rule_registry.PRODUCER:
            continue
        layout = graph.layer_input.get(id(call.layer))
        positions = graph.kept_positions(layout, kept) if layout else None
        if positions is None:
            continue
        mask, names = varying[call.inputs[0]]
        removed = np.setdiff1d(np.arange(layout.size), positions)
        if np.any(mask[removed]):
            readers.add(call.layer.name)
            culprits |= names
    if readers:
        warnings.warn(
            "slim_model: channels the plan cuts reach "
            f"{_shown(readers)} as values that are not one constant: they "
            f"vary per sample or over space after {_shown(culprits)}. They "
            "cannot be folded, so they are dropped, and the output differs "
            "from the original with their gammas set to zero. Leave their "
            "groups out of the plan (`skip`), or cut channels whose gamma "
            "is zero.",
            stacklevel=4,
        )


def _warn_approximate(approximate, exact_offered=True):
    consumers = sorted(approximate)
    culprits = sorted(set().union(*approximate.values()))
    shown = ", ".join(f"`{name}`" for name in consumers[:5])
    if len(consumers) > 5:
        shown += f" and {len(consumers) - 5} more"
    padding = ", ".join(f"`{name}`" for name in culprits[:5])
    if len(culprits) > 5:
        padding += f" and {len(culprits) - 5} more"
    warnings.warn(
        "slim_model: approximate fold. The constant output of cut channels "
        f"is folded into {shown} exactly in the interior of the feature "
        "maps but not at their borders, which the zero padding of "
        f"{padding} fills with 0 instead of the constant. Outputs differ "
        "near the borders; fine-tune, or use valid padding (or cut channels "
        "whose BatchNormalization beta is zero too) for an exact fold"
        + (", or pass fold=\"exact\"." if exact_offered else "."),
        stacklevel=3,
    )


def _absorb(graph, call, readers, delta, weights, configs):
    """Add `delta` to the output of a producer: bias, next BN, or new bias.
    Returns whether the next BN's moving mean took it."""
    layer = call.layer
    own = weights[id(layer)]
    if "bias" in own:
        own["bias"] = own["bias"] + delta.astype(own["bias"].dtype)
        return
    following = readers.get(call.outputs[0], [])
    if (
        not rules.has_activation(layer)  # the next one sees act(x), not x
        and call.outputs[0] not in graph.output_keys  # x itself is seen
        and graph.call_count(layer) == 1
        and len(following) == 1
        and following[0].role.kind == rule_registry.CHANNELWISE
        and graph.call_count(following[0].layer) == 1
    ):
        after = following[0].layer
        shifted = rule_registry.rule_for(after).shift_input(
            after, weights[id(after)], delta)
        if shifted is not None:
            weights[id(after)] = shifted
            return True
    kernel_dtype = next(iter(own.values())).dtype
    own["bias"] = delta.astype(kernel_dtype)
    configs[id(layer)]["use_bias"] = True
