"""Experiment 6 of the Fashion-MNIST study: accuracy at equal latency.

From each Network Slimming sparse network (experiment 1's), the
latency-aware plan (`plan_for_budget(method="latency_aware")`, a knapsack
over |gamma| per unit of measured LiteRT latency) at `--budget_latency` of
the dense latency, and the global-gamma plan whose slim network measures
as fast (its ratio bisected on interleaved LiteRT timings); both are
fine-tuned like experiment 1's networks and compared on accuracy.

This network at 28 x 28 and batch 1 runs in tens of microseconds, too
close to the interpreter's own overhead for the widths to show; it is
timed at batch `--budget_batch` (64) instead, which the results say.
"""

import keras_slim
from keras_slim.core.graph import ChannelGraph
from keras_slim.planners.allocation import importance_kept


def _runtime(study, runs):
    """LiteRT at one thread (`study.runtime_override(batch, runs)` in
    tests)."""
    batch = study.c["budget_batch"]
    if study.runtime_override is not None:
        return study.runtime_override(batch, runs)
    return keras_slim.LiteRTRuntime(threads=1, batch=batch, runs=runs,
                                    statistic="p10")


def match_global(sparse, aware, runtime, steps=8, tolerance=0.02):
    """The global-gamma plan whose slim model measures closest to `aware`
    (a slim model), bisecting its ratio; returns `(plan, ratio, rows)`."""
    low, high, ratio = 0.0, 0.95, 0.5
    best, rows = None, []
    for _ in range(steps):
        plan = keras_slim.plan_global_gamma(sparse, ratio)
        slim = keras_slim.slim_model(sparse, plan)
        aware_ms, plain_ms = runtime.time([aware, slim])
        relative = plain_ms / aware_ms
        rows.append({"ratio": ratio, "global_ms": plain_ms,
                     "latency_aware_ms": aware_ms})
        if best is None or abs(relative - 1) < abs(best[2] - 1):
            best = (plan, ratio, relative)
        if abs(relative - 1) <= tolerance:
            break
        low, high = (ratio, high) if relative > 1 else (low, ratio)
        ratio = (low + high) / 2
    return best[0], best[1], rows


def plans_job(study, seed):
    """A run that finds both plans for one seed and times them together."""
    c = study.c
    target = c["budget_latency"]
    name = (f"budget-plans-l1{study.slimming_s:.3g}-e{study.epochs}"
            f"-lat{target:g}-b{c['budget_batch']}-s{seed}")

    def train():
        sparse = study.sparse(seed)[1]
        runtime = _runtime(study, runs=c["budget_runs"])
        aware = keras_slim.plan_for_budget(sparse, "latency_aware",
                                           latency=target, runtime=runtime)
        aware_slim = keras_slim.slim_model(sparse, aware.plan)
        plan, ratio, bisection = match_global(sparse, aware_slim, runtime)
        plain_slim = keras_slim.slim_model(sparse, plan)
        again = _runtime(study, runs=2 * c["budget_runs"])
        dense_ms, aware_ms, plain_ms = again.time([sparse, aware_slim,
                                                   plain_slim])
        graph = ChannelGraph(sparse)
        record = {
            "seed": seed, "latency_target": target,
            "batch": c["budget_batch"], "dense_ms": dense_ms,
            "latency_aware": {"plan": aware.plan.to_dict(), "ms": aware_ms,
                              "importance_kept": importance_kept(graph,
                                                                 aware.plan)},
            "global_gamma": {"plan": plan.to_dict(), "ms": plain_ms,
                             "ratio": ratio,
                             "importance_kept": importance_kept(graph, plan)},
            "bisection": bisection,
            "runtime": again.info(),
        }
        return record, None
    return name, train, False


def budget_experiment(study):
    seeds = study.c["seeds"]
    study.runs.run_all([study.sparse_job(s) for s in seeds])
    study.runs.run_all([plans_job(study, s) for s in seeds])
    jobs, rows = [], []
    for seed in seeds:
        plans = study.runs.run(*plans_job(study, seed))[0]
        for method in ("latency_aware", "global_gamma"):
            entry = plans[method]
            job = study.fine_tune_job(
                f"budget-{method}-l1{study.slimming_s:.3g}-e{study.epochs}"
                f"-lat{plans['latency_target']:g}-s{seed}",
                lambda seed=seed: study.sparse(seed)[1],
                lambda m, data=entry["plan"]: keras_slim.PruningPlan.from_dict(
                    data), seed, method=method)
            jobs.append(job)
            extra = {"label": method, "method": method,
                     "latency_ms": entry["ms"],
                     "latency_of_dense": entry["ms"] / plans["dense_ms"],
                     "importance_kept": entry["importance_kept"]}
            rows.append((job, extra))
    study.runs.run_all(jobs)
    return [dict(study.runs.run(*job)[0], **extra) for job, extra in rows]
