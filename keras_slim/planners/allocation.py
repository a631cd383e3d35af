"""Cost-aware allocation: which groups give up channels under a budget.

A global threshold on |gamma| removes the least important channels wherever
they are, whatever they cost. Under a latency budget that is the wrong
question: a channel of a wide 1x1 convolution at low resolution costs far
less time than one of a 3x3 convolution at high resolution. Following
latency-saliency pruning (HALP, Shen et al. 2022), `plan_by_cost` treats the
allocation as a knapsack: it removes, step by step, the channels whose
importance per unit of saved cost is smallest, the cost of a step read from
a latency table (or counted MACs or parameters) at the current widths of
the neighbouring groups. It is the greedy solution of that knapsack, with a
lookahead of a few steps so that a group can cross a flat stretch of the
latency curve.

Keras and NumPy only.
"""

import math

import numpy as np

from keras_slim.planners.scores import score_groups
from keras_slim.planners.selection import (
    build_plan,
    candidate_groups,
    check_constraints,
)

__all__ = [
    "allowed_widths",
    "importance_kept",
    "MacCost",
    "ParamCost",
    "plan_by_cost",
    "ScaledCost",
    "TieBrokenCost",
]


class MacCost:
    """Counted multiply-accumulates as a cost (`WidthCounter`)."""

    def __init__(self, counter):
        self.counter = counter
        self.calls = counter.calls_by_group()

    def group_calls(self, name):
        return self.calls.get(name, [])

    def call_cost(self, index, widths):
        return self.counter.call_macs(index, widths)

    def total(self, widths):
        return self.counter.macs(widths)


class ParamCost:
    """Parameters as a cost; counted whole at every step (slower)."""

    def __init__(self, counter):
        self.counter = counter

    def group_calls(self, name):
        return None

    def total(self, widths):
        return self.counter.params(widths)


class ScaledCost:
    """A `LatencyTable`'s prediction times `scale` (a measured correction)."""

    def __init__(self, table, scale=1.0):
        self.table, self.scale = table, float(scale)
        self.calls = table.calls_by_group()

    def group_calls(self, name):
        return self.calls.get(name, [])

    def call_cost(self, index, widths):
        return self.table.call_ms(index, widths) * self.scale

    def total(self, widths):
        return self.table.predict(widths) * self.scale


class TieBrokenCost:
    """`primary` plus `weight` times `secondary` (a `MacCost`) on the first
    `shared` calls: a step that saves none of the primary cost (a flat
    stretch of a latency table) still saves a little, so the knapsack takes
    such steps last, by importance per MAC, instead of stopping short of a
    MAC budget."""

    def __init__(self, primary, secondary, weight, shared):
        self.primary, self.secondary = primary, secondary
        self.weight, self.shared = float(weight), int(shared)

    def group_calls(self, name):
        return sorted(set(self.primary.group_calls(name))
                      | set(self.secondary.group_calls(name)))

    def call_cost(self, index, widths):
        cost = self.primary.call_cost(index, widths)
        if index < self.shared:
            cost += self.weight * self.secondary.call_cost(index, widths)
        return cost

    def total(self, widths):
        return (self.primary.total(widths)
                + self.weight * self.secondary.total(widths))


def allowed_widths(width, min_channels=1, round_to=1, max_ratio=None,
                   granularity=None):
    """The widths a group may take, widest first (its full width first).

    With `granularity`, a group moves in steps of about `1 / granularity`
    of its width (a multiple of `round_to`), which keeps the search on wide
    models quick.
    """
    if granularity:
        round_to *= max(1, width // (granularity * round_to))
    lower = min(width, min_channels)
    if max_ratio is not None:
        lower = max(lower, width - math.floor(max_ratio * width + 1e-9))
    lower = max(lower, 1)
    if round_to > 1:
        lower = math.ceil(lower / round_to) * round_to
        below = list(range((width - 1) // round_to * round_to, lower - 1,
                           -round_to))
    else:
        below = list(range(width - 1, lower - 1, -1))
    return [width] + [w for w in below if w >= 1]


def _delta(cost, name, widths, new_width):
    """Cost saved when group `name` goes to `new_width`."""
    calls = cost.group_calls(name)
    trial = dict(widths)
    trial[name] = new_width
    if calls is None:
        return cost.total(widths) - cost.total(trial)
    return sum(cost.call_cost(i, widths) - cost.call_cost(i, trial)
               for i in calls)


def plan_by_cost(graph, cost, done, score="gamma", seed=None, min_channels=1,
                 round_to=1, max_ratio=None, skip=None, lookahead=4,
                 granularity=64, trace_every=0.05, reduction=None,
                 normalize=None):
    """Remove the channels of least importance per saved cost until `done`.

    Args:
        graph: the model's `ChannelGraph`.
        cost: a cost (`MacCost`, `ParamCost`, `ScaledCost`): `total(widths)`
            and, for a fast local step, `group_calls` and `call_cost`.
        done: `done(widths, total)` -> bool, whether the budget is met.
        score: channel importance, as for `plan_uniform` ("gamma", "l1",
            "random" or an importance function); a group's kept importance
            is the sum of its kept channels' scores.
        seed: seed of the "random" score.
        min_channels, round_to, max_ratio, skip: the shared constraints.
        lookahead: how many allowed widths below the current one each step
            considers per group.
        granularity: groups move in steps of about `1 / granularity` of
            their width (multiples of `round_to`); `None` for single
            channels (slow on wide models).
        trace_every: record the widths each time the cost falls by this
            share of the original.
        reduction: how a tied channel's score copies make one, for "gamma"
            and "l1" (see `keras_slim.plan_global_gamma`).
        normalize: each group's scores divided by their "mean", "max" or
            "sum" first (see `keras_slim.plan_global_gamma`).

    Returns:
        `(plan, trace)`: the `PruningPlan` and the list of widths dicts
        passed on the way (for plotting the candidates).
    """
    min_channels, round_to, max_ratio = check_constraints(
        min_channels, round_to, max_ratio
    )
    scores = score_groups(graph, candidate_groups(graph, skip), score, seed,
                          reduction, normalize)
    ordered = {n: np.sort(np.asarray(s, dtype="float64"))[::-1]
               for n, s in scores.items()}
    steps = {n: allowed_widths(graph.group_by_name[n].width, min_channels,
                               round_to, max_ratio, granularity)
             for n in ordered}
    position = {n: 0 for n in ordered}
    widths = {n: graph.group_by_name[n].width for n in ordered}
    total = cost.total(widths)
    start = total
    neighbours = _neighbours(cost, ordered)
    best = {n: _best_move(cost, n, widths, steps[n], position[n], ordered[n],
                          lookahead) for n in ordered}
    trace, mark = [], start
    while not done(widths, total):
        name = min(best, key=lambda n: best[n][0], default=None)
        if name is None or not np.isfinite(best[name][0]):
            break
        _, index, saved = best[name]
        position[name] = index
        widths[name] = steps[name][index]
        total -= saved
        for other in neighbours[name] | {name}:
            best[other] = _best_move(cost, other, widths, steps[other],
                                     position[other], ordered[other],
                                     lookahead)
        if trace_every and mark - total >= trace_every * start:
            trace.append(dict(widths))
            mark = total
    proposals = {n: w for n, w in widths.items()
                 if w < graph.group_by_name[n].width}
    return build_plan(graph, proposals, scores, min_channels, round_to,
                      max_ratio), trace


def _neighbours(cost, names):
    """Groups whose step cost changes when a group's width changes: those
    sharing a counted call with it."""
    found = {n: set() for n in names}
    by_call = {}
    for name in names:
        calls = cost.group_calls(name)
        if calls is None:
            return {n: set(names) - {n} for n in names}
        for index in calls:
            by_call.setdefault(index, set()).add(name)
    for members in by_call.values():
        for name in members:
            found[name] |= members - {name}
    return found


def _best_move(cost, name, widths, steps, index, ordered, lookahead):
    """(importance lost per cost saved, new step index, cost saved), over
    the next `lookahead` steps that save something (a flat stretch of the
    cost, where a runtime's time does not move, is crossed)."""
    best = (math.inf, index, 0.0)
    current = steps[index]
    considered = 0
    for ahead in range(index + 1, len(steps)):
        if considered == lookahead:
            break
        new_width = steps[ahead]
        saved = _delta(cost, name, widths, new_width)
        if saved <= 0:
            continue
        considered += 1
        lost = float(ordered[new_width:current].sum())
        saliency = lost / saved
        if saliency < best[0]:
            best = (saliency, ahead, saved)
    return best


def importance_kept(graph, plan, score="gamma", skip=None, seed=None,
                    reduction=None):
    """Share of the summed channel scores a plan keeps (over the groups that
    have a score), the measure a budget's allocation is judged by.
    `reduction` as for `score_groups`: "sum" counts every |gamma| copy of a
    tied channel, the same measure whatever reduction made the plan."""
    scores = score_groups(graph, candidate_groups(graph, skip), score, seed,
                          reduction)
    total = kept = 0.0
    for name, values in scores.items():
        values = np.abs(np.asarray(values, dtype="float64"))
        total += values.sum()
        if name in plan.kept:
            kept += values[plan.kept[name]].sum()
        else:
            kept += values.sum()
    return kept / total if total else 1.0
