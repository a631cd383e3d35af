"""Guided pruning ("Rethinking the Value of Network Pruning", Section 5).

The widths a pruning method finds (e.g. Network Slimming) are averaged per
stage, and every layer of a stage gets that average: a uniform-per-stage
architecture to train from scratch. A stage is, by default, the layers whose
outputs have the same feature-map size, as in the paper.
"""

from keras_slim.core.graph import ChannelGraph
from keras_slim.core.plan import PruningPlan
from keras_slim.planners import selection
from keras_slim.planners.scores import score_groups

__all__ = ["plan_guided", "stage_ratios", "stages"]


def stages(model, stage_of=None, skip=None):
    """Prunable channel groups by stage.

    Args:
        model: a functional or Sequential `keras.Model`.
        stage_of: `None` for the paper's stages, the groups whose first
            producer outputs the same feature-map size (spatial shape); or a
            callable taking a group's name (its first producer layer) and
            returning a hashable stage key, or `None` to leave it out.
        skip: layer names whose groups are left out.

    Returns:
        dict stage key -> list of `ChannelGroup`.
    """
    return _stages(ChannelGraph(model), stage_of, skip)


def _stages(graph, stage_of, skip):
    if stage_of is not None and not callable(stage_of):
        raise TypeError(
            f"Expected `stage_of` to be callable or None. Received: {stage_of!r}"
        )
    outputs = {}
    for call in graph.calls:
        outputs.setdefault(call.layer.name, call.outputs)
    result = {}
    for group in selection.candidate_groups(graph, skip):
        if stage_of is None:
            # heads have no producer: their layer's output stands in
            layer = (group.producers or group.members)[0]
            shape = graph.shapes[outputs[layer][0]]
            key = tuple(shape[1:-1])
        else:
            key = stage_of(group.name)
        if key is not None:
            result.setdefault(key, []).append(group)
    return result


def stage_ratios(model, plans, stage_of=None, skip=None):
    """The share of channels kept per stage, averaged over plans.

    The share is the stage's kept channels over its channels (summed over
    the stage's groups and over `plans`), so groups of different widths
    weigh by their width.

    Args:
        model: the model the plans prune.
        plans: a `PruningPlan` or a list of them (the paper averages 5 runs).
        stage_of, skip: see `stages`.

    Returns:
        dict stage key -> kept share in (0, 1].
    """
    if isinstance(plans, PruningPlan):
        plans = [plans]
    if not plans or not all(isinstance(p, PruningPlan) for p in plans):
        raise TypeError(
            "Expected `plans` to be a PruningPlan or a list of them. "
            f"Received: {plans!r}"
        )
    shares = {}
    for key, groups in stages(model, stage_of, skip).items():
        kept = sum(len(p.kept.get(g.name, range(g.width)))
                   for p in plans for g in groups)
        shares[key] = kept / (len(plans) * sum(g.width for g in groups))
    return shares


def plan_guided(model, guide, stage_of=None, score="l1", seed=None,
                min_channels=1, round_to=1, max_ratio=None, skip=None):
    """Guided pruning: every group of a stage keeps the stage's average share.

    Rethinking, Section 5: the widths a method found (e.g. Network Slimming)
    are averaged per stage and applied uniformly within the stage; the
    resulting architecture is then trained from scratch (`reinitialize`),
    so which channels are kept matters little (`score` picks them). A guide
    from another model ("transferred guided pruning") works when the stage
    keys match.

    Args:
        model: a functional or Sequential `keras.Model`. Not modified.
        guide: a `PruningPlan` (or a list) for `model`, or a dict stage key
            -> kept share as returned by `stage_ratios`.
        stage_of, skip: see `stages`.
        score, seed: how channels are chosen within a group, as in
            `plan_uniform`: any importance, by name or object.
        min_channels, round_to, max_ratio: the shared constraints.

    Returns:
        A `PruningPlan`.

    Raises:
        ValueError: a stage of `model` missing from the `guide` dict, or a
            share outside (0, 1].
    """
    min_channels, round_to, max_ratio = selection.check_constraints(
        min_channels, round_to, max_ratio
    )
    if not isinstance(guide, dict):
        guide = stage_ratios(model, guide, stage_of, skip)
    graph = ChannelGraph(model)
    groups = _stages(graph, stage_of, skip)
    ratios = {}
    for key, members in groups.items():
        if key not in guide:
            raise ValueError(
                f"The guide has no share for stage {key!r} of model "
                f"`{model.name}`; it has {sorted(guide, key=str)}."
            )
        share = guide[key]
        if not 0 < share <= 1:
            raise ValueError(
                f"Expected shares in (0, 1]. Received: {share!r} for stage {key!r}"
            )
        for group in members:
            ratios[group.name] = 1.0 - share
    chosen = [graph.group_by_name[name] for name in ratios]
    scores = score_groups(graph, chosen, score, seed)
    selection.warn_unscored("plan_guided", score, chosen, scores)
    return selection.plan_per_group(graph, ratios, scores, min_channels,
                                    round_to, max_ratio)
