"""Channel selection: the pruning methods the seed papers compare.

Each planner scores the channels of every prunable channel group with NumPy
and returns a `PruningPlan`; none cuts a layer.

- `plan_global_gamma`: Network Slimming (Liu et al., 2017), one threshold
  over |gamma| across the whole network.
- `plan_l1_norm`: L1-norm filter pruning (Li et al., 2017), a predefined
  ratio per layer, the filters of smallest L1 norm going first.
- `plan_uniform`: the same share in every layer, by |gamma|, by L1 norm or
  at random.

Each ranks by an importance (`score=`, `keras_slim.planners.importance`):
the paper's by default, any registered one by name, or an `Importance`.

All of them share the constraints `min_channels`, `round_to`, `max_ratio` and
`skip`, applied to every group by one function, `constrain_width`. Groups that
cannot be cut (`ChannelGroup.prunable` is False: model inputs and outputs,
unknown layers) are never in a plan.
"""

import warnings

import numpy as np

from keras_slim.core.graph import ChannelGraph
from keras_slim.planners.candidates import (
    _group_layers,
    _layers_by_name,
    _no_candidates,
    build_plan,
    candidate_groups,
    merged_layers,
    plan_per_group,
    skipped_groups,
)
from keras_slim.planners.importance import get_importance
from keras_slim.planners.limits import (  # noqa: F401  (constrain_width re-exported)
    _check_against_max_ratio,
    _prune_count,
    check_constraints,
    check_ratio,
    constrain_width,
)
from keras_slim.planners.scores import score_groups

__all__ = ["merged_layers", "plan_global_gamma", "plan_l1_norm", "plan_uniform",
           "warn_unscored"]


def plan_global_gamma(model, ratio, min_channels=1, round_to=1,
                      max_ratio=None, skip=None, reduction=None,
                      normalize=None, score="gamma", seed=None):
    """Network Slimming: prune the channels of smallest |gamma| network-wide.

    All channels of the prunable groups scaled by BatchNormalization are
    ranked by |gamma| against one global threshold, and the `ratio` share of
    smallest goes (Liu et al., 2017). Each channel of a group counts once: a
    group whose channels pass through several BatchNormalization layers (the
    branches of a residual `Add`) is scored, per channel, by the largest
    |gamma| over them, so a channel goes only when it is small in every
    branch. Groups without BatchNormalization, whose BatchNormalization
    has no gamma (`scale=False`), or with a channel that reaches a layer
    mixing channels along a path none of their BatchNormalizations scales
    (so that its gamma does not measure it), are kept whole.

    `reduction` changes how a tied channel's |gamma| values make its score.
    "max" (the papers' rule, the default) keeps a residual stream's channel
    while any one branch needs it, so the streams stay wide and the
    blocks' interiors are cut instead. "mean" and "sum" let the many small
    copies of a stream count against it (Torch-Pruning reduces by the
    mean): streams get thinner, and the cut moves from interiors to them.
    `normalize` ("mean", "max", "sum") divides each group's scores by their
    own mean, max or sum before the global ranking, so that each channel
    competes with its own group and the cut spreads across groups, nearer
    to uniform widths (Torch-Pruning's default normalizes by the mean).

    Args:
        model: a functional or Sequential `keras.Model`, usually trained with
            an L1 penalty on gammas. Not modified.
        ratio: share of the candidate channels to prune, in [0, 1).
        min_channels: every group keeps at least this many channels.
        round_to: kept widths are rounded to a multiple of it (see
            `constrain_width`).
        max_ratio: at most this share of any group is pruned.
        skip: names of layers whose output channels are kept whole.
        reduction: "max", "mean", "sum", or a function of a channel's
            `(width, n)` array of |gamma| copies returning one score per
            channel (`keras_slim.planners.criteria.reduce_scores`); `None`
            for the importance's own ("max" for "gamma").
        normalize: `None` (the papers' rule, the default), "mean", "max",
            "sum", or a function of a group's scores returning as many
            (`keras_slim.planners.scores.normalize_scores`).
        score: the importance ranked network-wide: "gamma" (the papers'
            rule, the default), "l1", "magnitude", "random", one added
            with `register_importance`, an `Importance` or a function
            `score(graph, group) -> scores`
            (`keras_slim.planners.importance`).
        seed: seed of the "random" importance.

    Returns:
        A `PruningPlan`. The constraints can make the pruned share differ
        from `ratio`: `min_channels` and `max_ratio` lower it, `round_to`
        moves it by at most `round_to / 2` channels a group.

    Raises:
        ValueError: `ratio` outside [0, 1), a bad constraint, `ratio` above
            `max_ratio`, a `skip` name not in the model, or no group to prune.

    Example:

    >>> plan = keras_slim.plan_global_gamma(model, 0.5, round_to=8)
    >>> slim = keras_slim.slim_model(model, plan)
    """
    ratio = check_ratio(ratio)
    min_channels, round_to, max_ratio = check_constraints(
        min_channels, round_to, max_ratio
    )
    _check_against_max_ratio(ratio, max_ratio)
    graph = ChannelGraph(model)
    scores = score_groups(graph, candidate_groups(graph, skip), score,
                          seed, reduction, normalize)
    if not scores:
        raise _no_candidates("plan_global_gamma",
                             get_importance(score).unscored())
    names = list(scores)
    flat = np.concatenate([scores[n] for n in names])
    owner = np.concatenate(
        [np.full(len(scores[n]), i) for i, n in enumerate(names)]
    )
    count = _prune_count(ratio, flat.size)
    pruned = np.bincount(owner[np.argsort(flat, kind="stable")[:count]],
                         minlength=len(names))
    proposals = {
        n: graph.group_by_name[n].width - int(pruned[i])
        for i, n in enumerate(names)
    }
    return build_plan(graph, proposals, scores, min_channels, round_to,
                      max_ratio)


def _ratios_by_group(graph, ratio, skipped, max_ratio):
    """dict group name -> ratio from a float or a dict layer name -> ratio."""
    if not isinstance(ratio, dict):
        ratio = check_ratio(ratio)
        _check_against_max_ratio(ratio, max_ratio)
        return {g.name: ratio for g in graph.groups
                if g.prunable and g.name not in skipped}
    layers = _layers_by_name(graph)
    ratios = {}
    for name, value in ratio.items():
        value = check_ratio(value, argument=f"ratio[{name!r}]")
        _check_against_max_ratio(value, max_ratio, f" for layer `{name}`")
        if name not in layers:
            raise ValueError(
                f"`ratio` names layer `{name}`, which is not in model "
                f"`{graph.model.name}`."
            )
        groups = [g for g in graph.groups if name in _group_layers(g)]
        if len(groups) != 1:
            raise ValueError(
                f"`ratio` names layer `{name}`, whose output does not belong "
                "to exactly one channel group; name its convolution or "
                "Dense layer."
            )
        group = groups[0]
        if not group.prunable:
            raise ValueError(
                f"`ratio` names layer `{name}`, whose channels cannot be "
                f"pruned ({group.frozen})."
            )
        if group.name in skipped:
            raise ValueError(
                f"Conflicting arguments: layer `{name}` has a ratio but its "
                "channels are kept whole by `skip`."
            )
        previous = ratios.get(group.name)
        if previous is not None and previous != value:
            raise ValueError(
                f"Conflicting ratios for layers tied in channel group "
                f"`{group.name}`: {previous} and {value} (layer `{name}`). "
                "Tied layers lose the same channels; give them one ratio."
            )
        ratios[group.name] = value
    return ratios


def plan_l1_norm(model, ratio, min_channels=1, round_to=1, max_ratio=None,
                 skip=None, reduction=None, score="l1", seed=None):
    """L1-norm filter pruning (Li et al., 2017): predefined ratios per layer.

    In each group the filters of smallest L1 norm go. The L1 norm of a
    channel is that of its producer's output filter (the sum of the absolute
    kernel entries writing that channel), summed over the producers when a
    residual merge ties several. For the ResNet variants of Li et al. that
    prune only inside residual blocks, pass `skip=merged_layers(model)`.

    Args:
        model: a functional or Sequential `keras.Model`. Not modified.
        ratio: share of channels pruned in every prunable group, in [0, 1);
            or a dict of layer name (a convolution, Dense, or the
            BatchNormalization after it) -> ratio, the groups not named being
            kept whole.
        min_channels, round_to, max_ratio, skip: see `plan_global_gamma`.
        reduction: how the norms of a channel's producers make one score:
            "sum" (the default for "l1", as above), "max", "mean" or a
            function (see `plan_global_gamma`).
        score: the importance that orders a group's channels: "l1" (the
            paper's, the default) or another (see `plan_global_gamma`).
        seed: seed of the "random" importance.

    Returns:
        A `PruningPlan`.

    Raises:
        ValueError: a ratio outside [0, 1) or above `max_ratio`, a name not in
            the model, a layer both in `ratio` and `skip`, two different
            ratios for tied layers, or a layer that cannot be pruned.

    Example:

    >>> plan = keras_slim.plan_l1_norm(model, {"conv1": 0.5, "conv2": 0.3})
    """
    min_channels, round_to, max_ratio = check_constraints(
        min_channels, round_to, max_ratio
    )
    graph = ChannelGraph(model)
    skipped = skipped_groups(graph, skip)
    ratios = _ratios_by_group(graph, ratio, skipped, max_ratio)
    groups = [graph.group_by_name[name] for name in ratios]
    scores = score_groups(graph, groups, score, seed, reduction)
    warn_unscored("plan_l1_norm", score, groups, scores)
    return plan_per_group(graph, ratios, scores, min_channels, round_to,
                          max_ratio)


def plan_uniform(model, ratio, score="gamma", seed=None, min_channels=1,
                 round_to=1, max_ratio=None, skip=None, reduction=None):
    """The predefined baseline: prune the same share of every layer.

    Args:
        model: a functional or Sequential `keras.Model`. Not modified.
        ratio: share of channels pruned in every group, in [0, 1).
        score: which channels go within a group: "gamma" (smallest |gamma|;
            groups without a scaled BatchNormalization are kept whole, with
            a warning when that is every group), "l1" (smallest filter L1
            norm), "magnitude" (smallest group norm), "random", one added
            with `register_importance`, an `Importance`, or an importance
            function `score(graph, group) -> scores` (see
            `keras_slim.planners.importance`).
        seed: seed of the "random" score.
        min_channels, round_to, max_ratio, skip: see `plan_global_gamma`.
        reduction: for "gamma" and "l1", how a tied channel's copies make
            one score (see `plan_global_gamma`); `None` for the score's own
            ("max" for "gamma", "sum" for "l1").

    Returns:
        A `PruningPlan`.

    Raises:
        ValueError: see `plan_global_gamma`; also an unknown `score`.

    Example:

    >>> plan = keras_slim.plan_uniform(model, 0.5, score="random", seed=0)
    """
    ratio = check_ratio(ratio)
    min_channels, round_to, max_ratio = check_constraints(
        min_channels, round_to, max_ratio
    )
    _check_against_max_ratio(ratio, max_ratio)
    graph = ChannelGraph(model)
    groups = candidate_groups(graph, skip)
    scores = score_groups(graph, groups, score, seed, reduction)
    warn_unscored("plan_uniform", score, groups, scores)
    ratios = {g.name: ratio for g in groups}
    return plan_per_group(graph, ratios, scores, min_channels, round_to,
                          max_ratio)


def warn_unscored(method, score, groups, scores):
    """Warn when `groups` were to be cut but `score` scored none of them:
    the plan keeps the model whole, and the user should hear why."""
    if groups and not scores:
        importance = get_importance(score)
        warnings.warn(
            f"{method} keeps every group whole: {importance.unscored()} "
            f"Pass another `score` (such as \"l1\" or \"magnitude\") to "
            "rank the channels by their weights.",
            stacklevel=3,
        )
