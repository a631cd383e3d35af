"""`plan_for_budget`: the plan of a pruning method that fits a budget.

Users want "half the MACs", "under 5 M parameters" or "under 8 ms", not "50%
of the channels". A ratio maps to MACs and latency very unevenly, so this
module searches the ratio instead of the user: a bisection on the ratio of a
ratio-taking planner (`global_gamma`, `l1_norm`, `uniform`), each candidate
counted from its group widths (`widths.WidthCounter`, no model built), or a
knapsack over channel importance per unit of cost (`latency_aware`,
`allocation.py`). Latency comes from a measured lookup table
(`latency_table.py`) and the final plan is timed end to end.

Keras and NumPy only; the LiteRT timing lives in `latency_table.py` and
imports TensorFlow lazily.
"""

import re

import numpy as np

from keras_slim.core.graph import ChannelGraph
from keras_slim.core.widths import WidthCounter, plan_widths
from keras_slim.planners import allocation, methods
from keras_slim.planners.budget_result import (
    KINDS,  # noqa: F401  (re-exported)
    BudgetResult,
    _format_count,
    _format_ms,
)

__all__ = [
    "BudgetResult",
    "check_method",
    "parse_count",
    "parse_latency",
    "plan_for_budget",
]

_UNITS = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3}


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, bool)


def parse_count(value, dense, argument):
    """An absolute count from a fraction in (0, 1] or a count > 1."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            value = None
    if not _is_number(value) or not value > 0 or not np.isfinite(value):
        raise ValueError(
            f"Expected `{argument}` to be a fraction of the original in "
            f"(0, 1] or an absolute count > 1. Received: {argument}={value!r}"
        )
    return float(value) * dense if value <= 1 else float(value)


def parse_latency(value):
    """(milliseconds, None) for "8ms"/"0.01s"/"800us", (None, fraction) for
    a number in (0, 1]."""
    if _is_number(value):
        if 0 < value <= 1:
            return None, float(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)\s*"
                             r"(ms|s|us|µs)\s*", value, flags=re.IGNORECASE)
        if match and float(match.group(1)) > 0:
            return float(match.group(1)) * _UNITS[match.group(2).lower()], None
    raise ValueError(
        "Expected `latency` to be a fraction of the dense model's measured "
        "latency in (0, 1] or a time with its unit, such as \"8ms\", "
        f"\"0.008s\" or \"800us\". Received: latency={value!r}"
    )


def check_method(method, kwargs):
    """Raise unless `method` is a planner function or the name of a
    registered method `plan_for_budget` can drive, and `kwargs` holds no
    `ratio`."""
    names = methods.budget_methods()
    if not callable(method) and method not in names:
        raise ValueError(
            f"Expected `method` to be one of {', '.join(names)} (the "
            "registered methods with a ratio to search, and the "
            "budget-only ones), or a planner `method(model, ratio, "
            f"**kwargs) -> PruningPlan`. Received: method={method!r}"
        )
    if "ratio" in kwargs:
        raise TypeError(
            "plan_for_budget searches the ratio itself; pass a budget "
            "(`macs`, `params` or `latency`), not `ratio`."
        )


# -- the search ---------------------------------------------------------------


def plan_for_budget(model, method="global_gamma", *, macs=None, params=None,
                    latency=None, table=None, runtime=None, confirm=True,
                    rounds=3, verbose=False, **method_kwargs):
    """The plan of `method` that meets every budget as tightly as it can.

    For a ratio-taking method the smallest ratio whose plan meets every
    budget is found by bisection (the methods prune more as the ratio
    grows); `min_channels`, `round_to`, `max_ratio` and `skip` limit how
    tight it can land. "latency_aware" removes channels greedily by least
    importance per unit of cost (`allocation.plan_by_cost`).

    Args:
        model: a functional or Sequential `keras.Model` with a fixed input
            size. Not modified.
        method: "global_gamma", "l1_norm", "uniform" or "latency_aware",
            or a planner of your own, `method(model, ratio, **kwargs)`
            returning a `PruningPlan` that prunes more as `ratio` grows
            (its ratio is bisected like the built-in ones').
        macs: multiply-accumulates (`count_macs` convention): a fraction of
            the original in (0, 1] (`0.5`) or an absolute count (`3e8`).
        params: parameters, likewise (`5_000_000`).
        latency: a time with its unit (`"8ms"`) or a fraction of the dense
            model's measured latency (`0.6`).
        table: a `LatencyTable` for this model (built when `latency` is
            given and `table` is not; reusing a saved one skips the timing).
        runtime: the runtime that times models when a table is built and
            the final plan confirmed (default: `LiteRTRuntime()`).
        confirm: time the final slim model end to end. When the measured
            latency misses the budget (or lands more than 10% under), the
            table's prediction is rescaled towards measured / predicted (by
            at most a third a round) and the search runs again, at most
            `rounds` timings in all.
        rounds: see `confirm`.
        verbose: progress while timing.
        **method_kwargs: the planner's other arguments (`min_channels`,
            `round_to`, `max_ratio`, `skip`; `score`, `seed` for "uniform"
            and "latency_aware"). `round_to="auto"` takes the step size the
            latency table's scan suggests (`LatencyTable.steps`), so that
            every width lands on the fast side of the runtime's steps.

    Returns:
        A `BudgetResult`: the plan, the figures it reaches and by how much
        it lands under each budget.

    Raises:
        ValueError: no budget, an unknown method, a malformed budget, or a
            budget the method cannot reach (naming the smallest reachable
            figure).
        TypeError: `ratio` passed, or an argument the method does not take.
        ImportError: a latency budget and no runtime installed.

    Example:

    >>> result = keras_slim.plan_for_budget(model, macs=0.5, round_to=8)
    >>> slim = keras_slim.slim_model(model, result.plan)
    """
    check_method(method, method_kwargs)
    method_kwargs = dict(method_kwargs)
    if macs is None and params is None and latency is None:
        raise ValueError(
            "plan_for_budget needs a budget: `macs`, `params` or `latency`."
        )
    auto = method_kwargs.get("round_to") == "auto"
    if auto and latency is None and table is None:
        raise ValueError(
            '`round_to="auto"` takes the step size from a latency table\'s '
            "scan of the runtime: give a `latency` budget or a `table`, or "
            "pass `round_to` as a number."
        )
    graph = ChannelGraph(model)
    counter = WidthCounter(graph)
    dense = {"macs": counter.dense_macs, "params": counter.dense_params}
    targets, fraction = {}, None
    if macs is not None:
        targets["macs"] = parse_count(macs, dense["macs"], "macs")
    if params is not None:
        targets["params"] = parse_count(params, dense["params"], "params")
    if latency is not None:
        absolute, fraction = parse_latency(latency)
        table, runtime = _table_and_runtime(model, table, runtime, confirm,
                                            verbose)
        dense["latency"] = table.dense_ms
        targets["latency"] = (absolute if absolute is not None
                              else fraction * table.dense_ms)
    if table is not None:
        _bind(table, counter)
    if auto:
        method_kwargs["round_to"] = _auto_round_to(table)
    search = _Search(model, graph, counter, method, method_kwargs,
                     dict(targets), table)
    ratio, plan, figures, measured = _search_and_confirm(
        search, runtime if "latency" in targets and confirm else None,
        dense, targets, fraction, rounds)
    return BudgetResult(
        plan=plan, method=search.name, ratio=ratio, targets=targets,
        dense=dense,
        achieved=figures, measured_ms=measured,
        candidates=search.candidates,
        round_to=method_kwargs.get("round_to", 1),
    )


def _table_and_runtime(model, table, runtime, confirm, verbose):
    """The latency table (built on `runtime` when not given) and the runtime
    that confirms the plan (made again from the table's info if needed)."""
    from keras_slim.planners import latency_table as table_lib

    if table is None:
        runtime = runtime or table_lib.LiteRTRuntime()
        table = table_lib.build_latency_table(model, runtime, verbose=verbose)
    elif runtime is None and confirm:
        runtime = table_lib.runtime_from_info(table.runtime)
    return table, runtime


def _bind(table, counter):
    table.bind(counter)
    if not table.layers_ms > 0:
        raise ValueError(
            "Every layer of the latency table timed at or below the cost "
            f"of an empty call on {table.runtime.get('name')}, so it "
            "predicts 0 ms for any plan: the model's layers are too "
            "small for the runtime to tell their widths apart. Time a "
            "larger `batch`, or give the budget in `macs`."
        )


def _auto_round_to(table):
    if table.steps is None:
        raise ValueError(
            '`round_to="auto"` needs a latency table with a width scan; '
            "this one has none (built with scan=False or by an older "
            "keras_slim). Build it again, or pass `round_to` as a number."
        )
    return int(table.steps["round_to"])


def _search_and_confirm(search, runtime, dense, targets, fraction, rounds):
    """`(ratio, plan, figures, measured_ms)` of the search; with a `runtime`,
    the plan is timed against the dense model and the table's prediction
    corrected until the measured latency lands in [90%, 100%] of the budget
    or `rounds` timings are spent. Updates `dense` and `targets` in place
    for a fractional latency budget (judged against this run's dense)."""
    scale, measured = 1.0, None
    table, model = search.table, search.model
    for round_ in range(max(1, rounds)):
        ratio, plan, figures = search.run(scale, closest=round_ > 0)
        figures = dict(figures)
        if table is not None:
            figures["latency"] /= scale  # the table's own prediction
        if runtime is None:
            break
        # The slim model is timed with the dense one, interleaved, so that a
        # fractional budget is judged against the dense latency of this run.
        dense_now, measured = (float(t) for t in runtime.time(
            [model, _slim(model, plan)]))
        search.candidates[-1].update(measured_ms=measured,
                                     dense_measured_ms=dense_now)
        if fraction is not None:
            dense["latency"] = dense_now
            targets["latency"] = fraction * dense_now
        goal = targets["latency"]
        if 0.9 * goal <= measured <= goal:
            break
        # Correct the table by what it missed, in its own terms, moving the
        # correction by at most a third a round: one noisy timing must not
        # swing the search to the dense model or to the smallest one.
        predicted = figures["latency"]
        if fraction is not None:
            correction = (measured / dense_now) / max(
                predicted / table.dense_ms, 1e-9)
        else:
            correction = measured / max(predicted, 1e-9)
        scale *= float(np.clip(correction / scale, 0.75, 4 / 3))
    return ratio, plan, figures, measured


def _slim(model, plan):
    from keras_slim.core.surgery import slim_model
    return slim_model(model, plan)


class _Search:
    """Candidates of one method, counted and compared with the budgets."""

    def __init__(self, model, graph, counter, method, kwargs, targets, table):
        self.model, self.graph, self.counter = model, graph, counter
        self.method, self.kwargs = method, dict(kwargs)
        self.name = getattr(method, "__name__", repr(method)) \
            if callable(method) else method
        self.targets, self.table = targets, table
        self.candidates = []
        self.scale, self.closest = 1.0, False

    def figures(self, widths):
        out = {"macs": self.counter.macs(widths),
               "params": self.counter.params(widths)}
        if self.table is not None:
            out["latency"] = self.table.predict(widths) * self.scale
        return out

    def fits(self, figures):
        return all(figures[k] <= self.targets[k] for k in self.targets)

    def record(self, ratio, figures):
        entry = {"ratio": ratio, "macs": figures["macs"],
                 "params": figures["params"]}
        if "latency" in figures:
            entry["predicted_ms"] = figures["latency"] / self.scale
        self.candidates.append(entry)

    def run(self, scale, closest=False):
        """The plan for the budgets with the table scaled by `scale`; with
        `closest`, the smallest plan instead of an error when none fits (a
        measured correction can push the prediction past what the method
        reaches, while the runtime may still meet the budget)."""
        self.scale, self.closest = scale, closest
        if not callable(self.method) and \
                methods.method_for(self.method).budget_only:
            ratio, plan, figures = self._allocate()
        else:
            ratio, plan, figures = self._bisect()
        self.record(ratio, figures)
        self.candidates[-1]["chosen"] = True
        return ratio, plan, figures

    def _plan(self, ratio):
        if callable(self.method):
            return self.method(self.model, ratio=ratio, **self.kwargs)
        return methods.plan_for(self.model, self.method, ratio=ratio,
                                **self.kwargs)

    def _bisect(self):
        top = self.kwargs.get("max_ratio")
        top = 1.0 - 1e-9 if top is None else float(top)
        plan = self._plan(top)
        figures = self.figures(plan_widths(plan))
        self.record(top, figures)
        if not self.fits(figures):
            if self.closest:
                return top, plan, figures
            raise _unreachable(self.name, self.targets, figures,
                               self.scale)
        low, high, best = 0.0, top, (top, plan, figures)
        dense_plan = self._plan(0.0)
        dense_figures = self.figures(plan_widths(dense_plan))
        if self.fits(dense_figures):
            return 0.0, dense_plan, dense_figures
        # A step of the ratio finer than a quarter channel changes no plan.
        channels = sum(g.width for g in self.graph.groups if g.prunable)
        for _ in range(60):
            if high - low < 0.25 / max(channels, 1):
                break
            middle = (low + high) / 2
            plan = self._plan(middle)
            figures = self.figures(plan_widths(plan))
            self.record(middle, figures)
            if self.fits(figures):
                high, best = middle, (middle, plan, figures)
            else:
                low = middle
        return best

    def _allocate(self):
        kind = "latency" if "latency" in self.targets else (
            "macs" if "macs" in self.targets else "params")
        if kind == "latency":
            cost = allocation.ScaledCost(self.table, self.scale)
        elif kind == "macs":
            cost = allocation.MacCost(self.counter)
        else:
            cost = allocation.ParamCost(self.counter)
        target = self.targets[kind]

        def done(widths, total):
            return total <= target and self.fits(self.figures(widths))

        entry = methods.method_for(self.method)
        try:
            plan, trace = entry.planner(self.graph, cost, done, **self.kwargs)
        except TypeError as error:
            taken = ", ".join(f"`{option}`" for option in entry.options
                              if option != "trace_every")
            raise TypeError(
                f"Pruning method {self.name!r} takes {taken}: {error}"
            ) from None
        for widths in trace:
            self.record(None, self.figures(widths))
        figures = self.figures(plan_widths(plan))
        if not self.fits(figures) and not self.closest:
            raise _unreachable(self.name, self.targets, figures,
                               self.scale)
        return None, plan, figures


def _unreachable(method, targets, figures, scale):
    missed = []
    for kind, target in targets.items():
        if figures[kind] > target:
            fmt = _format_ms if kind == "latency" else _format_count
            missed.append(
                f"{kind} budget {fmt(target)}: the smallest {method} reaches "
                f"is {fmt(figures[kind])}"
            )
    return ValueError(
        "The budget cannot be reached with these constraints: "
        + "; ".join(missed)
        + ". Relax the budget, or lower `min_channels`, `round_to` or "
        "`skip`, or raise `max_ratio`."
    )
