"""Channel selection: the pruning methods the seed papers compare.

Each planner scores the channels of every prunable channel group with NumPy
and returns a `PruningPlan`; none cuts a layer.

- `plan_global_gamma`: Network Slimming (Liu et al., 2017), one threshold
  over |gamma| across the whole network.
- `plan_l1_norm`: L1-norm filter pruning (Li et al., 2017), a predefined
  ratio per layer, the filters of smallest L1 norm going first.
- `plan_uniform`: the same share in every layer, by |gamma|, by L1 norm or
  at random.

All of them share the constraints `min_channels`, `round_to`, `max_ratio` and
`skip`, applied to every group by one function, `constrain_width`. Groups that
cannot be cut (`ChannelGroup.prunable` is False: model inputs and outputs,
unknown layers) are never in a plan.
"""

import math

import numpy as np

from keras_slim.core import slicers
from keras_slim.core.graph import ChannelGraph, is_graph_model
from keras_slim.core.plan import PruningPlan
from keras_slim.planners.scores import score_groups


# -- checking arguments -----------------------------------------------------


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not (
        isinstance(value, bool)
    )


def check_ratio(ratio, argument="ratio"):
    """A float in [0, 1), or a ValueError naming `argument`."""
    if not _is_number(ratio) or not 0 <= float(ratio) < 1:
        raise ValueError(
            f"Expected `{argument}` in [0, 1). Received: {argument}={ratio!r}"
        )
    return float(ratio)


def check_constraints(min_channels=1, round_to=1, max_ratio=None):
    """Validate the shared constraints; returns them as a tuple."""
    for name, value in (("min_channels", min_channels), ("round_to", round_to)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) \
                or value < 1:
            raise ValueError(
                f"Expected `{name}` to be an integer >= 1. "
                f"Received: {name}={value!r}"
            )
    if max_ratio is not None and (
        not _is_number(max_ratio) or not 0 < float(max_ratio) <= 1
    ):
        raise ValueError(
            "Expected `max_ratio` in (0, 1] or None. "
            f"Received: max_ratio={max_ratio!r}"
        )
    return int(min_channels), int(round_to), (
        None if max_ratio is None else float(max_ratio)
    )


def _check_against_max_ratio(ratio, max_ratio, where=""):
    if max_ratio is not None and ratio > max_ratio:
        raise ValueError(
            f"Conflicting constraints: `ratio`={ratio}{where} is above "
            f"`max_ratio`={max_ratio}, so it can never be reached. Lower "
            "`ratio` or raise `max_ratio`."
        )


# -- the shared constraints -------------------------------------------------


def constrain_width(width, keep, min_channels=1, round_to=1, max_ratio=None):
    """The kept width of a group once the shared constraints are applied.

    Args:
        width: the group's full width.
        keep: the width a method proposes (clamped to [0, `width`]).
        min_channels: keep at least this many channels (or all of them when
            the group is narrower).
        round_to: a kept width is the multiple of `round_to` nearest to
            `keep` (halves rounding up), at least `round_to`, or the full
            width when that is nearer: a group narrower than `round_to`, or
            one whose nearest multiple would exceed its width, stays whole.
        max_ratio: at most this share of the group's channels goes.

    Returns:
        An int in [1, `width`].
    """
    keep = int(min(max(keep, 0), width))
    if keep >= width:
        return width
    lower = min(width, min_channels)
    if max_ratio is not None:
        lower = max(lower, width - math.floor(max_ratio * width + 1e-9))
    keep = max(keep, lower)
    if round_to > 1 and keep < width:
        multiple = math.floor(keep / round_to + 0.5) * round_to
        multiple = max(multiple, round_to)
        if multiple < lower:
            multiple = math.ceil(lower / round_to) * round_to
        if multiple > width or width - keep < abs(multiple - keep):
            return width
        keep = multiple
    return int(keep)


def _prune_count(ratio, width):
    """Channels a per-layer `ratio` removes: the nearest integer."""
    return int(math.floor(ratio * width + 0.5))


# -- reading the model ------------------------------------------------------


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
    merges = {c.layer.name for c in graph.calls if c.role.kind == slicers.MERGE}
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


def plan_global_gamma(model, ratio, min_channels=1, round_to=1,
                      max_ratio=None, skip=None):
    """Network Slimming: prune the channels of smallest |gamma| network-wide.

    All channels of the prunable groups scaled by BatchNormalization are
    ranked by |gamma| against one global threshold, and the `ratio` share of
    smallest goes (Liu et al., 2017). Each channel of a group counts once: a
    group whose channels pass through several BatchNormalization layers (the
    branches of a residual `Add`) is scored, per channel, by the largest
    |gamma| over them, so a channel goes only when it is small in every
    branch. Groups without BatchNormalization, or whose BatchNormalization
    has no gamma (`scale=False`), are kept whole.

    Args:
        model: a functional or Sequential `keras.Model`, usually trained with
            an L1 penalty on gammas. Not modified.
        ratio: share of the candidate channels to prune, in [0, 1).
        min_channels: every group keeps at least this many channels.
        round_to: kept widths are rounded to a multiple of it (see
            `constrain_width`).
        max_ratio: at most this share of any group is pruned.
        skip: names of layers whose output channels are kept whole.

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
    scores = score_groups(graph, candidate_groups(graph, skip), "gamma")
    if not scores:
        raise _no_candidates(
            "plan_global_gamma",
            "no prunable group is scaled by a BatchNormalization with gamma.",
        )
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
                 skip=None):
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
    scores = score_groups(graph, groups, "l1")
    return plan_per_group(graph, ratios, scores, min_channels, round_to,
                          max_ratio)


def plan_uniform(model, ratio, score="gamma", seed=None, min_channels=1,
                 round_to=1, max_ratio=None, skip=None):
    """The predefined baseline: prune the same share of every layer.

    Args:
        model: a functional or Sequential `keras.Model`. Not modified.
        ratio: share of channels pruned in every group, in [0, 1).
        score: which channels go within a group: "gamma" (smallest |gamma|;
            groups without a scaled BatchNormalization are kept whole),
            "l1" (smallest filter L1 norm) or "random".
        seed: seed of the "random" score.
        min_channels, round_to, max_ratio, skip: see `plan_global_gamma`.

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
    scores = score_groups(graph, groups, score, seed)
    ratios = {g.name: ratio for g in groups}
    return plan_per_group(graph, ratios, scores, min_channels, round_to,
                          max_ratio)
