"""Which channel groups a planner may cut (`skip`, merged layers), and the
plan built from the channels each group keeps."""

import numpy as np

from keras_slim.core import rule_registry
from keras_slim.core.graph import ChannelGraph, is_graph_model
from keras_slim.core.plan import PruningPlan
from keras_slim.planners.limits import (
    _prune_count,
    constrain_width,
)

__all__ = [
    "build_plan",
    "candidate_groups",
    "merged_layers",
    "plan_per_group",
    "skipped_groups",
]


def _layers_by_name(graph):
    """name -> layer for every leaf layer and nested model of the model."""
    names = {}

    def visit(model):
        for layer in model.layers:
            names.setdefault(layer.name, layer)
            if is_graph_model(layer):
                visit(layer)

    visit(graph.model)
    for call in graph.calls:
        names.setdefault(call.layer.name, call.layer)
    return names


def _leaf_names(layer):
    if not is_graph_model(layer):
        return {layer.name}
    names = set()
    for inner in layer.layers:
        names |= _leaf_names(inner)
    return names


def _group_layers(group):
    """The layers whose output carries the group's channels."""
    return set(group.producers) | set(group.batchnorms) | set(group.members)


def skipped_groups(graph, skip):
    """Names of the groups that the layers in `skip` keep whole.

    A skipped layer keeps the channels of its output whole: for a
    convolution or Dense its filters, for a BatchNormalization or an
    activation the group(s) passing through it, for a nested model every
    layer inside it.

    Raises:
        ValueError: a name is not a layer of the model (naming it).
    """
    if skip is None:
        return set()
    if isinstance(skip, str):
        skip = [skip]
    layers = _layers_by_name(graph)
    names = set()
    for name in skip:
        if name not in layers:
            raise ValueError(
                f"`skip` names layer `{name}`, which is not in model "
                f"`{graph.model.name}`."
            )
        names |= _leaf_names(layers[name])
    return {g.name for g in graph.groups if _group_layers(g) & names}


def merged_layers(model):
    """Convolutions and Dense layers whose channels meet in an elementwise merge.

    These are the producers of prunable groups tied by a residual `Add` (or
    another elementwise merge such as `Multiply`). Passing them as `skip`
    prunes only the layers inside residual blocks, as the L1-norm ResNet-56/110
    variants of Li et al. (2017) and the Rethinking repository do:
    `plan_l1_norm(model, 0.1, skip=merged_layers(model))`.

    Args:
        model: a functional or Sequential `keras.Model`.

    Returns:
        A sorted list of layer names.
    """
    graph = ChannelGraph(model)
    merges = {c.layer.name for c in graph.calls if c.role.kind == rule_registry.MERGE}
    names = set()
    for group in graph.groups:
        if group.prunable and set(group.members) & merges:
            names.update(group.producers)
    return sorted(names)


def candidate_groups(graph, skip=None):
    """Prunable groups of `graph`, minus those `skip` keeps whole."""
    skipped = skipped_groups(graph, skip)
    return [g for g in graph.groups if g.prunable and g.name not in skipped]


# -- building plans ---------------------------------------------------------


def build_plan(graph, proposals, scores, min_channels=1, round_to=1,
               max_ratio=None):
    """The plan keeping, in each group, its best-scored channels.

    This is where every method's proposal meets the shared constraints.

    Args:
        graph: the model's `ChannelGraph`.
        proposals: dict group name -> proposed kept width.
        scores: dict group name -> per-channel scores (higher is kept first;
            ties keep the lower index).
        min_channels, round_to, max_ratio: see `constrain_width`.

    Returns:
        A `PruningPlan` naming the groups that lose channels.
    """
    kept, widths = {}, {}
    for name, proposal in proposals.items():
        group = graph.group_by_name[name]
        if not group.prunable:
            continue
        keep = constrain_width(group.width, proposal, min_channels, round_to,
                               max_ratio)
        if keep >= group.width:
            continue
        order = np.argsort(-np.asarray(scores[name]), kind="stable")
        kept[name] = np.sort(order[:keep])
        widths[name] = group.width
    return PruningPlan(kept, widths)


def plan_per_group(graph, ratios, scores, min_channels=1, round_to=1,
                   max_ratio=None):
    """A plan pruning `ratios[group]` of each group's channels."""
    proposals = {
        name: graph.group_by_name[name].width
        - _prune_count(ratio, graph.group_by_name[name].width)
        for name, ratio in ratios.items()
        if name in scores
    }
    return build_plan(graph, proposals, scores, min_channels, round_to,
                      max_ratio)


def _no_candidates(method, detail):
    return ValueError(f"{method} found no channel group to prune: {detail}")
