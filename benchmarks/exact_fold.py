"""What exact folding costs: MACs and TFLite latency, exact against bias.

`fold="exact"` keeps one carrier channel per group (and pattern) where a
cut constant channel meets a zero border; `fold="bias"` keeps none and is
exact only away from the borders. This script slims each model both ways
from the same plan and prints, in one run:

- the MACs and parameters of both slim models and their ratio (exact/bias);
- their TFLite latency (LiteRT, batch 1), timed interleaved, and the ratio;
- the largest output error of each against the sparse model (relative to
  the largest output magnitude), which is what the carrier buys.

Models: the demo's digits ConvNet (`examples.demo.build_model`, "valid"
padding), the same ConvNet with "same" padding, and ResNet-20 for CIFAR
(`recipes.models.resnet20`). Each gets random BatchNormalization statistics
and a dead share of every prunable group (gamma zero, beta kept, as after
ISTA: about 77% on the digits ConvNet, 60% on ResNet-20).

    python benchmarks/exact_fold.py [--runs 300] [--warmup 20] [--threads 1]
"""

import argparse
import os
import tempfile

import _bootstrap  # noqa: F401  (first: see there)
import keras
import numpy as np

import keras_slim
from examples.demo import build_model
from keras_slim.deploy.export import export
from keras_slim.deploy.timing import time_model_files
from recipes.models import resnet20

L = keras.layers


def digits_same(widths=(32, 64, 64)):
    x = inputs = keras.Input((8, 8, 1), name="digit")
    for i, width in enumerate(widths):
        x = L.Conv2D(width, 3, padding="same", use_bias=False,
                     name=f"conv{i + 1}")(x)
        x = L.BatchNormalization(name=f"bn{i + 1}")(x)
        x = L.ReLU(name=f"relu{i + 1}")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, L.Dense(10, name="logits")(x),
                       name="digits_same")


def sparsify(model, share, rng):
    """Random BN statistics; gamma zero on `share` of each prunable group."""
    bns = {}
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            bns[layer.name] = layer
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
            layer.beta.assign(rng.normal(0, 0.5, n))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, n))
    for group in keras_slim.channel_groups(model):
        if not group.prunable or not group.batchnorms:
            continue
        if not all(bns[b].scale for b in group.batchnorms):
            continue
        dead = rng.permutation(group.width)[: int(share * group.width)]
        for name, matrix in group.bn_positions.items():
            gamma = keras.ops.convert_to_numpy(bns[name].gamma)
            gamma[matrix[dead].ravel()] = 0
            bns[name].gamma.assign(gamma)


def error(model, slim, x):
    a = keras.ops.convert_to_numpy(model(x, training=False))
    b = keras.ops.convert_to_numpy(slim(x, training=False))
    return float(np.abs(a - b).max() / np.abs(a).max())


def measure(name, model, share, args, directory):
    rng = np.random.default_rng(0)
    sparsify(model, share, rng)
    plan = keras_slim.plan_zero_gamma(model)
    slims = {fold: keras_slim.slim_model(model, plan, fold=fold)
             for fold in ("bias", "exact")}
    x = rng.normal(size=(8,) + tuple(model.input_shape[1:])).astype("float32")
    paths = []
    for fold, slim in slims.items():
        path = os.path.join(directory, f"{name}_{fold}.tflite")
        paths.append(export(slim, path, check=True).path)
    bias_ms, exact_ms = time_model_files(
        paths, runs=args.runs, warmup=args.warmup, num_threads=args.threads)
    row = {"model": name}
    for fold, slim in slims.items():
        row[f"{fold}_macs"] = keras_slim.count_macs(slim)
        row[f"{fold}_params"] = keras_slim.count_params(slim)
        row[f"{fold}_error"] = error(model, slim, x)
    row["dense_macs"] = keras_slim.count_macs(model)
    row["bias_ms"], row["exact_ms"] = bias_ms.median_ms, exact_ms.median_ms
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    models = [
        ("digits (demo, valid)", build_model(), 0.77),
        ("digits (same)", digits_same(), 0.77),
        ("ResNet-20", resnet20(), 0.6),
    ]
    with tempfile.TemporaryDirectory() as directory:
        rows = [measure(n, m, s, args, directory) for n, m, s in models]
    print(f"{'model':22} {'dense MACs':>11} {'bias MACs':>10} "
          f"{'exact MACs':>10} {'MACs x':>7} {'params x':>8} "
          f"{'bias ms':>8} {'exact ms':>8} {'ms x':>6} "
          f"{'bias err':>9} {'exact err':>9}")
    for r in rows:
        print(f"{r['model']:22} {r['dense_macs']:11,d} {r['bias_macs']:10,d} "
              f"{r['exact_macs']:10,d} "
              f"{r['exact_macs'] / r['bias_macs']:7.3f} "
              f"{r['exact_params'] / r['bias_params']:8.3f} "
              f"{r['bias_ms']:8.4f} {r['exact_ms']:8.4f} "
              f"{r['exact_ms'] / r['bias_ms']:6.3f} "
              f"{r['bias_error']:9.2e} {r['exact_error']:9.2e}")


if __name__ == "__main__":
    main()
