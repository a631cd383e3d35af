"""Step-time overhead of ISTAGamma on a ResNet-20-sized CIFAR model.

Two identical ResNet-20 models (He et al., 2016; 0.27M parameters, 19
BatchNormalization layers) train on synthetic 32x32x3 data, one with plain
`fit`, one with `fit(..., callbacks=[ISTAGamma(rho)])`. Their fits are
interleaved, alternating which goes first each round; a timing callback
records every step, the first `--warmup` steps of each fit (tracing,
including the retrace ISTAGamma triggers when it attaches its
constraints) are dropped. Then, with less noise, single steps
(`train_on_batch`) alternate between the plain model and the same model
with the constraints ISTAGamma uses (`attach_ista`), and the constraints
alone are timed in a compiled function. Ratios are medians of ratios of
neighbours in time (each round, each pair of steps), which cancels most of
the load of other processes on a shared machine; the goal is <= 1.05.

Runs on any Keras backend (`KERAS_BACKEND=jax python benchmarks/...`); the
prox alone is compiled as the backend compiles a step (`tf.function`,
`jax.jit`, eager PyTorch).

    python benchmarks/ista_overhead.py --rounds 6 --steps 6 --batch 128
"""

import argparse
import os
import time

import _bootstrap  # noqa: F401  (first: see there)
import keras
import numpy as np

from keras_slim.sparsity.ista import attach_ista
from keras_slim.sparsity.ista_callback import ISTAGamma

L = keras.layers


def conv_bn(x, filters, strides=1, relu=True):
    x = L.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                 kernel_regularizer=keras.regularizers.L2(1e-4))(x)
    x = L.BatchNormalization(momentum=0.9)(x)
    return L.ReLU()(x) if relu else x


def resnet20(classes=10):
    """ResNet-20 for CIFAR: 3 stages of 3 basic blocks, widths 16/32/64."""
    x = inputs = keras.Input((32, 32, 3))
    x = conv_bn(x, 16)
    for stage, width in enumerate((16, 32, 64)):
        for block in range(3):
            strides = 2 if stage > 0 and block == 0 else 1
            y = conv_bn(x, width, strides)
            y = conv_bn(y, width, relu=False)
            if strides != 1 or x.shape[-1] != width:
                x = L.Conv2D(width, 1, strides=strides, use_bias=False)(x)
                x = L.BatchNormalization(momentum=0.9)(x)
            x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(classes)(x), name="resnet20")


class StepTimer(keras.callbacks.Callback):
    def __init__(self, warmup):
        super().__init__()
        self.warmup = warmup
        self.times = []

    def on_train_begin(self, logs=None):
        self.seen = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])  # wait for the step
        elapsed = time.perf_counter() - self.start
        self.seen += 1
        if self.seen > self.warmup:
            self.times.append(elapsed)


def build(seed, learning_rate):
    keras.utils.set_random_seed(seed)
    model = resnet20()
    model.compile(
        keras.optimizers.SGD(learning_rate, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def fit_level(plain, ista, x, y, rounds, batch, warmup, rho):
    """Interleaved `fit` calls, one with ISTAGamma.

    Returns the step times of each and, per round, the ratio of the median
    ISTA step to the median plain step of that round (adjacent in time, so
    load from other processes mostly cancels).
    """
    timers = {"plain": StepTimer(warmup), "ista": StepTimer(warmup)}
    ratios = []
    for r in range(rounds):
        marks = {name: len(t.times) for name, t in timers.items()}
        order = ("plain", "ista") if r % 2 == 0 else ("ista", "plain")
        for name in order:
            callbacks = [timers[name]]
            if name == "ista":
                callbacks.insert(0, ISTAGamma(rho))
            model = plain if name == "plain" else ista
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0,
                      shuffle=False, callbacks=callbacks)
        new = {n: t.times[marks[n]:] for n, t in timers.items()}
        ratios.append(np.median(new["ista"]) / np.median(new["plain"]))
    return timers["plain"].times, timers["ista"].times, ratios


def step_level(plain, ista, x, y, pairs, batch, rho, attach=True):
    """Alternating single steps (`train_on_batch`), the ISTA model with
    `attach_ista`: the same constraints ISTAGamma attaches. With
    `attach=False` both are plain: the noise floor of the measurement."""
    handle = attach_ista(ista, rho) if attach else None
    times = {"plain": [], "ista": []}
    ratios = []
    batches = len(x) // batch
    for i in range(pairs + 2):
        order = ("plain", "ista") if i % 2 == 0 else ("ista", "plain")
        j = i % batches
        xb, yb = x[j * batch:(j + 1) * batch], y[j * batch:(j + 1) * batch]
        for name in order:
            model = plain if name == "plain" else ista
            start = time.perf_counter()
            float(model.train_on_batch(xb, yb))
            if i >= 2:  # the first two pairs trace and warm up
                times[name].append(time.perf_counter() - start)
        if i >= 2:
            ratios.append(times["ista"][-1] / times["plain"][-1])
    if handle is not None:
        handle.detach()
    return times["plain"], times["ista"], ratios


def _compiled(function):
    """`function` compiled the way this backend compiles a train step:
    `tf.function` on TensorFlow, `jax.jit` on JAX, eager on PyTorch."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function)
    if backend == "jax":
        import jax

        return jax.jit(function)
    return function


def prox_only(model, rho, repeats=200):
    """Milliseconds one step of the GammaProx constraints of every
    BatchNormalization costs in a compiled function, minus the same
    function returning the gammas unchanged."""
    handle = attach_ista(model, rho)
    constraints = [layer.gamma.constraint for layer in handle.layers]
    values = [keras.ops.convert_to_tensor(layer.gamma.value)
              for layer in handle.layers]
    prox = _compiled(lambda gammas: [c(g) for c, g in zip(constraints, gammas)])
    copy = _compiled(lambda gammas: [g + 0.0 for g in gammas])

    cost = {}
    for function in (prox, copy, prox, copy):
        keras.ops.convert_to_numpy(function(values)[-1])
        start = time.perf_counter()
        for _ in range(repeats):
            result = function(values)
        keras.ops.convert_to_numpy(result[-1])  # wait for the last one
        elapsed = (time.perf_counter() - start) / repeats * 1000
        cost[function] = min(cost.get(function, elapsed), elapsed)
    count = len(constraints)
    handle.detach()
    return max(cost[prox] - cost[copy], 0.0), count


def report(label, plain_times, ista_times, paired):
    plain_time, ista_time = np.median(plain_times), np.median(ista_times)
    ratio = float(np.median(paired))
    print(f"{label}: median step plain {plain_time * 1000:.1f} ms, with ISTA "
          f"{ista_time * 1000:.1f} ms ({len(plain_times)} and "
          f"{len(ista_times)} steps); ratio of medians "
          f"{ista_time / plain_time:.3f}; median of {len(paired)} paired "
          f"ratios {ratio:.3f}")
    return ratio


def run(rounds=6, steps=6, batch=128, warmup=2, rho=1e-3, pairs=20):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, steps * batch)
    schedule = keras.optimizers.schedules.CosineDecay(0.1, 10_000)
    plain, ista = build(0, schedule), build(0, schedule)
    print(f"Keras backend {keras.backend.backend()}; "
          f"ResNet-20: {plain.count_params():,} parameters, batch {batch}; "
          f"fit: {rounds} rounds of {steps} steps ({warmup} dropped each); "
          f"single steps: {pairs} pairs")
    plain_steps, ista_steps, paired = fit_level(
        plain, ista, x, y, rounds, batch, warmup, rho)
    fit_ratio = report("fit (ISTAGamma)", plain_steps, ista_steps, paired)
    step_ratio = report("train_on_batch (attach_ista)", *step_level(
        plain, ista, x, y, pairs, batch, rho))
    control = step_level(plain, ista, x, y, pairs, batch, rho, attach=False)
    report("train_on_batch, both plain (noise floor)", *control)
    low, high = np.percentile(control[2], [25, 75])
    print(f"  paired ratios of two plain models spread {low:.3f} to {high:.3f} "
          f"(quartiles); load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    prox_ms, count = prox_only(ista, rho)
    plain_ms = 1000 * float(np.median(plain_steps))
    prox_ratio = 1 + prox_ms / plain_ms
    print(f"GammaProx on {count} gammas alone: {prox_ms:.3f} ms a step, "
          f"{100 * prox_ms / plain_ms:.2f}% of a plain fit step")
    gammas = np.concatenate([
        keras.ops.convert_to_numpy(layer.gamma + 0)
        for layer in ista.layers if isinstance(layer, L.BatchNormalization)
    ])
    print(f"gamma zero fraction after ISTA: {np.mean(gammas == 0):.3f}")
    for label, ratio in (("fit", fit_ratio), ("single step", step_ratio),
                         ("in-graph prox", prox_ratio)):
        print(f"overhead ratio, {label}: {ratio:.3f} "
              f"(goal <= 1.05: {'met' if ratio <= 1.05 else 'NOT met'})")
    return fit_ratio, step_ratio, prox_ratio


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rho", type=float, default=1e-3)
    parser.add_argument("--pairs", type=int, default=20)
    args = parser.parse_args()
    run(args.rounds, args.steps, args.batch, args.warmup, args.rho, args.pairs)


if __name__ == "__main__":
    main()
