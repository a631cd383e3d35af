"""What `slim_model(..., verify=True)` costs against `slim_model` alone.

ResNet50 (`keras.applications`, `weights=None`, 224 x 224) with gammas
drawn from |N(0, 1)| and a global-gamma plan cutting half the channels.
Each variant runs `--repeats` times, interleaved, after one warm-up of each;
the script prints the median seconds and the ratio (verify / plain).

    python benchmarks/verify_cost.py [--size 224] [--repeats 3]
"""

import argparse
import time

import _bootstrap  # noqa: F401  (first: see there)
import keras
import numpy as np

import keras_slim


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ResNet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, args.model)(
        weights=None, input_shape=(args.size, args.size, 3))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(np.abs(rng.standard_normal(n)).astype("float32"))
    plan = keras_slim.plan_global_gamma(model, args.ratio)
    variants = {
        "slim_model": dict(),
        "slim_model(verify=True)": dict(verify=True, verify_tolerance=1e-3),
    }
    times = {name: [] for name in variants}
    for repeat in range(args.repeats + 1):
        for name, kwargs in variants.items():
            start = time.perf_counter()
            keras_slim.slim_model(model, plan, fold="none", **kwargs)
            if repeat:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    for name, seconds in medians.items():
        print(f"{name:26} {seconds:8.2f} s")
    ratio = medians["slim_model(verify=True)"] / medians["slim_model"]
    print(f"ratio verify / plain: {ratio:.2f}")


if __name__ == "__main__":
    main()
