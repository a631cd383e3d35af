"""A latency table fitted to end-to-end timings: `calibrate_latency_table`.

A table times each layer alone and predicts a plan as the sum of its
layers' timings times one scale, `dense_ms / layers_ms`. Inside a whole
model a layer runs differently: its input is still in cache, its
activation may be fused, the threads meet once per operator. How much that
changes a layer's time depends on its kind: a depthwise convolution, a 1x1
convolution and a 3x3 one at the same resolution gain or lose different
shares. A search that trusts one scale is sent to the cuts the table
overrates.

`calibrate_latency_table` times a number of random slim models of the
model end to end, with the dense one, interleaved, on the runtime of the
table, and fits one factor per kind of layer (its class and kernel, and the
resolution of its output) and a fixed cost per invoke. The fit is least
squares on the timings relative to the dense model's, pulled towards the
table's single scale (a ridge, so that a kind the random plans barely move
keeps the old factor), with no factor or cost below zero. It reports its
leave-one-out error on the plans beside the plain table's, so the fit is
checked on plans it did not see.

Keras and NumPy only; the slim models come from the surgery (a lazy import,
as `plan_for_budget` makes to confirm a plan).
"""

import keras
import numpy as np

from keras_slim.core.graph import ChannelGraph
from keras_slim.core.widths import WidthCounter, plan_widths
from keras_slim.planners.candidates import build_plan
from keras_slim.planners.latency_table import LatencyTable, LiteRTRuntime

__all__ = ["calibrate_latency_table", "call_kinds"]


def call_kinds(table, counter, resolution=True):
    """One kind per call of `table.calls`: layer class, kernel ("1x1",
    "3x3", "depthwise"), and with `resolution` the output's spatial size
    ("Conv2D 1x1 @20"); memory calls are their class ("Add memory")."""
    kinds = []
    calls = counter.counted_calls
    for index, row in enumerate(table.calls):
        if row.get("kind") == "memory":
            kinds.append(f"{table.entries[row['key']]['layer']} memory")
            continue
        layer = calls[index].layer
        name = type(layer).__name__
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            name += " depthwise"
        elif hasattr(layer, "kernel_size"):
            name += " " + "x".join(str(k) for k in layer.kernel_size)
        out_shape = counter._mac_calls[index][3]
        if resolution and len(out_shape) >= 4:
            name += f" @{out_shape[1]}"
        kinds.append(name)
    return kinds


def _random_plan(graph, rng, round_to):
    """Widths spread around a random share: each group keeps that share
    times a log-normal factor, so plans differ in size and in allocation."""
    share = rng.uniform(0.2, 1.0)
    proposals, scores = {}, {}
    for group in graph.groups:
        if not group.prunable:
            continue
        keep = share * np.exp(rng.normal(0.0, 0.5))
        proposals[group.name] = int(round(group.width * min(keep, 1.0)))
        scores[group.name] = -np.arange(group.width, dtype="float64")
    return build_plan(graph, proposals, scores, round_to=round_to)


def _fit(features, measured, dense_features, prior, strength):
    """Non-negative factors per kind and a fixed cost, least squares on
    figures relative to the dense model's (the first row), with a ridge
    pulling each factor towards `prior` in units of the dense time."""
    dense = measured[0]
    a = np.hstack([features, np.ones((len(features), 1))]) / dense
    b = np.asarray(measured) / dense
    pull = np.sqrt(strength) * dense_features / dense
    ridge = np.hstack([np.diag(pull), np.zeros((len(pull), 1))])
    a = np.vstack([a, ridge])
    b = np.concatenate([b, pull * prior])
    free = np.ones(a.shape[1], dtype=bool)
    solution = np.zeros(a.shape[1])
    for _ in range(a.shape[1]):
        solution[:] = 0.0
        solution[free] = np.linalg.lstsq(a[:, free], b, rcond=None)[0]
        negative = free & (solution < 0)
        if not negative.any():
            break
        free &= ~negative
    return np.maximum(solution, 0.0)


def calibrate_latency_table(model, table=None, runtime=None, plans=24,
                            seed=0, round_to=8, strength=0.01,
                            resolution=True, verbose=True):
    """The latency table with one factor per kind of layer, fitted to
    end-to-end timings of random slim models.

    Args:
        model: the model the table was built for.
        table: a `LatencyTable` of it (built on `runtime` when `None`); it
            is not modified.
        runtime: the `Runtime` that times the models (default: the
            table's own, made again from its info; `LiteRTRuntime()`
            without a table).
        plans: random slim models timed (at least 4).
        seed: the random plans' seed.
        round_to: the random plans' widths are multiples of it (as the
            plans searched will be).
        strength: the ridge pulling each kind's factor towards the table's
            single scale (0: plain least squares).
        resolution: tell layers of one class and kernel apart by their
            output resolution.
        verbose: a progress line while timing.

    Returns:
        A new `LatencyTable` whose `calibration` holds the fit: "kinds"
        (kind -> factor), "weights" (one per call), "intercept" (ms),
        "plans", "error" (leave-one-out mean absolute error of the
        calibrated prediction, as a fraction of the dense latency) and
        "table_error" (the plain table's, on the same plans), and
        "points" ([plain, measured, leave-one-out] fractions of dense per
        plan).
    """
    from keras_slim.core.surgery import slim_model
    from keras_slim.deploy.console import ProgressLine
    from keras_slim.deploy.runtimes import runtime_from_info
    from keras_slim.planners.latency_table import build_latency_table

    if not isinstance(plans, int) or isinstance(plans, bool) or plans < 4:
        raise ValueError("Expected `plans` to be an integer >= 4. "
                         f"Received: plans={plans!r}")
    if not strength >= 0:
        raise ValueError("Expected `strength` >= 0. "
                         f"Received: strength={strength!r}")
    counter = WidthCounter(model)
    if table is None:
        runtime = runtime or LiteRTRuntime()
        table = build_latency_table(model, runtime, verbose=verbose)
    else:  # a copy without any earlier calibration
        runtime = runtime or runtime_from_info(table.runtime)
        table = LatencyTable.from_dict(dict(
            table.to_dict(), calibration=None, version=2)).bind(counter)
    graph = ChannelGraph(model)
    rng = np.random.default_rng(seed)
    progress = ProgressLine(2, verbose)
    progress.step(f"building {plans} random slim models")
    widths = [{}]
    models = [model]
    for _ in range(plans):
        plan = _random_plan(graph, rng, round_to)
        widths.append(plan_widths(plan))
        models.append(slim_model(model, plan))
    progress.step(f"timing them with the dense model on {runtime.name}")
    measured = np.array([float(t) for t in runtime.time(models)])
    kinds = call_kinds(table, counter, resolution)
    names = sorted(set(kinds))
    column = [names.index(k) for k in kinds]
    features = np.zeros((len(widths), len(names)))
    for row, plan_w in enumerate(widths):
        for index, col in enumerate(column):
            features[row, col] += table.unit_ms(index, plan_w)
    solution = _fit(features, measured, features[0], table._scale, strength)
    loo = []
    for row in range(1, len(widths)):
        keep = np.arange(len(widths)) != row
        fitted = _fit(features[keep], measured[keep], features[0],
                      table._scale, strength)
        loo.append(features[row] @ fitted[:-1] + fitted[-1])
    dense = measured[0]
    full = table.predict({})
    plain = np.array([table.predict(w) / full for w in widths])
    relative = measured / dense
    loo = np.array(loo) / dense
    factors = dict(zip(names, (float(f) for f in solution[:-1])))
    calibration = {
        "kinds": factors,
        "weights": [factors[k] for k in kinds],
        "intercept": float(solution[-1]),
        "plans": plans, "seed": seed, "round_to": round_to,
        "strength": float(strength), "resolution": bool(resolution),
        "error": float(np.mean(np.abs(loo - relative[1:]))),
        "table_error": float(np.mean(np.abs(plain[1:] - relative[1:]))),
        "points": [[float(p), float(m), float(f)] for p, m, f in
                   zip(plain[1:], relative[1:], loo)],
    }
    progress.done(
        f"calibrated on {plans} plans: mean error {calibration['error']:.3f}"
        f" of dense (plain table {calibration['table_error']:.3f}, "
        "leave-one-out)")
    # Its dense time is this run's, which the fit reproduces.
    data = dict(table.to_dict(), calibration=calibration, version=3,
                dense_ms=float(dense))
    return LatencyTable.from_dict(data).bind(counter)
