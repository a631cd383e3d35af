"""The importance protocol and its registry.

An importance says how much each unit of a channel group is worth keeping
(a channel today; an attention head or an MLP unit where a group's units
are those): `importance(graph, group) -> scores`, one finite number per
unit (higher is kept first), or `None` to keep the group whole. `graph` is
the model's `ChannelGraph` (`graph.layer(name)` is a layer;
`group.producers`, `group.consumers`, `group.batchnorms` and
`group.members` name the layers the group's units pass through).

Every planner that ranks units takes one as `score=`: by its registered
name ("gamma", "l1", "magnitude", "random", or one added with
`register_importance`), as an `Importance` object, or as a plain function
of `(graph, group)`. So do `prune`, `plan_for_budget` and
`keras-slim prune --score`. Keras and NumPy only.
"""

import copy
import inspect

__all__ = [
    "FunctionImportance",
    "IMPORTANCES",
    "Importance",
    "get_importance",
    "importance_name",
    "register_importance",
]

IMPORTANCES = {}


class Importance:
    """Base of the importances: `importance(graph, group) -> scores`.

    A subclass writes `__call__`. One whose units have several copies in a
    group (a channel scaled by several BatchNormalizations of a residual
    stream, written by several producers, read by several kernels) sets
    `reduction`, its default way of making one score of them ("max",
    "mean", "sum" or a function, `criteria.reduce_scores`); a planner's
    `reduction=` then overrides it. One without copies leaves it `None`,
    and a planner refuses `reduction=` for it.

    Attributes:
        name: the name it is registered under (`None` until then).
        reduction: the default reduction over a unit's copies, or `None`.
        summary: one line for the CLI's help and the docs.
    """

    name = None
    reduction = None
    summary = ""

    def __call__(self, graph, group):
        raise NotImplementedError(
            f"{type(self).__name__} must define "
            "`__call__(self, graph, group)` returning one score per unit."
        )

    def setup(self, graph, seed=None):
        """Called once on a fresh copy before it scores the groups of
        `graph` (caches, a seeded generator); by default nothing."""

    def unscored(self):
        """Why a group got no score, as a sentence for messages."""
        return f"the importance `{self.label}` returned None for every group."

    @property
    def label(self):
        return self.name or type(self).__name__

    def bind(self, graph, reduction=None, seed=None):
        """A copy of this importance, `reduction` set (when given) and
        `setup` run, that scores the groups of `graph` in one pass."""
        if reduction is not None and self.reduction is None:
            reducing = ", ".join(
                f"'{name}'" for name, imp in sorted(IMPORTANCES.items())
                if imp.reduction is not None)
            raise ValueError(
                "Conflicting arguments: `reduction` applies to the "
                f"importances whose units have copies ({reducing}); "
                f"the importance `{self.label}` reduces its own."
            )
        bound = copy.copy(self)
        if reduction is not None:
            bound.reduction = reduction
        bound.setup(graph, seed)
        return bound

    def get_config(self):
        """What rebuilds it: its registered name (and reduction)."""
        return {"name": self.name, "reduction": self.reduction}

    def __repr__(self):
        return f"<Importance {self.label!r}>"


class FunctionImportance(Importance):
    """A plain function `function(graph, group) -> scores or None`."""

    def __init__(self, function, name=None):
        self.function = function
        self.name = name
        self.summary = (inspect.getdoc(function) or "").split("\n")[0]

    @property
    def label(self):
        if self.name:
            return self.name
        return getattr(self.function, "__name__", repr(self.function))

    def __call__(self, graph, group):
        return self.function(graph, group)


def register_importance(name, importance=None, *, summary=None):
    """File `importance` under `name`; with `importance` omitted, a
    decorator.

    Registered, an importance is reachable by name from every planner's
    `score=`, from `prune`, `plan_for_budget` and `keras-slim prune
    --score`. A later registration of the same name replaces the earlier.

    Args:
        name: the importance's name.
        importance: an `Importance` (or a subclass, made with no
            arguments), or a function `importance(graph, group) -> scores
            or None`.
        summary: one line for the CLI help (default: the importance's
            `summary`, or the first line of its docstring).

    Returns:
        `importance` as given (so that the decorator leaves it as it is).

    Example:

    >>> @keras_slim.register_importance("last")
    ... def last_channels(graph, group):
    ...     return np.arange(group.width, dtype="float64")
    """
    if importance is None:
        return lambda given: register_importance(name, given, summary=summary)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            "Expected `name` to be an importance name such as "
            f"\"my_importance\". Received: name={name!r}"
        )
    entry = _as_importance(importance, "importance")
    entry = copy.copy(entry)
    entry.name = name
    if summary is not None:
        entry.summary = summary
    elif not entry.summary:
        entry.summary = (inspect.getdoc(type(entry)) or "").split("\n")[0]
    IMPORTANCES[name] = entry
    return importance


def _as_importance(value, argument):
    if isinstance(value, type) and issubclass(value, Importance):
        return value()
    if isinstance(value, Importance):
        return value
    if callable(value) and not isinstance(value, type):
        return FunctionImportance(value)
    raise TypeError(
        f"Expected `{argument}` to be an Importance or a function "
        f"`{argument}(graph, group)` returning one score per unit. "
        f"Received: {argument}={value!r}"
    )


def get_importance(score, argument="score"):
    """The `Importance` that `score` names or is.

    Args:
        score: a registered name (`IMPORTANCES`), an `Importance`, or a
            function `score(graph, group) -> scores or None`.
        argument: the argument's name in messages.

    Raises:
        ValueError: an unknown name or a value that is none of these,
            listing the registered names.
    """
    if isinstance(score, str):
        found = IMPORTANCES.get(score)
        if found is not None:
            return found
    elif isinstance(score, Importance) or (
            callable(score) and not isinstance(score, type)):
        return _as_importance(score, argument)
    raise ValueError(
        f"Expected `{argument}` to be one of "
        f"{', '.join(sorted(IMPORTANCES))} (the registered importances), "
        f"an Importance, or a function `{argument}(graph, group)` "
        f"returning one score per unit. Received: {argument}={score!r}"
    )


def importance_name(score):
    """The registered name of `score` (a name, or an importance filed
    under one), or `None` for an unregistered importance: what a record or
    a command line writes."""
    if isinstance(score, str):
        return score if score in IMPORTANCES else None
    for name, entry in IMPORTANCES.items():
        if entry is score or (isinstance(score, Importance)
                              and score.name == name
                              and type(score) is type(entry)):
            return name
        if isinstance(entry, FunctionImportance) and \
                entry.function is score:
            return name
    return None
