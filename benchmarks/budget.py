"""Pruning to a budget: MACs, and latency measured on LiteRT or ONNX Runtime
(issue 13).

For ResNet50 and MobileNetV2 (`keras.applications`, `weights=None`, 160 x 160,
every BatchNormalization gamma drawn from U[0, 1]):

1. a MAC budget of 0.5 with global gamma: where it lands, checked against
   `count_macs` of the real slim model;
2. a latency table timed once on `--runtime` (LiteRT by default, or ONNX
   Runtime; `--threads`), then a latency budget
   of `--latency` x the dense model's measured latency, for the plain global
   threshold ("global_gamma") and for the latency-aware knapsack
   ("latency_aware");
3. both slim models and the dense one timed again, interleaved, in the same
   run: where each lands against the budget;
4. the two allocations at equal measured latency: the global threshold's
   ratio is bisected on end-to-end timings (dense, latency-aware and global
   plans timed together each step) until the global plan measures within
   `--match` of the latency-aware one, then how much of the summed |gamma|
   each keeps;
5. a scan of one layer at consecutive output widths, for the `round_to` the
   runtime suggests (and the table's own scan of its costliest layer);
6. a plot of latency against MACs for the candidates tried.

    nice -n 5 python benchmarks/budget.py [--models ResNet50 MobileNetV2]
        [--size 160] [--threads 2] [--latency 0.6] [--runs 30]
        [--statistic median|p10] [--runtime litert|onnxruntime]
        [--round-to N] [--out DIR] [--reuse-tables]

The runtime times everything: the table, the searches' confirming runs,
the timings again at the end and the width scan.
"""

import argparse
import os
import time

import _bootstrap  # noqa: F401  (first: see there)
import keras
import numpy as np

import keras_slim
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.widths import WidthCounter
from keras_slim.planners.allocation import importance_kept
from keras_slim.planners.budget import plan_for_budget
from keras_slim.planners.latency_table import (
    RUNTIMES,
    LatencyTable,
    build_latency_table,
    scan_widths,
    suggest_round_to,
)
from keras_slim.tools.report import plot_budget

LABELS = {"litert": "LiteRT", "onnxruntime": "ONNX Runtime"}
SCAN_LAYERS = {"ResNet50": "conv4_block1_1_conv",
               "MobileNetV2": "block_6_expand"}


def uniform_gammas(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.scale:
            shape = tuple(layer.gamma.shape)
            layer.gamma.assign(rng.uniform(0, 1, shape).astype("float32"))


def _time_together(model, graph, table, plans, runtime):
    slims = {m: keras_slim.slim_model(model, r.plan) for m, r in plans.items()}
    times = runtime.time([model] + list(slims.values()))
    rows = [("dense", 1.0, None, times[0], 1.0, 1.0, 1.0)]
    for (method, found), ms in zip(plans.items(), times[1:]):
        rows.append((
            method, found.achieved["latency"] / table.dense_ms,
            None if found.measured_ms is None
            else found.measured_ms / found.dense["latency"],
            ms, ms / times[0],
            keras_slim.count_macs(slims[method]) / keras_slim.count_macs(model),
            importance_kept(graph, found.plan),
        ))
    return rows


def equal_latency(model, graph, aware_plan, start_ratio, round_to, runtime,
                  again, args):
    """Bisect the global threshold's ratio until its slim model measures as
    fast as the latency-aware one (in the same interleaved runs, timed by
    `runtime`), then time the closest pair once more with `again`."""
    from keras_slim.planners import methods

    aware = keras_slim.slim_model(model, aware_plan)
    low, high, ratio = 0.0, 0.95, start_ratio
    steps, best = [], None
    for _ in range(args.match_steps):
        plan = methods.plan_for(model, "global_gamma", ratio=ratio,
                                round_to=round_to)
        slim = keras_slim.slim_model(model, plan)
        dense_ms, aware_ms, plain_ms = runtime.time([model, aware, slim])
        relative = plain_ms / aware_ms
        steps.append((ratio, plain_ms / dense_ms, aware_ms / dense_ms,
                      relative))
        print(f"  global_gamma ratio {ratio:.4f}: {plain_ms / dense_ms:.3f} "
              f"of dense, latency-aware {aware_ms / dense_ms:.3f} "
              f"(global / latency-aware {relative:.3f})")
        if best is None or abs(relative - 1) < abs(best[1] - 1):
            best = (ratio, relative, plan, slim)
        if abs(relative - 1) <= args.match:
            break
        if relative > 1:  # the global plan is slower: prune more
            low = ratio
        else:
            high = ratio
        ratio = (low + high) / 2
    ratio, _, plan, slim = best
    dense_ms, aware_ms, plain_ms = again.time([model, aware, slim])
    macs = keras_slim.count_macs(model)
    return {
        "steps": steps,
        "rows": [
            ("latency_aware", None, aware_ms / dense_ms,
             keras_slim.count_macs(aware) / macs,
             importance_kept(graph, aware_plan)),
            ("global_gamma", ratio, plain_ms / dense_ms,
             keras_slim.count_macs(slim) / macs,
             importance_kept(graph, plan)),
        ],
    }


def _rounding(args):
    """The latency searches' `round_to` (none unless --round-to is given)."""
    return {} if args.round_to is None else {"round_to": args.round_to}


def run_model(name, args):
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(args.size, args.size, 3))
    uniform_gammas(model, np.random.default_rng(0))
    graph = ChannelGraph(model)
    print(f"\n== {name} at {args.size} px: "
          f"{keras_slim.count_macs(model) / 1e6:.1f} M MACs ==")
    rows = {"model": name}

    result = plan_for_budget(model, "global_gamma", macs=args.macs)
    slim = keras_slim.slim_model(model, result.plan)
    real = keras_slim.count_macs(slim) / keras_slim.count_macs(model)
    rows["mac_budget"] = (args.macs, real, result.ratio)
    print(f"MAC budget {args.macs}: slim model has {real:.4f} of the MACs "
          f"(channel ratio {result.ratio:.4f})")

    runtime = RUNTIMES[args.runtime](threads=args.threads, runs=args.runs,
                                     statistic=args.statistic)
    path = os.path.join(args.out, f"{name}_{args.runtime}_latency_table.json")
    if args.reuse_tables and os.path.exists(path):
        table = LatencyTable.load(path).bind(WidthCounter(graph))
        if table.runtime.get("threads") != args.threads:
            raise SystemExit(f"{path} was timed with "
                             f"{table.runtime.get('threads')} threads, not "
                             f"--threads {args.threads}.")
        print(f"reusing {path}")
    else:
        table = build_latency_table(model, runtime, verbose=True)
        table.save(path)

    plans, candidates = {}, []
    for method in ("global_gamma", "latency_aware"):
        start = time.time()
        found = plan_for_budget(model, method, latency=args.latency,
                                table=table, runtime=runtime,
                                **_rounding(args))
        print(f"{method}: {time.time() - start:.0f} s, "
              f"{sum('measured_ms' in c for c in found.candidates)} "
              "end-to-end timing(s)")
        print(found.summary())
        plans[method] = found
        candidates += [dict(c, label=method) for c in found.candidates]
    plot_budget(candidates, os.path.join(args.out, f"{name}_budget.png"),
                title=f"{name} {args.size} px, {LABELS[args.runtime]} "
                f"{args.threads} threads")

    # Dense and both slim models timed again together, interleaved.
    again = RUNTIMES[args.runtime](threads=args.threads, runs=2 * args.runs,
                                   statistic=args.statistic)
    rows["dense_ms"] = table.dense_ms
    rows["plans"] = _time_together(model, graph, table, plans, again)

    # The allocations compared at the same predicted latency (one table,
    # no correction by a measurement), then timed together.
    same = {m: plan_for_budget(model, m, latency=args.latency, table=table,
                               confirm=False, **_rounding(args))
            for m in ("global_gamma", "latency_aware")}
    rows["compare"] = _time_together(model, graph, table, same, again)

    print("equal measured latency: bisecting the global threshold")
    rows["equal"] = equal_latency(model, graph, plans["latency_aware"].plan,
                                  plans["global_gamma"].ratio,
                                  plans["global_gamma"].round_to, runtime,
                                  again, args)
    rows["table_steps"] = table.steps

    layer = SCAN_LAYERS.get(name)
    if layer is not None:
        width = graph.group_by_name[layer].width // 2
        points = scan_widths(model, layer, range(width - 20, width + 21),
                             runtime)
        rows["scan"] = (layer, points, suggest_round_to(points))
    return rows


def _print_plans(model, plans, args):
    for method, predicted, measured, again, share, macs, kept in plans:
        off = "-" if method == "dense" else \
            f"{(share - args.latency) / args.latency:+.1%}"
        searched = "-" if measured is None else f"{measured:.3f}"
        print(f"| {model} | {method} | {predicted:.3f} | {searched} | "
              f"{again:.2f} | {share:.3f} | {off} | {macs:.3f} | {kept:.3f} |")


def print_rows(all_rows, args):
    print(f"\n## Budgets ({args.size} px, random U[0,1] gammas, "
          f"latency searches with round_to={args.round_to}, "
          f"{LABELS[args.runtime]} {args.threads} threads, batch 1, "
          f"{args.statistic} of "
          f"{args.runs} interleaved runs; load average before: "
          f"{args.load_before}, after: {os.getloadavg()[0]:.2f})\n")
    print("| model | MAC budget | slim MACs (count_macs) | off by |")
    print("|---|---|---|---|")
    for rows in all_rows:
        budget, real, _ = rows["mac_budget"]
        print(f"| {rows['model']} | {budget} | {real:.4f} | "
              f"{(real - budget) / budget:+.2%} |")
    print("\nDense latency when the tables were built: "
          + ", ".join(f"{r['model']} {r['dense_ms']:.2f} ms" for r in all_rows)
          + ".")
    print(f"\nLatency budget: {args.latency} x the dense model's latency "
          "measured in the same run. Predicted and measured figures are "
          "fractions of the dense latency (table: timed when the table was "
          "built; search: the confirming run; again: dense and both slim "
          "models timed together at the end).\n")
    print("| model | method | predicted | measured (search) | measured again "
          "ms | again / dense | off budget | MACs kept | importance kept |")
    print("|---|---|---|---|---|---|---|---|---|")
    for rows in all_rows:
        _print_plans(rows["model"], rows["plans"], args)
    print("\nThe two allocations at the same predicted latency (one table, "
          "no correction by measurement), timed together:\n")
    print("| model | method | predicted | - | measured ms | measured / dense "
          "| off budget | MACs kept | importance kept |")
    print("|---|---|---|---|---|---|---|---|---|")
    for rows in all_rows:
        _print_plans(rows["model"], rows["compare"], args)
    print("\nThe two allocations at equal measured latency (the global "
          "threshold's ratio bisected on end-to-end timings until it measures "
          f"within {args.match:.0%} of the latency-aware plan, then the pair "
          f"timed again with {2 * args.runs} runs):\n")
    print("| model | method | ratio | measured / dense | MACs kept | "
          "importance kept | bisection steps |")
    print("|---|---|---|---|---|---|---|")
    for rows in all_rows:
        steps = len(rows["equal"]["steps"])
        for method, ratio, share, macs, kept in rows["equal"]["rows"]:
            shown = "-" if ratio is None else f"{ratio:.4f}"
            print(f"| {rows['model']} | {method} | {shown} | {share:.3f} | "
                  f"{macs:.3f} | {kept:.3f} | {steps} |")
    for rows in all_rows:
        steps = rows.get("table_steps")
        if steps:
            print(f"\n{rows['model']} table scan of `{steps['layer']}`: "
                  f"suggested round_to {steps['round_to']} (steps "
                  f"{steps['strength']:.1f}x the typical change)")
    for rows in all_rows:
        if "scan" not in rows:
            continue
        layer, points, (round_to, strength) = rows["scan"]
        print(f"\n{rows['model']} `{layer}` alone, output width -> ms: "
              + ", ".join(f"{w}: {ms:.3f}" for w, ms in points))
        print(f"suggested round_to: {round_to} (steps {strength:.1f}x the "
              "typical change)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+",
                        default=["ResNet50", "MobileNetV2"])
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--macs", type=float, default=0.5)
    parser.add_argument("--latency", type=float, default=0.6)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--match", type=float, default=0.02,
                        help="equal measured latency: within this share")
    parser.add_argument("--match-steps", type=int, default=8,
                        help="end-to-end timings for the equal-latency "
                        "bisection at most")
    parser.add_argument("--statistic", default="median",
                        choices=("median", "p10"))
    parser.add_argument("--runtime", default="litert", choices=sorted(LABELS),
                        help="the runtime that times the models")
    parser.add_argument("--round-to", type=lambda t: t if t == "auto"
                        else int(t), default=None,
                        help="round_to of the latency searches, or auto "
                        "(the table scan's step; ONNX Runtime "
                        "needs 8: odd widths made a slim MobileNetV2 slower "
                        "than the dense one there)")
    parser.add_argument("--out", default="/tmp/keras_slim_budget")
    parser.add_argument("--reuse-tables", action="store_true",
                        help="load the latency tables saved in --out")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    args.load_before = f"{os.getloadavg()[0]:.2f}"
    all_rows = [run_model(name, args) for name in args.models]
    print_rows(all_rows, args)


if __name__ == "__main__":
    main()
