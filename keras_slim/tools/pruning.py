"""`prune`: plan and slim in one call (a planner, then the core's surgery)."""

from keras_slim.core.surgery import slim_model
from keras_slim.planners.methods import METHODS, plan_for

__all__ = ["METHODS", "plan_for", "prune"]


def prune(model, method="global_gamma", fold=None, verify=False,
          return_plan=False, **kwargs):
    """Plan and slim in one call: a thinner copy of `model`.

    Args:
        model: a functional or Sequential `keras.Model`. Not modified.
        method: a registered method name (`keras_slim.METHODS`):
            "global_gamma" (Network Slimming), "zero_gamma" (channels whose
            gamma is exactly zero, as after ISTA), "l1_norm" (Li et al.),
            "uniform", or one added with `register_method`; or a planner
            function `method(model, **kwargs) -> PruningPlan`.
        fold: passed to `slim_model`: how the constant output of the cut
            channels (their BatchNormalization beta) is folded into the
            layers that read them: "bias" (default), "exact", or "none"
            (dropped, as Network Slimming's reference code does).
        verify: passed to `slim_model`: check the slim model against the
            original and raise `ValueError` naming the first layer that
            differs.
        return_plan: also return the `PruningPlan`.
        **kwargs: the arguments of the method's planner: `ratio`,
            `min_channels`, `round_to`, `max_ratio`, `skip`, `score` (an
            importance, by name or object) and `seed` for the ranking
            methods, `tol` for "zero_gamma".

    Returns:
        The slim `keras.Model` (uncompiled), or `(slim_model, plan)` when
        `return_plan` is True.

    Raises:
        ValueError: an unknown `method` or `fold`, bad arguments for the
            method, or `verify` found a layer whose output differs.
        TypeError: an argument the method does not take.

    Example:

    >>> slim = keras_slim.prune(model, "global_gamma", ratio=0.5, round_to=8)
    >>> slim.compile(...)  # then fine-tune
    """
    plan = plan_for(model, method, **kwargs)
    slim = slim_model(model, plan, fold=fold, verify=verify)
    return (slim, plan) if return_plan else slim
