"""`make demo`: ISTA, slim, fine-tune and deploy a ConvNet on digits.

On scikit-learn's bundled handwritten digits (8 x 8, no download):

1. train a small BatchNormalization ConvNet (the dense model);
2. continue with ISTA on the gammas (Ye et al., 2018), which drives whole
   channels to an exact zero gamma;
3. cut those channels with `plan_zero_gamma` + `slim_model` and fine-tune;
4. export both models to TFLite (parity-checked) and time them, interleaved;
5. print one table (params, MACs, test accuracy, TFLite size and latency,
   dense against slim) and write a report page with plots (the gammas of
   the sparse-trained model, whose zeros were cut, against the slim one's).

    python -m examples.demo [--out demo_output] [--quick]
"""

import argparse
import dataclasses
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from examples.digits import load_digits  # noqa: E402
from keras_slim.core import copying  # noqa: E402
from keras_slim.core.counting import count_macs, count_params  # noqa: E402
from keras_slim.core.files import atomic_path  # noqa: E402
from keras_slim.core.surgery import slim_model  # noqa: E402
from keras_slim.deploy.export import export  # noqa: E402
from keras_slim.deploy.timing import time_model_files  # noqa: E402
from keras_slim.planners.criteria import plan_zero_gamma  # noqa: E402
from keras_slim.sparsity.ista_callback import ISTAGamma  # noqa: E402
from keras_slim.tools.report import report  # noqa: E402
from keras_slim.tools.summary import format_table, human  # noqa: E402

L = keras.layers


@dataclasses.dataclass
class Config:
    """The demo's knobs; the defaults are the `make demo` run."""

    widths: tuple = (32, 64, 64)
    batch_size: int = 64
    dense_epochs: int = 15
    dense_learning_rate: float = 0.05
    ista_epochs: int = 15
    ista_learning_rate: float = 0.01
    rho: float = 1.0
    fine_tune_epochs: int = 10
    fine_tune_learning_rate: float = 0.01
    latency_runs: int = 300
    seed: int = 0
    out: str = "demo_output"
    # Keras progress bars on a terminal, one line per epoch in a log.
    verbose: int = dataclasses.field(
        default_factory=lambda: 1 if sys.stdout.isatty() else 2
    )


def build_model(widths=(32, 64, 64)):
    """A small ConvNet for 8 x 8 x 1 digits: conv-BN-ReLU blocks.

    "valid" padding, so that the constant output of a zeroed channel (its
    beta through ReLU) folds exactly into the next layer.
    """
    x = inputs = keras.Input((8, 8, 1), name="digit")
    for i, width in enumerate(widths):
        x = L.Conv2D(width, 3, use_bias=False, name=f"conv{i + 1}")(x)
        x = L.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(x)
        x = L.ReLU(name=f"relu{i + 1}")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    outputs = L.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="digits_convnet")


def compile_model(model, learning_rate, epochs, examples, batch_size,
                  decay=True):
    """SGD with momentum 0.9; the learning rate decays along a cosine unless
    `decay` is False."""
    schedule = learning_rate
    if decay:
        steps = max(1, epochs * -(-examples // batch_size))
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(
        keras.optimizers.SGD(schedule, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def accuracy(model, x, y):
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def _stage(number, message):
    print(f"\n[{number}/5] {message}", flush=True)


def run(config=None, data=None):
    """Run the demo; returns a dict of the measured numbers.

    Args:
        config: a `Config` (defaults: the full `make demo` run).
        data: `((x_train, y_train), (x_test, y_test))` to use instead of
            the digits.

    Returns:
        dict with `dense` and `slim` entries (params, MACs, accuracy,
        size in bytes, latency in ms), `zero_fraction`, `report` (the
        page's path) and `table` (the printed table).
    """
    config = config or Config()
    start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    (x_train, y_train), (x_test, y_test) = data or load_digits(seed=config.seed)
    examples = len(x_train)
    fit = {"batch_size": config.batch_size, "verbose": config.verbose}
    os.makedirs(config.out, exist_ok=True)

    _stage(1, f"training the dense ConvNet ({config.dense_epochs} epochs, "
              f"{examples} digits)")
    dense = build_model(config.widths)
    compile_model(dense, config.dense_learning_rate, config.dense_epochs,
                  examples, config.batch_size)
    dense.fit(x_train, y_train, epochs=config.dense_epochs, **fit)

    _stage(2, f"ISTA on the BatchNormalization gammas (rho={config.rho}, "
              f"{config.ista_epochs} epochs)")
    sparse = copying.clone_model(dense)
    # ISTA's threshold is lr * rho: a constant learning rate keeps the
    # pressure on the gammas steady, so the zero set grows epoch after
    # epoch; the fine-tuning below decays it.
    compile_model(sparse, config.ista_learning_rate, config.ista_epochs,
                  examples, config.batch_size, decay=False)
    ista = ISTAGamma(config.rho)
    history = sparse.fit(x_train, y_train, epochs=config.ista_epochs,
                         callbacks=[ista], **fit)
    zero_fraction = float(history.history["gamma_zero_fraction"][-1])

    _stage(3, f"cutting the channels whose gamma is zero "
              f"({zero_fraction:.0%} of them), fine-tuning "
              f"({config.fine_tune_epochs} epochs)")
    plan = plan_zero_gamma(sparse)
    slim = slim_model(sparse, plan)
    compile_model(slim, config.fine_tune_learning_rate,
                  config.fine_tune_epochs, examples, config.batch_size)
    if config.fine_tune_epochs:
        slim.fit(x_train, y_train, epochs=config.fine_tune_epochs, **fit)
    for name, model in (("dense", dense), ("sparse", sparse), ("slim", slim)):
        with atomic_path(os.path.join(config.out, f"{name}.keras")) as path:
            model.save(path)

    _stage(4, "exporting both to TFLite and timing them")
    paths = []
    for name, model in (("dense", dense), ("slim", slim)):
        path = os.path.join(config.out, f"{name}.tflite")
        paths.append(export(model, path, representative_data=x_test[:64],
                            verbose=config.verbose > 0).path)
    latency = time_model_files(paths, runs=config.latency_runs, warmup=20,
                               num_threads=1, verbose=config.verbose > 0)

    _stage(5, "writing the report")
    numbers = {}
    for name, model, lat, path in zip(("dense", "slim"), (dense, slim),
                                      latency, paths):
        numbers[name] = {
            "params": count_params(model),
            "macs": count_macs(model),
            "accuracy": accuracy(model, x_test, y_test),
            "size": os.path.getsize(path),
            "latency_ms": lat.median_ms,
        }
    d, s = numbers["dense"], numbers["slim"]
    speedup = d["latency_ms"] / s["latency_ms"]
    metrics = [
        ("test accuracy", f"{d['accuracy']:.1%}", f"{s['accuracy']:.1%}",
         f"{100 * (s['accuracy'] - d['accuracy']):+.1f} points"),
        ("TFLite size", human(d["size"]) + "B", human(s["size"]) + "B",
         f"{s['size'] / d['size'] - 1:+.1%}"),
        ("TFLite latency", f"{1000 * d['latency_ms']:.1f} us",
         f"{1000 * s['latency_ms']:.1f} us", f"{speedup:.2f}x faster"),
    ]
    # The gamma histogram shows the sparse-trained model: its zeros are the
    # channels cut.
    page = report(dense, slim, os.path.join(config.out, "report.html"),
                  metrics=metrics, title="keras_slim demo: digits",
                  sparse=sparse).page
    rows = [
        ["params", f"{d['params']:,}", f"{s['params']:,}",
         f"{s['params'] / d['params'] - 1:+.1%}"],
        ["MACs", f"{d['macs']:,}", f"{s['macs']:,}",
         f"{s['macs'] / d['macs'] - 1:+.1%}"],
    ] + [list(m) for m in metrics]
    table = format_table(["", "dense", "slim", "change"], rows, "<>>>")
    print()
    print(table)
    print(f"\nTFLite latency: median of {config.latency_runs} interleaved "
          "runs, 1 thread, batch 1. "
          f"Channels cut: {sum(plan.widths[n] - len(k) for n, k in plan.kept.items())}"
          f" of {sum(config.widths)}.")
    print(f"Report: {page}")
    print(f"Done in {time.perf_counter() - start:.0f} s.")
    return {"dense": d, "slim": s, "zero_fraction": zero_fraction,
            "report": page, "table": table, "plan": plan}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default="demo_output",
                        help="folder for the models, TFLite files and report")
    parser.add_argument("--rho", type=float, default=Config.rho)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run(Config(out=args.out, rho=args.rho, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
