"""Timing TFLite (LiteRT) and ONNX (ONNX Runtime) files side by side:
`time_model_files` and the `Latency` it measures.

Needs LiteRT (`ai_edge_litert`) for TFLite, ONNX Runtime for ONNX, imported
when a file is timed; the core of keras_slim imports only Keras and NumPy.
"""

import dataclasses
import os
import statistics
import time

import numpy as np

from keras_slim.deploy import onnx_export
from keras_slim.deploy.console import ProgressLine, quiet_native_output
from keras_slim.deploy.tflite import litert_interpreter, quantize

__all__ = ["check_count", "Latency", "time_model_files"]


@dataclasses.dataclass
class Latency:
    """Measured latency of one TFLite file (milliseconds per invoke).

    Attributes:
        path: the file.
        median_ms: median over the timed runs.
        p10_ms, p90_ms: the 10th and 90th percentiles.
        runs: number of timed invokes.
        threads: interpreter threads (`None`: LiteRT's default).
    """

    path: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    threads: object


def check_count(value, argument, minimum):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(
            f"Expected `{argument}` to be an integer >= {minimum}. "
            f"Received: {argument}={value!r}"
        )


def _is_onnx(path):
    return isinstance(path, (str, os.PathLike)) and \
        os.fspath(path).lower().endswith(".onnx")


def _tflite_invoker(path, num_threads, rng):
    interpreter = litert_interpreter(path, num_threads)
    with quiet_native_output():
        interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        shape = detail["shape_signature"]
        if any(d < 0 for d in shape[1:]):
            raise ValueError(
                f"Input `{detail['name']}` of {path!r} has an unknown "
                f"size {tuple(shape)}; cannot time it."
            )
        values = rng.standard_normal(detail["shape"])
        interpreter.set_tensor(detail["index"], quantize(values, detail))
    return interpreter.invoke


def _onnx_invoker(path, num_threads, rng):
    # Without spinning: the idle threads of one session would otherwise
    # spin through the next session's turn (3 MobileNetV2 sessions at 2
    # threads timed in turns measured 15 ms each spinning, 3 ms not).
    onnx_session = onnx_export.session(path, num_threads, spinning=False)
    try:
        feed = onnx_export.random_feed(onnx_session, rng)
    except ValueError as error:
        raise ValueError(f"{path!r}: {error}") from None
    return lambda: onnx_session.run(None, feed)


def time_model_files(paths, runs=50, warmup=5, num_threads=None, seed=0,
                     verbose=False, turn_warmup=0):
    """Latency of TFLite (LiteRT) and ONNX (ONNX Runtime) files, timed in
    one run, interleaved.

    A path ending in `.onnx` runs in ONNX Runtime, anything else (or
    flatbuffer bytes) in LiteRT, so the two runtimes compare side by side.
    Each file gets random inputs (batch 1). After `warmup` untimed
    invokes of each, the files take turns, one invoke each per round, the
    order reversed every other round, so that a change in the machine's
    load hits them all alike. ONNX Runtime's threads do not spin while
    idle here, so that one session's threads leave the CPU to the next.

    Taking turns, each timed invoke finds the caches holding the other
    files' weights and buffers: when the files together outgrow the last
    level cache, every file is timed cold. `turn_warmup=1` invokes each file
    once, untimed, just before each of its timed invokes, so that it is
    timed as a model that runs call after call is (warm), while a change in
    load still hits every file alike. Cold timing penalizes a model for its
    parameters beside its MACs (MobileNetV2 at 160 px, 28 files in turns,
    1 thread: the default global gamma at 0.5 realized 0.88 of its MAC cut
    timed cold, 0.98-1.01 in four runs timed warm; `docs/benchmarks.md`,
    "Timed warm").

    Args:
        paths: `.tflite` or `.onnx` paths (or TFLite flatbuffer bytes).
        runs: timed invokes per file.
        warmup: untimed invokes per file first.
        num_threads: interpreter threads (`None`: the runtime's default).
        seed: seed of the random inputs.
        verbose: show a progress line.
        turn_warmup: untimed invokes of a file just before each of its
            timed ones (0: timed in turns as they come).

    Returns:
        A list of `Latency`, in the order of `paths`.

    Raises:
        ValueError: a missing or invalid file, a bad count, or inputs of
            unknown size.
    """
    check_count(runs, "runs", 1)
    check_count(warmup, "warmup", 0)
    check_count(turn_warmup, "turn_warmup", 0)
    if isinstance(paths, (str, bytes, os.PathLike)) or not len(paths):
        raise ValueError(
            "Expected `paths` to be a non-empty list of TFLite or ONNX "
            f"files. Received: paths={paths!r}"
        )
    rng = np.random.default_rng(seed)
    invokers = [
        (_onnx_invoker if _is_onnx(path) else _tflite_invoker)(
            path, num_threads, rng)
        for path in paths
    ]
    progress = ProgressLine(1, verbose)
    for _ in range(warmup):
        for invoke in invokers:
            invoke()
    times = [[] for _ in invokers]
    order = list(range(len(invokers)))
    step = max(1, runs // 20)
    for round_ in range(runs):
        for i in order if round_ % 2 == 0 else order[::-1]:
            for _ in range(turn_warmup):
                invokers[i]()
            start = time.perf_counter()
            invokers[i]()
            times[i].append(time.perf_counter() - start)
        if (round_ + 1) % step == 0:
            progress.update(f"timing {len(paths)} model(s): "
                            f"round {round_ + 1}/{runs}")
    progress.done(f"timed {len(paths)} model(s), {runs} interleaved runs "
                  f"each after {warmup} warm-up runs"
                  + (f", {turn_warmup} untimed before each" if turn_warmup
                     else ""))
    results = []
    for path, samples in zip(paths, times):
        ms = np.asarray(samples) * 1000.0
        results.append(Latency(
            path=os.fspath(path) if isinstance(path, (str, os.PathLike))
            else "<bytes>",
            median_ms=float(statistics.median(ms)),
            p10_ms=float(np.percentile(ms, 10)),
            p90_ms=float(np.percentile(ms, 90)),
            runs=runs,
            threads=num_threads,
        ))
    return results
