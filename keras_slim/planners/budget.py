"""`plan_for_budget`: the plan of a pruning method that fits a budget.

Users want "half the MACs", "under 5 M parameters" or "under 8 ms", not "50%
of the channels". A ratio maps to MACs and latency very unevenly, so this
module searches the ratio instead of the user: a bisection on the ratio of a
ratio-taking planner (`global_gamma`, `l1_norm`, `uniform`), each candidate
counted from its group widths (`widths.WidthCounter`, no model built), or a
knapsack over channel importance per unit of cost (`latency_aware`,
`allocation.py`); `budget_search.py` runs the candidates. Latency comes
from a measured lookup table (`latency_table.py`) and the final plan is
timed end to end. The knapsack's `cost` can differ from the budget's kind:
`cost="latency"` at a MAC budget gives the fastest plan the importance
allows at that MAC count.

Keras and NumPy only; the LiteRT timing lives in `latency_table.py` and
imports TensorFlow lazily.
"""

import re

import numpy as np

from keras_slim.core.counting import macs_by_layer
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.widths import WidthCounter
from keras_slim.planners import methods
from keras_slim.planners.budget_result import (
    KINDS,  # noqa: F401  (re-exported)
    BudgetResult,
)
from keras_slim.planners.budget_search import Search

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
    given = value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            value = None
    if not _is_number(value) or not value > 0 or not np.isfinite(value):
        raise ValueError(
            f"Expected `{argument}` to be a fraction of the original in "
            f"(0, 1] or an absolute count > 1. Received: {argument}={given!r}"
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
                    rounds=3, verbose=False, cost=None, **method_kwargs):
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
        cost: for "latency_aware", what each step of the knapsack saves
            per unit of importance lost: "macs", "params" or "latency"
            (default: the budget's own, latency when there are several).
            `cost="latency"` with a `macs` or `params` budget spends the
            importance where the runtime's time falls most, so the plan
            at that budget is as fast as the importance allows (a table
            is built when none is given; with `confirm` the plan is timed
            once, `measured_ms`).
        **method_kwargs: the planner's other arguments (`min_channels`,
            `round_to`, `max_ratio`, `skip`; `score`, an importance by
            name or object, and `seed` for every built-in method).
            `round_to="auto"` takes the step size the latency table's
            scan suggests (`LatencyTable.steps`), so that
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
    _check_cost(cost, method)
    graph = ChannelGraph(model)
    _check_fixed_size(graph)
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
    elif cost == "latency":
        table, runtime = _table_and_runtime(model, table, runtime, confirm,
                                            verbose)
        dense["latency"] = table.dense_ms
    if table is not None:
        _bind(table, counter)
    if auto:
        method_kwargs["round_to"] = _auto_round_to(table)
    search = Search(model, graph, counter, method, method_kwargs,
                     dict(targets), table, cost)
    ratio, plan, figures, measured = _search_and_confirm(
        search, runtime if "latency" in targets and confirm else None,
        dense, targets, fraction, rounds)
    if cost == "latency" and "latency" not in targets and confirm:
        dense["latency"], measured = (float(t) for t in runtime.time(
            [model, _slim(model, plan)]))
        search.candidates[-1].update(measured_ms=measured,
                                     dense_measured_ms=dense["latency"])
    return BudgetResult(
        plan=plan, method=search.name, ratio=ratio, targets=targets,
        dense=dense,
        achieved=figures, measured_ms=measured,
        candidates=search.candidates,
        round_to=method_kwargs.get("round_to", 1),
    )


COSTS = ("macs", "params", "latency")


def _check_fixed_size(graph):
    """A budget is counted at the model's input size: refuse an unknown
    one as `count_macs` does, before a rule meets a `None`."""
    try:
        macs_by_layer(graph)
    except ValueError as error:
        raise ValueError(f"plan_for_budget counts the model at a fixed "
                         f"size: {error}") from None


def _check_cost(cost, method):
    if cost is None:
        return
    if cost not in COSTS:
        raise ValueError(
            f"Expected `cost` to be one of {', '.join(COSTS)} (or None for "
            f"the budget's own). Received: cost={cost!r}"
        )
    if callable(method) or not methods.method_for(method).budget_only:
        raise ValueError(
            "`cost` chooses what the latency-aware knapsack saves; "
            f"method {getattr(method, '__name__', method)!r} thresholds a "
            "ratio instead. Pass method=\"latency_aware\" with `cost`."
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
