"""keras_slim against Torch-Pruning on ONNX Runtime, at equal MACs.

Issue 20's goal: at equal MACs, keras_slim's fastest importance-driven plan
runs faster than Torch-Pruning's default on ONNX Runtime, at 1 and at 2
threads, in a majority of paired rounds, with its importance kept beside
it.

The same network is built in both frameworks (`peer_networks.py`):
torchvision's ResNet-50 layout (stride on the 3x3 convolution of a
bottleneck, PyTorch's padding and BatchNormalization epsilon) or, with
`--models mobilenetv2`, its MobileNetV2, written in PyTorch and in Keras,
the Keras weights copied into the PyTorch model and the two outputs
compared.
Every BatchNormalization gamma is drawn from U[0, 1], the same in both.

Torch-Pruning prunes by its defaults for BN-scale pruning: a
`MetaPruner` with `BNScaleImportance` (mean over a group, mean-normalized),
global, `pruning_ratio` 0.5, `round_to` 8, the classifier kept. keras_slim
then plans, for each group reduction asked for, the global-gamma plan with
the same share of MACs (`plan_for_budget(..., macs=share)`, each library's
MAC count taken on its own model). Each slim model is exported to ONNX
(keras_slim by Keras' export, Torch-Pruning by `torch.onnx`), and all run
in one ONNX Runtime loop: each round times every model once, in an order
reversed every other round. The table gives the median, and the share of
rounds in which each keras_slim model beat Torch-Pruning's.

    pip install torch-pruning==1.6.1   # the `peer` extra
    python benchmarks/peer.py [--models resnet50 mobilenetv2] [--size 160]
        [--rounds 60] [--threads 1 2]
        [--reduction max mean sum] [--normalize none mean]
        [--max-ratio 0.6] [--min-channels 32]

`--normalize mean` adds, for each reduction, the plan whose groups' scores
are first divided by their own mean, as Torch-Pruning's are
("keras_slim mean/mean").

`--max-ratio 0.6` and `--min-channels 32` add, for each of those plans,
one at the same MAC share with that floor on every group's width
(labelled "max,cap0.6" and "max,min32"). On ResNet-50 a floor of 48
made global gamma faster than Torch-Pruning at its MACs while keeping
more gamma; 40 did not, being no multiple of 16 (docs/benchmarks.md).

`--latency-aware plain calibrated` adds keras_slim's latency-aware
knapsack at the same MAC share (`plan_for_budget(..., "latency_aware",
macs=share, cost="latency")`): it removes the channels of least gamma per
millisecond saved, on a latency table measured on ONNX Runtime at
`--table-threads` (`build_latency_table(model, ONNXRuntime(...))`, with
`--memory` its merges and pooling priced too), "plain" as built and
"calibrated" fitted to end-to-end timings of `--table-plans` random slim
models (`calibrate_latency_table`), once per `--normalize`.
"""

import argparse
import itertools
import os
import tempfile
import time
import warnings

import _bootstrap  # noqa: F401  (first: see there)
import keras
import numpy as np
from knapsack_tables import knapsack_tables
from peer_networks import NETWORKS, check_same
from width_floors import add_floor_arguments, width_floors

import keras_slim
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.widths import plan_widths
from keras_slim.deploy.export import export
from keras_slim.deploy.onnx_export import random_feed, session
from keras_slim.planners.allocation import importance_kept
from keras_slim.planners.budget import plan_for_budget

# -- pruning ----------------------------------------------------------------


def torch_pruning_default(net, size, ratio, round_to):
    """Torch-Pruning's BN-scale pruning; returns its MAC share."""
    import torch
    import torch_pruning as tp

    example = torch.zeros(1, 3, size, size)
    dense_macs, _ = tp.utils.count_ops_and_params(net, example)
    pruner = tp.pruner.MetaPruner(
        net, example, importance=tp.importance.BNScaleImportance(),
        global_pruning=True, pruning_ratio=ratio, round_to=round_to,
        ignored_layers=[net[-1]])
    pruner.step()
    macs, _ = tp.utils.count_ops_and_params(net, example)
    return macs / dense_macs


def torch_gamma_kept(net, gammas):
    """Share of the summed |gamma| (every BatchNormalization) Torch-Pruning
    kept: each surviving gamma is matched to its original by value."""
    from torch import nn

    kept = 0.0
    for bn in net.modules():
        if isinstance(bn, nn.BatchNorm2d):
            survivors = bn.weight.detach().numpy()
            if not np.isin(survivors, gammas[bn.keras_name]).all():
                raise RuntimeError(f"A gamma of {bn.keras_name} changed.")
            kept += float(np.abs(survivors).sum())
    return kept / float(sum(np.abs(g).sum() for g in gammas.values()))


def knapsack_plans(model, share, args):
    """The latency-aware knapsack at MAC share `share`, on an ONNX Runtime
    latency table (plain and/or calibrated), once per `--normalize`."""
    if not args.latency_aware:
        return []
    start = time.perf_counter()
    tables = knapsack_tables(
        model, keras_slim.ONNXRuntime(threads=args.table_threads),
        args.latency_aware, plans=args.table_plans, round_to=args.round_to,
        memory=args.memory, scan=False)
    print(f"ONNX Runtime latency table at {args.table_threads} thread(s): "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    found = []
    for (label, table), normalize in itertools.product(tables.items(),
                                                       args.normalize):
        plan = plan_for_budget(
            model, "latency_aware", macs=share, cost="latency", table=table,
            confirm=False, round_to=args.round_to,
            normalize=None if normalize == "none" else normalize).plan
        if normalize != "none":
            label += f" {normalize}"
        print(f"{label}: predicted {table.predict(plan_widths(plan)):.2f} ms "
              f"of {table.predict({}):.2f}", flush=True)
        found.append((label, plan))
    return found


# -- timing -----------------------------------------------------------------


def time_rounds(paths, rounds, threads, warmup=5):
    """Milliseconds per round per model, ONNX Runtime, interleaved."""
    sessions = [session(p, num_threads=threads, spinning=False) for p in paths]
    rng = np.random.default_rng(0)
    feeds = [random_feed(s, rng) for s in sessions]
    for s, feed in zip(sessions, feeds):
        for _ in range(warmup):
            s.run(None, feed)
    times = np.zeros((rounds, len(paths)))
    for r in range(rounds):
        order = range(len(paths)) if r % 2 == 0 else reversed(range(len(paths)))
        for i in order:
            start = time.perf_counter()
            sessions[i].run(None, feeds[i])
            times[r, i] = (time.perf_counter() - start) * 1e3
    return times


def measure(name, args):
    """Prune the network `name` both ways and time the slim models."""
    keras_net, torch_net = NETWORKS[name]
    keras.utils.set_random_seed(0)
    model = keras_net(args.size)
    rng = np.random.default_rng(0)
    gammas = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gammas[layer.name] = rng.uniform(
                size=layer.gamma.shape).astype("float32")
            layer.gamma.assign(gammas[layer.name])
    net = torch_net(model)
    difference = check_same(model, net, args.size)
    print(f"{name}, same network: the logits differ by {difference:.1e} of "
          "the largest", flush=True)
    if difference > 1e-4:
        raise SystemExit(f"The two {name}s compute different functions.")
    share = torch_pruning_default(net, args.size, args.ratio, args.round_to)
    rows = [("Torch-Pruning default", share, torch_gamma_kept(net, gammas))]
    graph = ChannelGraph(model)
    dense_macs = keras_slim.count_macs(model)
    slims = []

    def add(label, plan):
        slims.append(keras_slim.slim_model(model, plan))
        rows.append((f"keras_slim {label}",
                     keras_slim.count_macs(slims[-1]) / dense_macs,
                     importance_kept(graph, plan, reduction="sum")))

    floors = width_floors(args)
    for round_to, normalize, reduction, (suffix, floor) in itertools.product(
            args.slim_round_to or [args.round_to], args.normalize,
            args.reduction, floors):
        label = reduction if normalize == "none" else \
            f"{reduction}/{normalize}"
        if round_to != args.round_to:
            label += f" r{round_to}"
        try:
            plan = plan_for_budget(
                model, "global_gamma", macs=share, round_to=round_to,
                reduction=reduction,
                normalize=None if normalize == "none" else normalize,
                **floor).plan
        except ValueError as error:  # a floor that cannot reach the MACs
            if not floor:
                raise
            print(f"keras_slim {label + suffix}: skipped, {error}")
            continue
        add(label + suffix, plan)
    for label, plan in knapsack_plans(model, share, args):
        add(label, plan)
    with tempfile.TemporaryDirectory() as folder:
        import torch

        paths = [os.path.join(folder, "torch_pruning.onnx")]
        with warnings.catch_warnings():  # the TorchScript exporter's notice
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(net, (torch.zeros(1, 3, args.size, args.size),),
                              paths[0], dynamo=False, opset_version=17)
        for index, slim in enumerate(slims):
            paths.append(export(slim, os.path.join(folder, f"{index}.onnx"),
                                format="onnx").path)
        results = {t: time_rounds(paths, args.rounds, t) for t in args.threads}
    print(f"\n{name} (torchvision layout) at {args.size} px, ratio "
          f"{args.ratio}, round_to {args.round_to}, {args.rounds} paired "
          f"rounds, ONNX Runtime, {os.cpu_count()} CPUs")
    header = (f"{'plan':<26} {'MAC share':>9} {'gamma kept':>10} "
              + " ".join(f"{f'ms {t}t':>8} {f'wins {t}t':>8}"
                         for t in args.threads))
    print(header)
    print("-" * len(header))
    for i, (label, macs, kept) in enumerate(rows):
        cells = []
        for t in args.threads:
            times = results[t]
            wins = "-" if i == 0 else f"{np.mean(times[:, i] < times[:, 0]):.2f}"
            cells.append(f"{np.median(times[:, i]):8.2f} {wins:>8}")
        print(f"{label:<26} {macs:9.3f} {kept:10.3f} " + " ".join(cells))
    print("(wins = share of rounds in which the plan ran faster than "
          "Torch-Pruning's; gamma kept = share of the summed |gamma| of "
          "every BatchNormalization kept)\n", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50"],
                        choices=sorted(NETWORKS))
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--round-to", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reduction", nargs="+", default=["max", "mean", "sum"])
    parser.add_argument("--normalize", nargs="+", default=["none"])
    parser.add_argument("--slim-round-to", type=int, nargs="+", default=None,
                        help="keras_slim's round_to values (default: "
                             "--round-to, Torch-Pruning's)")
    add_floor_arguments(parser)
    parser.add_argument("--latency-aware", nargs="+", default=[],
                        choices=("plain", "calibrated"),
                        help="also the latency-aware knapsack at the same "
                             "MACs, on a plain and/or calibrated ONNX "
                             "Runtime latency table")
    parser.add_argument("--table-threads", type=int, default=1,
                        help="--latency-aware: the table's threads")
    parser.add_argument("--table-plans", type=int, default=24,
                        help="--latency-aware calibrated: random slim "
                             "models timed end to end for the fit")
    parser.add_argument("--memory", action="store_true",
                        help="--latency-aware: the table also prices merges, "
                             "pooling and padding")
    args = parser.parse_args()
    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        raise SystemExit("benchmarks/peer.py needs Torch-Pruning: "
                         "pip install torch-pruning==1.6.1") from None
    for name in args.models:
        measure(name, args)


if __name__ == "__main__":
    main()
