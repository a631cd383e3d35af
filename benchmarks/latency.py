"""TFLite latency of channel-pruned ResNet50 and MobileNetV2 against dense.

Goal (issue 5): with 50% of the channels cut by global gamma (Network
Slimming, `round_to=8`), the measured TFLite latency speedup is at least 0.8
of the MAC reduction on a 2-core CPU. Both exports are timed in the same
run, interleaved, after a warm-up, with the LiteRT interpreter (XNNPACK).

The models are `keras.applications` at 224 x 224 with `weights=None` (no
download) and BatchNormalization gammas drawn from |N(0, 1)|, a spread like
that of a trained network, so that the global threshold cuts different
shares of different layers.

With `--reduction max mean`, one slim model per group reduction of global
gamma (how a residual stream's |gamma| copies make one score) is timed in
the same interleaved run, each beside the share of the summed |gamma| of
every BatchNormalization it keeps ("gamma kept"): speed bought by cutting
important channels is not a win. `--uniform` adds `plan_uniform` at the
same ratio (every group cut alike), the speed-per-MAC reference.
`--normalize none mean` adds, for each reduction, the plan whose groups'
scores are first divided by their own mean (`normalize="mean"`), labelled
"reduction/normalizer". `--max-ratio 0.75` and `--min-channels 32` add,
for each of those plans, one with that floor on every group's width (at
most that share of a group cut; at least that many channels kept),
labelled "plan,cap0.75" and "plan,min32": thin convolutions run below
their kernels' efficiency, and a floor keeps the cut off them.

    python benchmarks/latency.py [--models ResNet50 MobileNetV2]
        [--ratio 0.5] [--round-to 8] [--runs 30] [--warmup 5] [--threads 1 2]
        [--turn-warmup 1]
        [--reduction max mean sum] [--normalize none mean] [--uniform]
        [--max-ratio 0.75] [--min-channels 32]
        [--latency-aware plain calibrated] [--at max] [--table-plans 24]
        [--memory] [--latency-budget 0.5 0.65]
        [--match max/mean] [--match-round-to 8]
        [--curve 0.1 0.2 0.3 0.4 0.5 0.6] [--curve-round-to 8 16]

`--latency-aware plain calibrated` adds the latency-aware knapsack
spending latency at the MACs of `--at` (default: the first plan; `cost=
"latency"`), planned on a latency table timed at the last `--threads`
("knapsack") and on the same table calibrated to end-to-end timings of
`--table-plans` random slim models ("knapsack/fit",
`calibrate_latency_table`, which prints its leave-one-out error);
`--memory` builds that table with the merges, pooling and padding priced.
`--latency-budget 0.5` adds the knapsack under a latency budget instead
(`plan_for_budget(model, "latency_aware", latency=0.5)` on a plain table,
confirmed end to end as by default, both at the last `--threads`), once
per width floor ("lat0.5,min32").

`--match LABEL` then compares allocations at equal measured latency: for
uniform widths and for the default global gamma, the ratio is bisected
on end-to-end timings (the dense model, LABEL's slim model and the
candidate timed together, at the last `--threads`) until the candidate
measures within 2% of LABEL's, and each one's gamma kept is printed;
`--match-round-to` plans those two families at another step size than
`--round-to` (today's default widths against a plan in steps of 32, say).

`--curve 0.1 0.2 ... 0.6` compares every plan at equal measured latency
at every thread count, in the same run: the two families are timed at
each of those ratios beside the plans (at each `--curve-round-to`,
default `--round-to`), and each plan's gamma kept is set beside what each
family keeps at the plan's measured latency, interpolated between its two
neighbouring points ("outside" when the plan is faster or slower than
every point of the family).

Every file is timed in turns with the others, one invoke each a round;
once the files outgrow the last-level cache, each is timed cold.
`--turn-warmup 1` invokes each file once, untimed, just before each timed
invoke, so that every file is timed warm, as a model that runs call after
call (`docs/benchmarks.md`, "Timed warm").
"""

import argparse
import os
import tempfile

import _bootstrap  # noqa: F401  (first: see there)
import keras
import numpy as np
from knapsack_tables import knapsack_tables
from width_floors import add_floor_arguments, width_floors

import keras_slim
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.widths import WidthCounter, plan_widths
from keras_slim.deploy.export import export
from keras_slim.deploy.timing import time_model_files
from keras_slim.planners.allocation import importance_kept
from keras_slim.planners.selection import plan_global_gamma, plan_uniform


def spread_gammas(model, rng):
    """Set every BatchNormalization gamma to |N(0, 1)| samples."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.scale:
            shape = tuple(layer.gamma.shape)
            layer.gamma.assign(np.abs(rng.standard_normal(shape)).astype("float32"))


def measure(name, args, directory):
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(args.size, args.size, 3),
        classifier_activation=None,  # logits: a parity check that can fail
    )
    spread_gammas(model, np.random.default_rng(0))
    graph = ChannelGraph(model)
    floors = width_floors(args)
    plans = [((reduction if normalize == "none" else
               f"{reduction}/{normalize}") + suffix,
              plan_global_gamma(
                  model, args.ratio, round_to=args.round_to,
                  reduction=reduction,
                  normalize=None if normalize == "none" else normalize,
                  **floor))
             for suffix, floor in floors
             for normalize in args.normalize for reduction in args.reduction]
    if args.uniform:
        plans.append(("uniform",
                      plan_uniform(model, args.ratio, round_to=args.round_to)))
    if args.latency_aware:
        plans.extend(knapsack_plans(model, dict(plans), args))
    if args.latency_budget:
        plans.extend(latency_budget_plans(model, args))
    plans.extend(curve_plans(model, args))
    nets = [("dense", model, None)] + [
        (label, keras_slim.slim_model(model, plan),
         importance_kept(graph, plan, reduction="sum"))
        for label, plan in plans]
    paths = []
    for label, net, _ in nets:
        path = os.path.join(directory, f"{name}_{label.replace('/', '-')}.tflite")
        result = export(net, path, check=args.check, verbose=True)
        paths.append(result.path)
    macs = [keras_slim.count_macs(net) for _, net, _ in nets]
    if args.match:
        labels = [label for label, _, _ in nets]
        if args.match not in labels:
            raise SystemExit(f"--match {args.match}: no such plan "
                             f"({', '.join(labels[1:])})")
        index = labels.index(args.match)
        match_latency(name, model, graph, paths[0], paths[index],
                      nets[index][2], args, directory)
    rows = []
    for threads in args.threads:
        timings = time_model_files(
            paths, runs=args.runs, warmup=args.warmup, num_threads=threads,
            verbose=True, turn_warmup=args.turn_warmup,
        )
        dense = timings[0]
        for (label, _, kept), net_macs, timing in zip(nets[1:], macs[1:],
                                                      timings[1:]):
            rows.append({
                "curve": label.startswith("~"),  # a `curve_plans` point
                "model": name,
                "threads": threads,
                "plan": label,
                "gamma_kept": kept,
                "macs": (macs[0], net_macs),
                "latency": (dense.median_ms, timing.median_ms),
                "spread": (dense.p90_ms / dense.p10_ms,
                           timing.p90_ms / timing.p10_ms),
            })
    return rows


def latency_budget_plans(model, args):
    """The latency-aware knapsack under each `--latency-budget`, with each
    width floor, planned on a plain table timed at the last `--threads`."""
    runtime = keras_slim.LiteRTRuntime(threads=args.threads[-1])
    table = keras_slim.build_latency_table(model, runtime)
    found = []
    for fraction in args.latency_budget:
        for suffix, floor in width_floors(args):
            result = keras_slim.plan_for_budget(
                model, "latency_aware", latency=fraction, table=table,
                runtime=runtime, round_to=args.round_to, **floor)
            label = f"lat{fraction:g}{suffix}"
            print(f"{label}: confirmed at {result.measured_ms:.2f} ms, "
                  f"{result.measured_ms / result.dense['latency']:.3f} of "
                  "dense", flush=True)
            found.append((label, result.plan))
    return found


def curve_plans(model, args):
    """Uniform widths and the default global gamma at each `--curve` ratio
    and `--curve-round-to`, labelled "~uniform/8@0.3" (family/round_to)."""
    found = []
    for round_to in args.curve_round_to or [args.round_to]:
        for ratio in args.curve:
            found.append((f"~uniform/{round_to}@{ratio:g}", plan_uniform(
                model, ratio, round_to=round_to)))
            found.append((f"~max/{round_to}@{ratio:g}", plan_global_gamma(
                model, ratio, round_to=round_to)))
    return found


def at_equal_latency(rows):
    """For each plan and thread count, what each `--curve` family keeps at
    the plan's measured latency (linear between the two measured points
    around it)."""
    lines = []
    keys = sorted({(r["model"], r["threads"]) for r in rows},
                  key=lambda k: (k[0], str(k[1])))
    for model, threads in keys:
        here = [r for r in rows
                if r["model"] == model and r["threads"] == threads]
        points = {}
        for row in here:
            if row["curve"]:
                name = row["plan"][1:].split("@")[0]
                points.setdefault(name, []).append(
                    (row["latency"][1] / row["latency"][0],
                     row["gamma_kept"]))
        lines.append(f"{model}, {threads} threads: "
                     + "; ".join(
                         f"{name} " + " ".join(f"{x:.3f}:{y:.3f}"
                                               for x, y in sorted(pts))
                         for name, pts in points.items())
                     + "  (latency of dense : gamma kept)")
        for row in here:
            if row["curve"]:
                continue
            relative = row["latency"][1] / row["latency"][0]
            cells, beaten = [], True
            for name, pts in points.items():
                xs, ys = zip(*sorted(pts))
                if not xs[0] <= relative <= xs[-1]:
                    cells.append(f"{name} outside")
                    beaten = False
                    continue
                other = float(np.interp(relative, xs, ys))
                beaten &= row["gamma_kept"] > other
                cells.append(f"{name} {other:.3f}")
            lines.append(
                f"  {row['plan']:>18} at {relative:.3f} of dense keeps "
                f"{row['gamma_kept']:.3f}; " + ", ".join(cells)
                + ("  -> keeps more than every family" if beaten and cells
                   else ""))
    return lines


def knapsack_plans(model, plans, args):
    """The latency-aware knapsack at the MACs of `--at`, on a plain and a
    calibrated latency table timed at the last `--threads`."""
    at = args.at or next(iter(plans))
    if at not in plans:
        raise SystemExit(f"--at {at}: no such plan ({', '.join(plans)})")
    counter = WidthCounter(model)  # counts the plan without cutting it
    budget = counter.macs(plan_widths(plans[at])) / counter.macs({})
    tables = knapsack_tables(
        model, keras_slim.LiteRTRuntime(threads=args.threads[-1]),
        args.latency_aware, plans=args.table_plans, round_to=args.round_to,
        memory=args.memory)
    found = []
    for label, table in tables.items():
        result = keras_slim.plan_for_budget(
            model, "latency_aware", macs=budget, cost="latency", table=table,
            confirm=False, round_to=args.round_to)
        print(f"{label}: MACs {budget:.3f} of dense (those of {at}), "
              f"predicted {table.predict(plan_widths(result.plan)):.2f} ms "
              f"of {table.predict({}):.2f}", flush=True)
        found.append((label, result.plan))
    return found


def match_latency(name, model, graph, dense_path, target_path, target_kept,
                  args, directory, steps=7, within=0.02):
    """Bisect the ratio of uniform widths and of the default global gamma
    until each measures as fast as the target plan; print the gamma each
    keeps there."""
    threads = args.threads[-1]
    round_to = args.match_round_to or args.round_to
    families = {
        "uniform": lambda r: plan_uniform(model, r, round_to=round_to),
        "max (default)": lambda r: plan_global_gamma(
            model, r, round_to=round_to),
    }
    print(f"\n{name}: at the measured latency of {args.match} "
          f"(gamma kept {target_kept:.3f}), {threads} threads, the "
          f"families at round_to {round_to}:")
    for family, planner in families.items():
        low, high, ratio, best = 0.05, 0.95, args.ratio, None
        for step in range(steps):
            plan = planner(ratio)
            path = export(keras_slim.slim_model(model, plan),
                          os.path.join(directory, f"{name}_match.tflite"),
                          check=False).path
            dense, target, candidate = (t.median_ms for t in time_model_files(
                [dense_path, target_path, path], runs=args.runs,
                warmup=args.warmup, num_threads=threads,
                turn_warmup=args.turn_warmup))
            relative = candidate / target
            kept = importance_kept(graph, plan, reduction="sum")
            print(f"  {family} ratio {ratio:.3f}: {candidate / dense:.3f} of "
                  f"dense, {relative:.3f} of {args.match}'s latency, gamma "
                  f"kept {kept:.3f}", flush=True)
            if best is None or abs(relative - 1) < abs(best[1] - 1):
                best = (ratio, relative, kept)
            if abs(relative - 1) <= within:
                break
            if relative > 1:  # slower: prune more
                low = ratio
            else:
                high = ratio
            ratio = (low + high) / 2
        ratio, relative, kept = best
        print(f"  => {family} at ratio {ratio:.3f} ({relative:.3f} of the "
              f"latency) keeps {kept:.3f} of the gamma, {args.match} "
              f"{target_kept:.3f}")


def _threads(text):
    return None if text == "default" else int(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+",
                        default=["ResNet50", "MobileNetV2"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--round-to", type=int, default=8)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--turn-warmup", type=int, default=0,
                        help="untimed invokes of a file just before each "
                             "timed one, so that it is timed warm, with its "
                             "own weights in cache (default 0: in turns as "
                             "they come, cold once the files outgrow the "
                             "cache)")
    parser.add_argument("--threads", type=_threads, nargs="+",
                        default=[1, 2],
                        help="LiteRT interpreter thread counts to time "
                             "('default': LiteRT's own choice)")
    parser.add_argument("--reduction", nargs="+", default=["max"],
                        help="group reductions of global gamma to time side "
                             "by side: max (the default), mean, sum")
    parser.add_argument("--normalize", nargs="+", default=["none"],
                        help="group normalizers of global gamma: none (the "
                             "default), mean, max, sum")
    parser.add_argument("--match", default=None,
                        help="a plan label (such as max/mean) to compare "
                             "uniform widths and the default global gamma "
                             "with at equal measured latency")
    parser.add_argument("--match-round-to", type=int, default=None,
                        help="--match: the families' round_to (default "
                             "--round-to)")
    parser.add_argument("--latency-aware", nargs="+", default=[],
                        choices=("plain", "calibrated"),
                        help="also time the latency-aware knapsack at the "
                             "MACs of --at, on a plain and/or a calibrated "
                             "latency table")
    parser.add_argument("--at", default=None,
                        help="--latency-aware: the plan whose MACs it "
                             "matches (default: the first)")
    parser.add_argument("--table-plans", type=int, default=24,
                        help="--latency-aware calibrated: random slim "
                             "models timed for the fit")
    parser.add_argument("--memory", action="store_true",
                        help="--latency-aware: the table also prices the "
                             "merges, pooling and padding a group drives "
                             "(build_latency_table(memory=True))")
    parser.add_argument("--latency-budget", type=float, nargs="+",
                        default=[],
                        help="also the latency-aware knapsack under each of "
                             "these latency budgets (fractions of dense), "
                             "with each width floor")
    parser.add_argument("--curve", type=float, nargs="+", default=[],
                        help="ratios at which uniform widths and the "
                             "default global gamma are timed in the same "
                             "run, to compare every plan with them at its "
                             "measured latency")
    parser.add_argument("--curve-round-to", type=int, nargs="+",
                        default=None,
                        help="--curve: the families' round_to values "
                             "(default --round-to)")
    add_floor_arguments(parser)
    parser.add_argument("--uniform", action="store_true",
                        help="also time plan_uniform at the same ratio")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the parity check of the exports")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name in args.models:
            rows.extend(measure(name, args, directory))
    print()
    print(f"ratio {args.ratio}, round_to {args.round_to}, {args.runs} runs "
          f"after {args.warmup} warm-up, {args.turn_warmup} untimed before "
          f"each, {os.cpu_count()} CPUs")
    header = (f"{'model':<12} {'threads':>7} {'plan':>18} {'gamma kept':>10} "
              f"{'MACs dense':>11} {'MACs slim':>10} "
              f"{'MAC cut':>8} {'ms dense':>9} {'ms slim':>8} "
              f"{'speedup':>8} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for row in rows:
        if row["curve"]:
            continue
        mac_cut = row["macs"][0] / row["macs"][1]
        speedup = row["latency"][0] / row["latency"][1]
        print(f"{row['model']:<12} {row['threads'] or 'default':>7} "
              f"{row['plan']:>18} {row['gamma_kept']:10.3f} "
              f"{row['macs'][0] / 1e6:10.0f}M "
              f"{row['macs'][1] / 1e6:9.0f}M {mac_cut:7.2f}x "
              f"{row['latency'][0]:9.2f} {row['latency'][1]:8.2f} "
              f"{speedup:7.2f}x {speedup / mac_cut:6.2f}")
    print("(ratio = latency speedup / MAC reduction; goal for an "
          "importance-driven plan (issue 20): >= 0.90. "
          "p90/p10 spread: "
          + ", ".join(f"{r['model']}/{r['threads']} {r['spread'][0]:.2f}/"
                      f"{r['spread'][1]:.2f}" for r in rows
                      if not r["curve"]) + ")")
    print("(gamma kept = share of the summed |gamma| of every "
          "BatchNormalization the plan keeps)")
    if args.curve:
        print("\nAt equal measured latency (--curve):")
        print("\n".join(at_equal_latency(rows)))


if __name__ == "__main__":
    main()
