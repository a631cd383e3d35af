"""`slim_model`: rebuild a thinner model from a plan, weights copied.

Three steps, each on its own: read the channel graph (`graph.py`), fold the
constant outputs of cut channels into the layers that read them
(`folding.py`, from the constants of `constants.py` and the rules' `fold`),
and rebuild the graph with each layer
cut by its rule (`rule_registry.py`). The original model is never modified.
"""

import keras
import numpy as np

from keras_slim.core import carriers, folding, propagation, rule_registry
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.plan import PruningPlan
from keras_slim.core.rebuilding import assign, check_unshared, clone_layer, rebuild

__all__ = ["applied_plan", "slim_model"]


DEFAULT_FOLD = "bias"


def slim_model(model, plan, fold=None, verify=False, verify_tolerance=None):
    """A new, thinner model that keeps the channels `plan` keeps.

    Every layer keeps its name and config except its widths; kernels, biases,
    BatchNormalization parameters and statistics, depthwise kernels and the
    Dense rows after a Flatten are sliced and copied. A cut channel whose
    value is a known constant (a BatchNormalization channel whose gamma is
    zero, or one the plan cuts, outputs its beta) is folded into the layers
    that read it.

    Args:
        model: a functional or Sequential `keras.Model`. Not modified.
        plan: a `PruningPlan` for this model.
        fold: how the constants of cut channels are folded:
            - `"bias"` (default): into the bias of the layers that read
              them, into the moving mean of the BatchNormalization that
              follows a bias-free convolution, or into a new bias. Exact
              when no zero border lies between the constant and the layer
              that reads it ("valid" padding, 1 x 1 kernels, Dense); with
              "same" padding or a `ZeroPadding` layer exact except at the
              borders (Ye et al., 2018).
            - `"exact"`: as `"bias"` where that is exact; elsewhere one cut
              constant channel of the group stays as a *carrier* (its gamma
              set to zero, so it outputs its constant) and the weights that
              read the other cut constant channels are added, scaled by
              value / carrier value, to the weights that read it, so the
              borders are exact too, at the cost of one channel per group
              (`keras_slim.applied_plan` names the carriers). Where the maps
              of the cut channels stop being alike (a depthwise convolution
              with "same" padding, a separable consumer), it falls back to
              the bias with a warning naming the layer.
            - `"none"`: dropped, as Network Slimming's reference code does.
        verify: run the original with the cut channels' gammas set to zero
            (a cut channel that still depends on the input removed) and the
            slim model on the same random inputs, both in inference mode and
            neither changed, and raise `ValueError` naming the first layer
            whose output differs (`keras_slim/core/verification.py`).
        verify_tolerance: the largest difference `verify` accepts, relative
            to the largest magnitude of the layer's output. `None`: 1e-4,
            or 1e-2 when a layer computes in float16 (`"mixed_float16"`)
            and 8e-2 when one computes in bfloat16.

    Returns:
        A new `keras.Model` (Sequential if `model` is Sequential).

    Raises:
        TypeError: `model` is not a functional or Sequential model, or `plan`
            is not a `PruningPlan`.
        ValueError: the plan does not fit the model (naming the group), an
            unknown `fold`, or `verify` found a layer whose output differs.
    """
    fold = fold_mode(fold)
    if not isinstance(plan, PruningPlan):
        raise TypeError(
            "Expected `plan` to be a keras_slim.PruningPlan. "
            f"Received: plan={plan!r}"
        )
    graph = ChannelGraph(model)
    plan.validate(graph.groups)
    kept = {
        name: idx for name, idx in plan.kept.items()
        if idx.size != graph.group_by_name[name].width
    }
    layers = _unique_layers(graph)
    _check_finite_gammas(layers)
    weights = {id(layer): propagation.layer_weights(layer) for layer in layers}
    carried = None
    plan_kept = kept
    dead_fn = _dead_fn(graph, kept)
    if fold == "exact" and kept:
        carried = carriers.add_carriers(graph, kept, weights, dead_fn)
        kept = carried.kept
    positions = {id(layer): _positions(graph, call, kept)
                 for layer, call in layers.items()}
    _check_not_quantized(layers, positions)
    configs = {id(layer): {} for layer in layers}
    shifted = set()
    if fold != "none" and kept:
        shifted = folding.fold_constants(graph, kept, weights, positions,
                                         configs, _dead_fn(graph, kept),
                                         carried)
    new_layers = {}
    for layer, call in layers.items():
        rule = rule_registry.rule_for(layer)
        pos = positions[id(layer)]
        layer_weights = weights[id(layer)]
        if call.role.kind != rule_registry.BARRIER and any(
            p is not None for p in pos.values()
        ):
            config_update, layer_weights = rule.slice(layer, layer_weights, pos)
            configs[id(layer)].update(config_update)
        new_layers[id(layer)] = (clone_layer(layer, configs[id(layer)]),
                                 layer_weights)
    built = {}
    slim = rebuild(model, new_layers, built)
    for layer in layers:
        new_layer, layer_weights = new_layers[id(layer)]
        assign(new_layer, layer, layer_weights)
    check_unshared(model, slim)
    if verify:
        from keras_slim.core import verification

        verification.check(graph, slim, kept, fold, verify_tolerance, dead_fn,
                           plan_kept=plan_kept, shifted=shifted)
    return slim


def applied_plan(model, plan, fold=None):
    """The plan `slim_model(model, plan, fold=fold)` actually applies.

    With `fold="exact"` it keeps, besides `plan`'s channels, the carrier
    channels exact folding needs (at most one per group and pattern);
    otherwise it is `plan`. Count, report or save this plan to describe the
    slim model's widths.

    Returns:
        A `PruningPlan` with the widths of every group it names.
    """
    fold = fold_mode(fold)
    graph = ChannelGraph(model)
    plan.validate(graph.groups)
    kept = {
        name: idx for name, idx in plan.kept.items()
        if idx.size != graph.group_by_name[name].width
    }
    if fold == "exact" and kept:
        weights = {id(call.layer): propagation.layer_weights(call.layer)
                   for call in graph.calls
                   if isinstance(call.layer, keras.layers.Layer)}
        added = carriers.add_carriers(graph, kept, weights,
                                     _dead_fn(graph, kept), warn=False).added
        kept = dict(plan.kept)
        for name, channels in added.items():
            kept[name] = np.union1d(kept[name], channels)
        return PruningPlan(kept).complete(graph.groups)
    return plan.complete(graph.groups)


def fold_mode(fold):
    """The fold mode `fold` names (`None`: the default), or a ValueError:
    entry points that train before they slim check it first."""
    if fold is None:
        return DEFAULT_FOLD
    if not isinstance(fold, str) or fold not in folding.FOLDS:
        raise ValueError(
            f"Expected `fold` in {folding.FOLDS}. Received: fold={fold!r}"
        )
    return fold


def _unique_layers(graph):
    """Leaf layers (not stateless ops) with their first call."""
    layers = {}
    for call in graph.calls:
        if isinstance(call.layer, keras.layers.Layer):
            layers.setdefault(call.layer, call)
    return layers


def _check_finite_gammas(layers):
    """NaN gammas (a diverged training) would be copied into the slim model
    and read as channels to keep: refused, as the planners refuse them."""
    for layer in layers:
        if (isinstance(layer, keras.layers.BatchNormalization) and layer.scale
                and layer.built):
            gamma = propagation.to_numpy(layer.gamma)
            bad = int(np.sum(np.isnan(gamma)))
            if bad:
                raise ValueError(
                    f"BatchNormalization layer `{layer.name}` has {bad} NaN "
                    f"gamma(s) of {gamma.size}; the model's weights are "
                    "broken (a diverged training?). Restore finite weights "
                    "before slimming."
                )


def _check_not_quantized(layers, positions):
    """A quantized layer's integer kernel and scales are not what the rules
    slice and fold: one whose channels are cut is refused."""
    for layer in layers:
        mode = getattr(layer, "quantization_mode", None)
        if mode and any(p is not None for p in positions[id(layer)].values()):
            raise ValueError(
                f"Layer `{layer.name}` ({type(layer).__name__}) is quantized "
                f"({mode}) and the plan cuts its channels. Prune before "
                "quantizing: slim the float model, then quantize the slim "
                "one."
            )


def _positions(graph, call, kept):
    if call.role.kind == rule_registry.BARRIER:
        return {"in": None, "mid": None, "out": None}
    layer_in = graph.layer_input.get(id(call.layer))
    if layer_in is None:
        layer_in = graph.layouts[call.inputs[0]]
    out = None
    if len(call.outputs) == 1:
        out = graph.kept_positions(graph.layouts[call.outputs[0]], kept)
    pos = {
        "in": graph.kept_positions(layer_in, kept),
        "mid": graph.kept_positions(layer_in.expanded(call.role.expand), kept),
        "out": out,
    }
    # the other inputs of a producer with several, and its heads
    for extra in (graph.layer_slots, graph.layer_units):
        for key, layout in extra.get(id(call.layer), {}).items():
            pos[key] = graph.kept_positions(layout, kept)
    return pos


def _dead_fn(graph, kept):
    """BatchNormalization positions that output beta: gamma is exactly zero,
    or the plan cuts the channel (its expected value is beta)."""

    def dead(layer):
        layout = graph.layer_input[id(layer)]
        mask = np.zeros(layout.size, bool)
        positions = graph.kept_positions(layout, kept)
        if positions is not None:
            mask[:] = True
            mask[positions] = False
        gamma = layer.gamma if layer.scale else None
        if gamma is not None:
            mask |= propagation.to_numpy(gamma) == 0
        return mask

    return dead
