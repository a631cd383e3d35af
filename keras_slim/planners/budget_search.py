"""The search behind `plan_for_budget`: candidates of one method, counted
(and predicted by a latency table) against the budgets.

A ratio-taking method is bisected on its ratio; a budget-only one (the
latency-aware knapsack) runs once with a cost and a stopping rule. Keras
and NumPy only.
"""

import numpy as np

from keras_slim.core.widths import plan_widths
from keras_slim.planners import allocation, methods
from keras_slim.planners.budget_result import _format_count, _format_ms

__all__ = ["Search"]


class Search:
    """Candidates of one method, counted and compared with the budgets."""

    def __init__(self, model, graph, counter, method, kwargs, targets, table,
                 cost=None):
        self.model, self.graph, self.counter = model, graph, counter
        self.cost = cost
        self.method, self.kwargs = method, dict(kwargs)
        self.name = getattr(method, "__name__", repr(method)) \
            if callable(method) else method
        self.targets, self.table = targets, table
        self.candidates = []
        self.scale, self.closest = 1.0, False

    def figures(self, widths, kinds=None):
        counts = {"macs": self.counter.macs, "params": self.counter.params}
        if self.table is not None:
            counts["latency"] = lambda w: self.table.predict(w) * self.scale
        return {k: f(widths) for k, f in counts.items()
                if kinds is None or k in kinds}

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
        kind = self.cost or ("latency" if "latency" in self.targets else (
            "macs" if "macs" in self.targets else "params"))
        if kind == "latency":
            cost = allocation.ScaledCost(self.table, self.scale)
            if "latency" not in self.targets:
                # A MAC or parameter budget spent on latency: where the
                # table is flat, MACs (a thousandth of their share of the
                # dense time) break the tie, so the budget is reached.
                cost = allocation.TieBrokenCost(
                    cost, allocation.MacCost(self.counter),
                    1e-3 * cost.total({}) / max(self.counter.macs({}), 1),
                    len(self.counter.counted_calls))
        elif kind == "macs":
            cost = allocation.MacCost(self.counter)
        else:
            cost = allocation.ParamCost(self.counter)
        target = self.targets.get(kind, np.inf)

        def done(widths, total):
            return total <= target and self.fits(
                self.figures(widths, self.targets))

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
