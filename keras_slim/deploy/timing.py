"""Running exported files: the LiteRT interpreter, timing of TFLite and ONNX
files, progress.

Needs LiteRT (`ai_edge_litert`) for TFLite, ONNX Runtime for ONNX; the core
of keras_slim imports only Keras and NumPy.
"""

import contextlib
import dataclasses
import os
import statistics
import sys
import time

import numpy as np

__all__ = [
    "dequantize",
    "Latency",
    "ordered_outputs",
    "ProgressLine",
    "quantize",
    "quiet_native_output",
    "TFLiteModel",
    "time_tflite",
]


@contextlib.contextmanager
def quiet_native_output():
    """Silence what the converter's C++ code writes to stderr."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _interpreter(path_or_bytes, num_threads=None):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "Running TFLite files needs the LiteRT interpreter: "
            "pip install ai-edge-litert"
        ) from None
    if num_threads is not None and (
        not isinstance(num_threads, int) or isinstance(num_threads, bool)
        or num_threads < 1
    ):
        raise ValueError(
            "Expected `num_threads` to be an integer >= 1 or None. "
            f"Received: num_threads={num_threads!r}"
        )
    if isinstance(path_or_bytes, (bytes, bytearray)):
        with quiet_native_output():
            return Interpreter(model_content=bytes(path_or_bytes),
                               num_threads=num_threads)
    path = os.fspath(path_or_bytes)
    if not os.path.isfile(path):
        raise ValueError(f"No TFLite file at {path!r}.")
    try:
        with quiet_native_output():
            return Interpreter(model_path=path, num_threads=num_threads)
    except ValueError as error:
        raise ValueError(
            f"{path!r} is not a TFLite model: {str(error).splitlines()[0]}"
        ) from None


def ordered_outputs(outputs):
    """Exported outputs (a dict by name) in the order Keras flattens them:
    `output_0, output_1, ...` by number, other names sorted."""
    names = list(outputs)
    if all(n.startswith("output_") and n[7:].isdigit() for n in names):
        names.sort(key=lambda n: int(n[7:]))
    else:
        names.sort()
    return [np.asarray(outputs[n], dtype="float64") for n in names]


class TFLiteModel:
    """A TFLite file loaded in the LiteRT interpreter, called like a model.

    Inputs are float arrays; the inputs of an int8 model are quantized and
    its outputs dequantized, so that results compare with Keras.

    Args:
        path_or_bytes: a `.tflite` path or the flatbuffer bytes.
        num_threads: interpreter threads (`None`: LiteRT's default).

    Raises:
        ValueError: no such file, or not a TFLite model.
    """

    def __init__(self, path_or_bytes, num_threads=None):
        self.interpreter = _interpreter(path_or_bytes, num_threads)
        with quiet_native_output():  # "Created ... XNNPACK delegate"
            self.runner = self.interpreter.get_signature_runner()
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()

    def __call__(self, inputs, names=None):
        """Float outputs for `inputs`, a list of arrays in the order of
        `names` (the model's input names; optional for one input)."""
        if names is None:
            if len(self.inputs) != 1:
                raise ValueError(
                    f"The model has {len(self.inputs)} inputs "
                    f"({sorted(self.inputs)}); pass `names`."
                )
            names = list(self.inputs)
        unknown = [n for n in names if n not in self.inputs]
        if unknown:
            raise ValueError(
                f"`names` {unknown} are not inputs of the TFLite model; its "
                f"inputs are {sorted(self.inputs)}."
            )
        feed = {name: quantize(array, self.inputs[name])
                for name, array in zip(names, inputs)}
        with quiet_native_output():  # the first call creates the delegate
            results = self.runner(**feed)
        return ordered_outputs({
            name: dequantize(value, self.outputs[name])
            for name, value in results.items()
        })


def quantize(array, detail):
    """A float array in the dtype of a tensor (quantized when integer)."""
    scale, zero = detail["quantization"]
    if not np.issubdtype(detail["dtype"], np.integer) or not scale:
        return np.asarray(array, dtype=detail["dtype"])
    info = np.iinfo(detail["dtype"])
    values = np.round(np.asarray(array) / scale + zero)
    return np.clip(values, info.min, info.max).astype(detail["dtype"])


def dequantize(array, detail):
    """The float values of a (possibly quantized) tensor."""
    scale, zero = detail["quantization"]
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer) and scale:
        return (array.astype("float64") - zero) * scale
    return array


class ProgressLine:
    """One status line for multi-step work: `[2/3] converting ...`.

    On a terminal each step overwrites the last; otherwise one line a step.

    Args:
        steps: number of steps.
        verbose: whether to print at all.
    """

    def __init__(self, steps, verbose=True):
        self.steps = steps
        self.count = 0
        self.verbose = bool(verbose)
        self.width = 0
        self.tty = sys.stdout.isatty()

    def write(self, text, final=False):
        if not self.verbose:
            return
        if self.tty:
            sys.stdout.write("\r" + text.ljust(self.width))
            self.width = max(self.width, len(text))
            if final:
                sys.stdout.write("\n")
        else:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def update(self, message):
        """A transient status: shown on a terminal only."""
        if self.tty:
            self.write(message)

    def step(self, message):
        self.count += 1
        self.write(f"[{self.count}/{self.steps}] {message} ...")

    def done(self, message):
        self.write(f"[done] {message}", final=True)


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


def _check_count(value, argument, minimum):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(
            f"Expected `{argument}` to be an integer >= {minimum}. "
            f"Received: {argument}={value!r}"
        )


def _is_onnx(path):
    return isinstance(path, (str, os.PathLike)) and \
        os.fspath(path).lower().endswith(".onnx")


def _tflite_invoker(path, num_threads, rng):
    interpreter = _interpreter(path, num_threads)
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
    from keras_slim.deploy.onnx_export import random_feed, session

    # Without spinning: the idle threads of one session would otherwise
    # spin through the next session's turn (3 MobileNetV2 sessions at 2
    # threads timed in turns measured 15 ms each spinning, 3 ms not).
    onnx_session = session(path, num_threads, spinning=False)
    try:
        feed = random_feed(onnx_session, rng)
    except ValueError as error:
        raise ValueError(f"{path!r}: {error}") from None
    return lambda: onnx_session.run(None, feed)


def time_tflite(paths, runs=50, warmup=5, num_threads=None, seed=0,
                verbose=False):
    """Latency of TFLite (LiteRT) and ONNX (ONNX Runtime) files, timed in
    one run, interleaved.

    A path ending in `.onnx` runs in ONNX Runtime, anything else (or
    flatbuffer bytes) in LiteRT, so the two runtimes compare side by side.
    Each file gets random inputs (batch 1). After `warmup` untimed
    invokes of each, the files take turns, one invoke each per round, the
    order reversed every other round, so that a change in the machine's
    load hits them all alike. ONNX Runtime's threads do not spin while
    idle here, so that one session's threads leave the CPU to the next.

    Args:
        paths: `.tflite` or `.onnx` paths (or TFLite flatbuffer bytes).
        runs: timed invokes per file.
        warmup: untimed invokes per file first.
        num_threads: interpreter threads (`None`: the runtime's default).
        seed: seed of the random inputs.
        verbose: show a progress line.

    Returns:
        A list of `Latency`, in the order of `paths`.

    Raises:
        ValueError: a missing or invalid file, a bad count, or inputs of
            unknown size.
    """
    _check_count(runs, "runs", 1)
    _check_count(warmup, "warmup", 0)
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
            start = time.perf_counter()
            invokers[i]()
            times[i].append(time.perf_counter() - start)
        if (round_ + 1) % step == 0:
            progress.update(f"timing {len(paths)} model(s): "
                            f"round {round_ + 1}/{runs}")
    progress.done(f"timed {len(paths)} model(s), {runs} interleaved runs "
                  f"each after {warmup} warm-up runs")
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


# Both runtimes: the name says what `keras-slim bench` does.
time_files = time_tflite
