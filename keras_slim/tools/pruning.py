"""`prune`: plan and slim in one call (a planner, then the core's surgery)."""

from keras_slim.core.surgery import slim_model
from keras_slim.planners.methods import METHODS, plan_for

__all__ = ["METHODS", "plan_for", "prune"]


def prune(model, method="global_gamma", fold_constants=True,
          return_plan=False, **kwargs):
    """Plan and slim in one call: a thinner copy of `model`.

    Args:
        model: a functional or Sequential `keras.Model`. Not modified.
        method: a registered method name (`keras_slim.METHODS`):
            "global_gamma" (Network Slimming), "zero_gamma" (channels whose
            gamma is exactly zero, as after ISTA), "l1_norm" (Li et al.),
            "uniform", or one added with `register_method`; or a planner
            function `method(model, **kwargs) -> PruningPlan`.
        fold_constants: passed to `slim_model`: fold the constant output of
            the cut channels (their BatchNormalization beta) into the layers
            that read them (default), or drop them as Network Slimming's
            reference code does (`False`).
        return_plan: also return the `PruningPlan`.
        **kwargs: the arguments of the method's planner: `ratio`,
            `min_channels`, `round_to`, `max_ratio`, `skip`, `score` (an
            importance, by name or object) and `seed` for the ranking
            methods, `tol` for "zero_gamma".

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
