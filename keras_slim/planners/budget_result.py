"""`BudgetResult`: the plan a budget search found, with how far under budget
it lands, counted and measured."""

import dataclasses

__all__ = ["KINDS", "BudgetResult"]

KINDS = ("macs", "params", "latency")


@dataclasses.dataclass
class BudgetResult:
    """The plan `plan_for_budget` found and how far under budget it lands.

    Attributes:
        plan: the `PruningPlan`.
        method: the pruning method.
        ratio: the ratio the search settled on (`None` for "latency_aware").
        targets: dict kind ("macs", "params", "latency" in ms) -> the
            absolute budget.
        dense: dict kind -> the unpruned model's figure (latency measured;
            with a fractional latency budget, in the final confirming run).
        achieved: dict kind -> the plan's figure (MACs and parameters
            counted exactly; latency predicted by the table).
        measured_ms: the slim model's latency timed end to end, interleaved
            with the dense model (`None` without a latency budget or with
            `confirm=False`). A fractional latency budget is a fraction of
            the dense latency measured in that same run.
        candidates: the candidates tried, dicts with "ratio", "macs",
            "params" and, with a table, "predicted_ms"; those timed end to
            end also have "measured_ms".
        round_to: the `round_to` the plan was made with (the latency
            table's suggestion for `round_to="auto"`).
    """

    plan: object
    method: str
    ratio: object
    targets: dict
    dense: dict
    achieved: dict
    measured_ms: object = None
    candidates: list = dataclasses.field(default_factory=list)
    round_to: int = 1

    def under(self, kind):
        """By what share of the budget the plan lands under it (negative:
        over). Latency uses the measured figure when there is one."""
        value = self.achieved[kind]
        if kind == "latency" and self.measured_ms is not None:
            value = self.measured_ms
        return 1.0 - value / self.targets[kind]

    def to_dict(self):
        """JSON-serializable form (the plan as `PruningPlan.to_dict()`)."""
        data = dataclasses.asdict(self)
        data["plan"] = self.plan.to_dict()
        return data

    def rows(self):
        """(figure, dense, budget, achieved, measured, under) rows."""
        rows = []
        for kind in KINDS:
            if kind not in self.targets:
                continue
            measured = self.measured_ms if kind == "latency" else None
            rows.append((kind, self.dense[kind], self.targets[kind],
                         self.achieved[kind], measured, self.under(kind)))
        return rows

    def summary(self):
        """The table of budgets, predicted and measured figures."""
        lines = [f"{'':8} {'dense':>12} {'budget':>12} {'plan':>12} "
                 f"{'measured':>12} {'under':>7}"]
        for kind, dense, target, value, measured, under in self.rows():
            fmt = _format_ms if kind == "latency" else _format_count
            lines.append(
                f"{kind:8} {fmt(dense):>12} {fmt(target):>12} "
                f"{fmt(value):>12} "
                f"{fmt(measured) if measured is not None else '-':>12} "
                f"{under:>7.1%}"
            )
        return "\n".join(lines)


def _format_count(value):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3f} {unit}"
    return f"{value:.0f}"


def _format_ms(value):
    """Two decimals from 1 ms up; three significant figures below, so that
    a budget of microseconds does not print as 0.00 ms."""
    if abs(value) >= 1 or value == 0:
        return f"{value:.2f} ms"
    return f"{value:.3g} ms"


# -- reading budgets ----------------------------------------------------------
