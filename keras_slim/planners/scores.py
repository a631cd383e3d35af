"""Per-channel scores of a channel group: |gamma|, filter L1 norm, random,
or a user's importance function.

Higher scores are kept first. Plain NumPy over the model's weights.

An importance function is `importance(graph, group) -> scores`: `graph` is
the model's `ChannelGraph` (`graph.layer(name)` is a layer, `group.producers`
the layers writing the group's channels, `group.batchnorms` its
BatchNormalizations), and `scores` an array of `group.width` finite numbers,
or `None` to keep the group whole. It goes wherever a score name does:
`score=` of `plan_uniform`, of `plan_for_budget(method="latency_aware")` and
of `keras_slim.planners.allocation.plan_by_cost`.
"""

import numpy as np

from keras_slim.core import propagation, rule_registry
from keras_slim.planners.criteria import (
    bn_gamma_scores,
    reduce_scores,
    unscaled_groups,
)

__all__ = ["filter_norms", "gamma_scores", "l1_scores", "normalize_scores",
           "score_groups"]

SCORES = ("gamma", "l1", "random")
NORMALIZERS = ("mean", "max", "sum")


def gamma_scores(graph, group, reduction="max", unscaled=None):
    """Per channel, its |gamma| over the group's BatchNormalizations reduced
    by `reduction` (the largest by default), or `None` when a
    BatchNormalization has no gamma (`scale=False`), the group has none, or
    one of its channels reaches a layer that mixes channels along a path no
    BatchNormalization of it scales (`criteria.unscaled_groups`; pass its
    answer as `unscaled` to compute it once for many groups)."""
    if not group.batchnorms:
        return None
    if unscaled is None:
        unscaled = unscaled_groups(graph)
    if group.name in unscaled:
        return None
    score = bn_gamma_scores(graph, group, reduction)
    if np.any(np.isinf(score)):
        return None
    if np.any(np.isnan(score)):
        raise ValueError(
            f"The BatchNormalization gammas of group `{group.name}` contain "
            "NaN; the model's weights are broken."
        )
    return score


def filter_norms(layer, width):
    """L1 norm of each output filter of a producer layer."""
    rule = rule_registry.rule_for(layer)
    weights = propagation.layer_weights(layer)
    total = np.zeros(width)
    found = False
    for name, axes in rule.axes.items():
        value = weights.get(name)
        out_axes = [a for a, which in axes.items() if which == "out"]
        if value is None or value.ndim < 2 or not out_axes:
            continue
        moved = np.moveaxis(np.abs(value), out_axes[0], -1)
        total = total + moved.reshape(-1, moved.shape[-1]).sum(axis=0)
        found = True
    if not found or total.shape[0] != width:
        raise ValueError(
            f"Cannot compute the L1 norm of the filters of layer "
            f"`{layer.name}` ({type(layer).__name__}); pass it in `skip`."
        )
    return total


def l1_scores(graph, group, reduction="sum"):
    """Per channel, the L1 norm of its filter over the producers, reduced
    by `reduction` (summed by default)."""
    norms = [filter_norms(graph.layer(name), group.width)
             for name in group.producers]
    if not norms:
        return np.zeros(group.width)
    return reduce_scores(np.stack(norms, axis=1), reduction, group)


# The reduction over a channel's copies each score uses unless told.
DEFAULT_REDUCTIONS = {"gamma": "max", "l1": "sum"}


def normalize_scores(scores, normalize):
    """Each group's scores divided by their own "mean", "max" or "sum", or
    mapped by a function `normalize(scores) -> scores` (one array of a
    group's channel scores in, one of the same shape out); `None` leaves
    them as they are.

    A global ranking then compares each channel with the rest of its own
    group: a group whose channels all score low is no longer cut first,
    and the cut spreads over the groups (Torch-Pruning normalizes a
    group's importance by its mean before its global ranking).
    """
    if normalize is None:
        return scores
    if not callable(normalize) and normalize not in NORMALIZERS:
        raise ValueError(
            f"Expected `normalize` to be None, one of "
            f"{', '.join(NORMALIZERS)}, or a function of a group's scores "
            f"returning as many. Received: normalize={normalize!r}"
        )
    name = getattr(normalize, "__name__", repr(normalize))
    out = {}
    for group, values in scores.items():
        values = np.asarray(values, dtype="float64")
        if callable(normalize):
            value = np.asarray(normalize(values.copy()), dtype="float64")
            if value.shape != values.shape or not np.all(np.isfinite(value)):
                raise ValueError(
                    f"Expected the normalizer `{name}` to return "
                    f"{values.size} finite scores for group `{group}`. "
                    f"Received: an array of shape {value.shape}"
                )
        else:
            scale = getattr(np, normalize)(np.abs(values))
            value = values / scale if scale > 0 else values
        out[group] = value
    return out


def score_groups(graph, groups, score, seed=None, reduction=None,
                 normalize=None):
    """dict group name -> per-channel scores, for the groups that have one.

    `score` is "gamma" (groups without a scaled BatchNormalization, or
    with a path none of theirs scales, are left out), "l1", "random" (a
    generator seeded by `seed`) or an importance function
    `score(graph, group) -> scores or None` (see the module).
    `reduction` says how the scores of a channel's copies in a group (its
    BatchNormalizations for "gamma", its producers for "l1") make one:
    "max", "mean", "sum" or a function (`criteria.reduce_scores`); `None`
    for the score's own, "max" for "gamma" and "sum" for "l1".
    `normalize` then rescales each group's scores (`normalize_scores`).
    """
    if callable(score):
        if reduction is not None:
            raise ValueError(
                "Conflicting arguments: `reduction` applies to the 'gamma' "
                "and 'l1' scores; an importance function reduces its own.")
        return normalize_scores(_called_scores(graph, groups, score),
                                normalize)
    if score not in SCORES:
        raise ValueError(
            f"Expected `score` to be one of {', '.join(SCORES)}, or a "
            "function `score(graph, group)` returning one score per "
            f"channel. Received: score={score!r}"
        )
    if reduction is None:
        reduction = DEFAULT_REDUCTIONS.get(score, "max")
    rng = np.random.default_rng(seed)
    unscaled = unscaled_groups(graph) if score == "gamma" else set()
    scores = {}
    for group in groups:
        if score == "gamma":
            value = gamma_scores(graph, group, reduction, unscaled)
        elif score == "l1":
            value = l1_scores(graph, group, reduction)
        else:
            value = rng.random(group.width)
        if value is not None:
            scores[group.name] = value
    return normalize_scores(scores, normalize)


def _called_scores(graph, groups, importance):
    """`score_groups` for an importance function, its answers checked."""
    name = getattr(importance, "__name__", repr(importance))
    scores = {}
    for group in groups:
        value = importance(graph, group)
        if value is None:
            continue
        value = np.asarray(value, dtype="float64")
        if value.shape != (group.width,) or not np.all(np.isfinite(value)):
            raise ValueError(
                f"Expected the importance function `{name}` to return "
                f"{group.width} finite scores for group `{group.name}` (one "
                f"per channel) or None. Received: an array of shape "
                f"{value.shape}"
                + ("" if value.shape != (group.width,) else " with NaN or inf")
            )
        scores[group.name] = value
    return scores
