"""`plan_for`: the planner of each pruning method, by name."""

import inspect

from keras_slim.planners import criteria
from keras_slim.planners import selection

__all__ = ["PLANNERS", "plan_for"]

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
