"""`prune`: plan and slim in one call."""

import inspect

from keras_slim.planners import criteria
from keras_slim.planners import selection
from keras_slim.core.surgery import slim_model

PLANNERS = {
    "global_gamma": selection.plan_global_gamma,
    "zero_gamma": criteria.plan_zero_gamma,
    "l1_norm": selection.plan_l1_norm,
    "uniform": selection.plan_uniform,
}


def plan_for(model, method, **kwargs):
    """The plan of pruning method `method` for `model`.

    Args:
        model: a functional or Sequential `keras.Model`.
        method: one of "global_gamma" (`plan_global_gamma`), "zero_gamma"
            (`plan_zero_gamma`), "l1_norm" (`plan_l1_norm`), "uniform"
            (`plan_uniform`).
        **kwargs: the planner's arguments (`ratio`, `min_channels`, ...).

    Returns:
        A `PruningPlan`.

    Raises:
        ValueError: an unknown `method`.
        TypeError: an argument the method does not take, or a required one
            missing (naming the method and the arguments it takes).
    """
    planner = PLANNERS.get(method)
    if planner is None:
        raise ValueError(
            f"Expected `method` to be one of {', '.join(sorted(PLANNERS))}. "
            f"Received: method={method!r}"
        )
    signature = inspect.signature(planner)
    try:
        signature.bind(model, **kwargs)
    except TypeError as error:
        accepted = ", ".join(f"`{p}`" for p in list(signature.parameters)[1:])
        raise TypeError(
            f"Pruning method {method!r} ({planner.__name__}) takes "
            f"{accepted}: {error}"
        ) from None
    return planner(model, **kwargs)


def prune(model, method="global_gamma", fold_constants=True,
          return_plan=False, **kwargs):
    """Plan and slim in one call: a thinner copy of `model`.

    Args:
        model: a functional or Sequential `keras.Model`. Not modified.
        method: "global_gamma" (Network Slimming), "zero_gamma" (channels
            whose gamma is exactly zero, as after ISTA), "l1_norm" (Li et
            al.) or "uniform".
        fold_constants: passed to `slim_model`: fold the constant output of
            the cut channels (their BatchNormalization beta) into the layers
            that read them (default), or drop them as Network Slimming's
            reference code does (`False`).
        return_plan: also return the `PruningPlan`.
        **kwargs: the arguments of the method's planner: `ratio`,
            `min_channels`, `round_to`, `max_ratio`, `skip`, and `score` and
            `seed` for "uniform", `tol` for "zero_gamma".

    Returns:
        The slim `keras.Model` (uncompiled), or `(slim_model, plan)` when
        `return_plan` is True.

    Raises:
        ValueError: an unknown `method`, or bad arguments for it.
        TypeError: an argument the method does not take.

    Example:

    >>> slim = keras_slim.prune(model, "global_gamma", ratio=0.5, round_to=8)
    >>> slim.compile(...)  # then fine-tune
    """
    plan = plan_for(model, method, **kwargs)
    slim = slim_model(model, plan, fold_constants=fold_constants)
    return (slim, plan) if return_plan else slim
