"""How long slim_model takes against a plain clone of the same model.

Goal (issue 2): slimming ResNet152 costs at most 3x a plain
`keras.models.clone_model` + `set_weights`. Both are timed in the same run,
interleaved, after a warm-up; the ratio of medians is printed.

    python benchmarks/slim_speed.py [--model ResNet152] [--repeats 3]
"""

import argparse
import statistics
import time

import _bootstrap  # noqa: F401  (first: see there)
import keras
import numpy as np

import keras_slim


def kill_half_of_every_group(model, rng):
    layers = {layer.name: layer for layer in model.layers}
    for group in keras_slim.channel_groups(model):
        if not group.prunable or not group.batchnorms:
            continue
        dead = rng.permutation(group.width)[: group.width // 2]
        for name, matrix in group.bn_positions.items():
            gamma = keras.ops.convert_to_numpy(keras.ops.copy(layers[name].gamma))
            gamma[matrix[dead].ravel()] = 0.0
            layers[name].gamma.assign(gamma)


def clone(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def slim(model):
    return keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model))


def slim_nothing(model):
    return keras_slim.slim_model(model, keras_slim.PruningPlan({}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ResNet152")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = getattr(keras.applications, args.model)(
        weights=None, input_shape=(args.size, args.size, 3)
    )
    kill_half_of_every_group(model, np.random.default_rng(0))
    clone(model), slim(model), slim_nothing(model)  # warm-up
    times = {"clone": [], "slim": [], "empty": []}
    for _ in range(args.repeats):
        for name, fn in (("clone", clone), ("slim", slim),
                         ("empty", slim_nothing)):
            start = time.perf_counter()
            fn(model)
            times[name].append(time.perf_counter() - start)
    result = slim(model)
    clone_s = statistics.median(times["clone"])
    slim_s = statistics.median(times["slim"])
    empty_s = statistics.median(times["empty"])
    print(f"model            {args.model} at {args.size}x{args.size}")
    print(f"params           {model.count_params():,} -> {result.count_params():,}")
    print(f"clone+set_weights {clone_s:6.2f} s (median of {args.repeats})")
    print(f"plan+slim_model   {slim_s:6.2f} s (median of {args.repeats})")
    print(f"slim_model, empty plan {empty_s:6.2f} s (full-width rebuild)")
    print(f"ratio slim/clone  {slim_s / clone_s:6.2f}  (goal <= 3.00)")
    print(f"ratio empty/clone {empty_s / clone_s:6.2f}")


if __name__ == "__main__":
    main()
