"""The registry of pruning methods: one entry per name, read by `prune`,
`plan_for_budget`, the CLI's `--method` and its help.

A method is a planner, `planner(model, ratio, **options) -> PruningPlan`
(or `planner(model, **options)` for a method without a ratio), filed under
a name with `register_method`. Its options are the planner's own keyword
arguments, read from its signature. The one budget-only method,
"latency_aware", is filed with `budget_only=True`: its planner is
`allocation.plan_by_cost`, which `plan_for_budget` drives with a cost.
"""

import dataclasses
import inspect

from keras_slim.planners import allocation, criteria, dead, selection

__all__ = [
    "METHODS",
    "Method",
    "budget_methods",
    "method_for",
    "plan_for",
    "register_method",
]

METHODS = {}


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered pruning method.

    Attributes:
        name: the name `prune`, `plan_for_budget` and `--method` take.
        planner: the function that returns the `PruningPlan`.
        takes_ratio: whether the planner takes `ratio` (its second
            argument), so that `plan_for_budget` can bisect it.
        budget_only: planned by `plan_for_budget` only (no ratio to give).
        summary: one line for the CLI's help and the docs.
    """

    name: str
    planner: object
    takes_ratio: bool = True
    budget_only: bool = False
    summary: str = ""

    @property
    def options(self):
        """The planner's keyword arguments besides the model (and ratio)."""
        skip = {"model", "ratio", "graph", "cost", "done"}
        return tuple(p for p in inspect.signature(self.planner).parameters
                     if p not in skip)


def register_method(name, planner=None, *, takes_ratio=True,
                    budget_only=False, summary=None):
    """File `planner` under `name`; with `planner` omitted, a decorator.

    Registered, a method is reachable by name from `prune`,
    `plan_for_budget` (when it takes a ratio) and `keras-slim prune
    --method`. A later registration of the same name replaces the earlier.

    Args:
        name: the method's name.
        planner: `planner(model, ratio, **options) -> PruningPlan`, pruning
            more as `ratio` grows (or `planner(model, **options)` with
            `takes_ratio=False`).
        takes_ratio: whether the planner takes `ratio`.
        budget_only: for a planner `plan_for_budget` drives itself.
        summary: one line for the CLI help (default: the first line of the
            planner's docstring).

    Returns:
        The planner (so that the decorator leaves the function as it is).

    Example:

    >>> @keras_slim.register_method("last_channels")
    ... def plan_last(model, ratio, **options):
    ...     return keras_slim.plan_uniform(model, ratio, score=my_scores,
    ...                                    **options)
    """
    if planner is None:
        return lambda function: register_method(
            name, function, takes_ratio=takes_ratio,
            budget_only=budget_only, summary=summary)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            "Expected `name` to be a method name such as \"my_method\". "
            f"Received: name={name!r}"
        )
    if not callable(planner):
        raise TypeError(
            f"Expected `planner` to be a function. Received: planner={planner!r}"
        )
    if summary is None:
        summary = (inspect.getdoc(planner) or "").split("\n")[0]
    METHODS[name] = Method(name, planner, takes_ratio, budget_only, summary)
    return planner


def method_for(name):
    """The registered `Method` called `name`.

    Raises:
        ValueError: an unknown `name`, listing the registered ones.
    """
    method = METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        raise ValueError(
            f"Expected `method` to be one of {', '.join(sorted(METHODS))}. "
            f"Received: method={name!r}"
        )
    return method


def budget_methods():
    """The names `plan_for_budget` takes: ratio methods and budget-only."""
    return tuple(name for name, method in METHODS.items()
                 if method.takes_ratio or method.budget_only)


def plan_for(model, method, **kwargs):
    """The plan of the registered method `method` for `model`.

    Args:
        model: a functional or Sequential `keras.Model`.
        method: a registered name (`METHODS`): "global_gamma"
            (`plan_global_gamma`), "zero_gamma" (`plan_zero_gamma`),
            "l1_norm" (`plan_l1_norm`), "uniform" (`plan_uniform`), or one
            added with `register_method`; or a planner function itself,
            `method(model, **kwargs) -> PruningPlan`, as `plan_for_budget`
            takes.
        **kwargs: the planner's arguments (`ratio`, `min_channels`, ...).

    Returns:
        A `PruningPlan`.

    Raises:
        ValueError: an unknown or budget-only `method`.
        TypeError: an argument the method does not take, or a required one
            missing (naming the method and the arguments it takes).
    """
    if callable(method):
        entry = Method(getattr(method, "__name__", repr(method)), method)
    else:
        entry = method_for(method)
    if entry.budget_only:
        raise ValueError(
            f"Pruning method {method!r} plans for a budget only: call "
            "`plan_for_budget` (macs=, params= or latency=)."
        )
    signature = inspect.signature(entry.planner)
    try:
        signature.bind(model, **kwargs)
    except TypeError as error:
        accepted = ", ".join(f"`{p}`" for p in list(signature.parameters)[1:])
        raise TypeError(
            f"Pruning method {entry.name!r} ({entry.planner.__name__}) takes "
            f"{accepted}: {error}"
        ) from None
    return entry.planner(model, **kwargs)


register_method("global_gamma", selection.plan_global_gamma,
                summary="Network Slimming: smallest |gamma| network-wide")
register_method("zero_gamma", criteria.plan_zero_gamma, takes_ratio=False,
                summary="the channels whose gamma is zero (after ISTA)")
register_method("dead", dead.plan_dead, takes_ratio=False,
                summary="the channels, units and heads that contribute "
                "exactly zero")
register_method("l1_norm", selection.plan_l1_norm,
                summary="smallest filter L1 norm, the same share a layer")
register_method("uniform", selection.plan_uniform,
                summary="the same share of every layer")
register_method("latency_aware", allocation.plan_by_cost, takes_ratio=False,
                budget_only=True,
                summary="knapsack over importance per unit of cost "
                "(with a budget)")
