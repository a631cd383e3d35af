"""The built-in importances, and the scores of a model's groups.

- "gamma": |gamma| of the group's BatchNormalizations (Network Slimming).
- "l1": the L1 norm of each channel's filter in its producers (Li et al.).
- "magnitude": the L2 norm of each unit's weights over every kernel of the
  group (`magnitude.unit_norms`), for channels, heads and MLP units alike.
- "random": uniform draws from a generator seeded by the planner's `seed`.

Each is an `Importance` in `importance.IMPORTANCES`; `score_groups` scores
a model's groups with any importance (see `keras_slim.planners.importance`
for the protocol). Higher scores are kept first. Plain NumPy over the
model's weights.
"""

import numbers

import numpy as np

from keras_slim.core import propagation, rule_registry
from keras_slim.planners.criteria import (
    bn_gamma_scores,
    reduce_scores,
    unscaled_groups,
)
from keras_slim.planners.importance import (
    FunctionImportance,
    Importance,
    get_importance,
    register_importance,
)
from keras_slim.planners.magnitude import unit_kernel_masses, unit_norms

__all__ = ["check_seed", "filter_norms", "gamma_scores", "l1_scores",
           "normalize_scores", "score_groups"]

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
    if any(not graph.layer(name).scale for name in group.batchnorms):
        return None
    if unscaled is None:
        unscaled = unscaled_groups(graph)
    if group.name in unscaled:
        return None
    _check_finite_gammas(graph, group)
    return bn_gamma_scores(graph, group, reduction)


def _check_finite_gammas(graph, group):
    """NaN or inf in a gamma (a diverged training) is refused: an inf
    would rank its channel first and, reduced with the others, could
    hide the whole group from a global ranking."""
    for name, matrix in group.bn_positions.items():
        gamma = propagation.to_numpy(graph.layer(name).gamma)[matrix]
        bad = ~np.all(np.isfinite(gamma), axis=1)
        if np.any(bad):
            kind = "NaN" if np.any(np.isnan(gamma)) else "inf"
            raise ValueError(
                f"The BatchNormalization gammas of group `{group.name}` "
                f"contain {kind} (layer `{name}`, channel "
                f"{int(np.flatnonzero(bad)[0])}); the model's weights are "
                "broken (a diverged training?)."
            )


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
    if found and not np.all(np.isfinite(total)):
        raise ValueError(
            f"The filters of layer `{layer.name}` contain NaN or inf; the "
            "model's weights are broken (a diverged training?)."
        )
    if not found or total.shape[0] != width:
        raise ValueError(
            f"Cannot compute the L1 norm of the filters of layer "
            f"`{layer.name}` ({type(layer).__name__}); pass it in `skip`."
        )
    return total


def l1_scores(graph, group, reduction="sum"):
    """Per channel, the L1 norm of its filter over the producers, reduced
    by `reduction` (summed by default)."""
    if group.unit != "channel":  # heads: |w| of their q/k/v/output rows
        masses = unit_kernel_masses(graph, group, p=1)
        return (None if masses is None
                else reduce_scores(masses, reduction, group))
    norms = [filter_norms(graph.layer(name), group.width)
             for name in group.producers]
    if not norms:
        return np.zeros(group.width)
    return reduce_scores(np.stack(norms, axis=1), reduction, group)


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


def check_seed(seed):
    """`seed` as an int, or `None`; refused with its value otherwise."""
    if seed is None:
        return None
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) \
            and seed >= 0:
        return int(seed)
    raise ValueError(
        "Expected `seed` to be None or a non-negative integer. "
        f"Received: seed={seed!r}"
    )


def score_groups(graph, groups, score, seed=None, reduction=None,
                 normalize=None):
    """dict group name -> per-unit scores, for the groups that have one.

    `score` is an importance (`keras_slim.planners.importance`): a
    registered name ("gamma": groups without a scaled BatchNormalization,
    or with a path none of theirs scales, are left out; "l1";
    "magnitude"; "random", a generator seeded by `seed`), an `Importance`,
    or a function `score(graph, group) -> scores or None`.
    `reduction` says how the scores of a unit's copies in a group (its
    BatchNormalizations for "gamma", its producers for "l1", its kernels
    for "magnitude") make one: "max", "mean", "sum" or a function
    (`criteria.reduce_scores`); `None` for the importance's own ("max"
    for "gamma", "sum" for "l1" and "magnitude"); refused for an
    importance without copies. `normalize` then rescales each group's
    scores (`normalize_scores`).
    """
    importance = get_importance(score)
    scorer = importance.bind(graph, reduction, check_seed(seed))
    scores = {}
    for group in groups:
        value = scorer(graph, group)
        if value is not None:
            scores[group.name] = _checked(scorer, group, value)
    return normalize_scores(scores, normalize)


def _checked(importance, group, value):
    """An importance's answer for `group` as float64, or a clear error."""
    value = np.asarray(value, dtype="float64")
    if value.shape != (group.width,) or not np.all(np.isfinite(value)):
        kind = " function" if isinstance(importance, FunctionImportance) \
            else ""
        raise ValueError(
            f"Expected the importance{kind} `{importance.label}` to return "
            f"{group.width} finite scores for group `{group.name}` (one "
            f"per unit) or None. Received: an array of shape "
            f"{value.shape}"
            + ("" if value.shape != (group.width,) else " with NaN or inf")
        )
    return value


# -- the built-in importances -------------------------------------------------


class GammaImportance(Importance):
    """Network Slimming: |gamma| of the group's BatchNormalizations."""

    reduction = "max"

    def setup(self, graph, seed=None):
        self._unscaled = (graph, None)

    def __call__(self, graph, group):
        cached = getattr(self, "_unscaled", None)
        unscaled = None
        if cached is not None and cached[0] is graph and group.batchnorms:
            if cached[1] is None:
                self._unscaled = (graph, unscaled_groups(graph))
            unscaled = self._unscaled[1]
        return gamma_scores(graph, group, self.reduction, unscaled)

    def unscored(self):
        return ("no prunable group is scaled by a BatchNormalization "
                "with gamma.")


class L1Importance(Importance):
    """Li et al.: the L1 norm of each channel's filter in its producers."""

    reduction = "sum"

    def __call__(self, graph, group):
        return l1_scores(graph, group, self.reduction)


class MagnitudeImportance(Importance):
    """Group magnitude: the norm of each unit's weights over every kernel
    of its group (Torch-Pruning's group norm).

    Args:
        p: the norm's power (2: the L2 norm).
    """

    reduction = "sum"

    def __init__(self, p=2):
        if not isinstance(p, (int, float)) or isinstance(p, bool) or \
                not p > 0 or not np.isfinite(p):
            raise ValueError(
                f"Expected `p` to be a positive number. Received: p={p!r}")
        self.p = p

    def setup(self, graph, seed=None):
        self._cache = (graph, {})

    def get_config(self):
        return dict(super().get_config(), p=self.p)

    def __call__(self, graph, group):
        cached = getattr(self, "_cache", None)
        cache = cached[1] if cached is not None and cached[0] is graph \
            else None
        return unit_norms(graph, group, self.p, self.reduction, cache)

    def unscored(self):
        return "no prunable group has a kernel that carries its units."


class RandomImportance(Importance):
    """uniform random scores (the seed of the planner's `seed`)"""

    def setup(self, graph, seed=None):
        self._rng = np.random.default_rng(seed)

    def __call__(self, graph, group):
        rng = getattr(self, "_rng", None) or np.random.default_rng()
        return rng.random(group.width)


register_importance(
    "gamma", GammaImportance,
    summary="|gamma| of the BatchNormalizations (Network Slimming)")
register_importance(
    "l1", L1Importance,
    summary="L1 norm of each channel's filter in its producers (Li et al.)")
register_importance(
    "magnitude", MagnitudeImportance,
    summary="L2 norm of each unit's weights over all its group's kernels")
register_importance(
    "random", RandomImportance,
    summary="uniform random scores (seeded by `seed`)")
