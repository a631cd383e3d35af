"""The runtimes that time models for a latency budget, and their registry.

`Runtime` is the interface (`time(models) -> list of milliseconds`,
`info() -> dict`); `register_runtime` files a subclass under its `name` in
`RUNTIMES`, which the CLI's `--runtime`, `make_runtime` and
`runtime_from_info` (a saved latency table) read. `LiteRTRuntime` is the
default and `ONNXRuntime` the other built-in one. TensorFlow, LiteRT and
ONNX Runtime are imported only when a runtime converts or times a model.
"""

import importlib.util
import inspect
import os
import tempfile

from keras_slim.deploy.conversion_process import write_runtime_files
from keras_slim.deploy.tflite import tflite_flatbuffer
from keras_slim.deploy.timing import check_count, time_model_files

__all__ = [
    "RUNTIMES",
    "LiteRTRuntime",
    "ONNXRuntime",
    "Runtime",
    "check_litert",
    "check_onnxruntime",
    "make_runtime",
    "register_runtime",
    "runtime_from_info",
]


RUNTIMES = {}


class Runtime:
    """What a runtime offers a budget search: timing Keras models.

    A subclass sets `name`, overrides `time` (and `info` when it has more
    settings to record), takes `threads` and `batch` as keyword arguments,
    and is made known by name with `register_runtime`.

    Args:
        threads: threads the runtime may use (`None`: its default).
        batch: batch size of the timed inputs.
    """

    name = "runtime"

    def __init__(self, threads=None, batch=1):
        if threads is not None:
            check_count(threads, "threads", 1)
        check_count(batch, "batch", 1)
        self.threads, self.batch = threads, batch

    def time(self, models):
        """Median milliseconds per call of each model, timed in one run."""
        raise NotImplementedError

    def info(self):
        return {"name": self.name, "threads": self.threads,
                "batch": self.batch}


def register_runtime(cls):
    """Class decorator: file the `Runtime` subclass `cls` under `cls.name`.

    Registered, a runtime is a `--runtime` choice of `keras-slim prune`,
    made by `make_runtime(name, ...)`, and made again from a saved latency
    table's `info()`. A later registration of the same name replaces the
    earlier one.

    Example:

    >>> @keras_slim.register_runtime
    ... class MyRuntime(keras_slim.Runtime):
    ...     name = "mine"
    ...     def time(self, models):
    ...         return [my_timer(model) for model in models]
    """
    if not (isinstance(cls, type) and issubclass(cls, Runtime)):
        raise TypeError(
            "Expected `cls` to be a subclass of keras_slim.Runtime. "
            f"Received: cls={cls!r}"
        )
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(
            "Expected the runtime class to set `name` to a non-empty string "
            f"of its own. Received: {cls.__name__}.name={name!r}"
        )
    RUNTIMES[name] = cls
    return cls


def make_runtime(name, **options):
    """The registered runtime `name`, made with `options`; an option that is
    `None` is left to the runtime's default.

    Raises:
        ValueError: an unknown `name`.
        TypeError: an option the runtime does not take.
    """
    cls = RUNTIMES.get(name)
    if cls is None:
        raise ValueError(
            f"Expected `runtime` to be one of {', '.join(sorted(RUNTIMES))}. "
            f"Received: runtime={name!r}"
        )
    options = {key: value for key, value in options.items()
               if value is not None}
    try:
        inspect.signature(cls).bind(**options)
    except TypeError:
        taken = ", ".join(f"`{p}`" for p in inspect.signature(cls).parameters)
        raise TypeError(
            f"Runtime {name!r} ({cls.__name__}) takes {taken}. Received: "
            f"{', '.join(f'`{key}`' for key in options)}"
        ) from None
    return cls(**options)


def check_litert():
    """Raise an ImportError naming the fix when LiteRT is not installed."""
    missing = [m for m in ("ai_edge_litert", "tensorflow")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            "A latency budget is measured on a runtime, and LiteRT is not "
            f"installed (missing {', '.join(missing)}): pip install "
            "ai-edge-litert tensorflow, or pass `runtime=` (a "
            "keras_slim.planners.latency_table.Runtime)."
        )


def check_onnxruntime():
    """Raise an ImportError naming the fix when ONNX Runtime, or what
    converts models to ONNX (tf2onnx, onnx, TensorFlow), is not installed."""
    missing = [m for m in ("onnxruntime", "tf2onnx", "onnx", "tensorflow")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            "A latency budget on ONNX Runtime converts each model with "
            "tf2onnx and times it in ONNX Runtime, and "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "not installed: pip install keras-slim[onnx] (onnxruntime, "
            "tf2onnx, onnx; tensorflow too), or use the default "
            "`LiteRTRuntime`."
        )


class _TimedRuntime(Runtime):
    """A runtime that times files with `timing.time_model_files`: the options
    of the timing and the statistic taken; a subclass names the check that
    its packages are installed (`_check_installed`)."""

    def __init__(self, threads=None, batch=1, runs=30, warmup=5,
                 statistic="median"):
        super().__init__(threads, batch)
        check_count(runs, "runs", 1)
        check_count(warmup, "warmup", 0)
        if statistic not in ("median", "p10"):
            raise ValueError(
                'Expected `statistic` to be "median" or "p10". '
                f"Received: statistic={statistic!r}"
            )
        self.runs, self.warmup, self.statistic = runs, warmup, statistic
        self._check_installed()

    def _time_files(self, files):
        results = time_model_files(files, runs=self.runs, warmup=self.warmup,
                              num_threads=self.threads)
        return [r.median_ms if self.statistic == "median" else r.p10_ms
                for r in results]

    def _time_written(self, models, format):
        """Write the models to temporary `format` files at this runtime's
        batch (in one TensorFlow child process off the TensorFlow
        backend), time them, delete them."""
        with tempfile.TemporaryDirectory(prefix="keras_slim_time_") as tmp:
            paths = [os.path.join(tmp, f"model_{i}.{format}")
                     for i in range(len(models))]
            write_runtime_files(models, paths, format, batch=self.batch)
            return self._time_files(paths)


@register_runtime
class LiteRTRuntime(_TimedRuntime):
    """Times models in the LiteRT interpreter (float32, XNNPACK).

    Each model is converted to TFLite from a frozen concrete function
    (weights as constants, batch fixed; under JAX or PyTorch, all the
    models of one call in one TensorFlow-backend child process), then all
    are timed interleaved by `timing.time_model_files`.

    Args:
        threads: interpreter threads (`None`: LiteRT's default).
        batch: batch size.
        runs: timed invokes per model.
        warmup: untimed invokes first.
        statistic: "median" of the timed invokes, or "p10", their 10th
            percentile, steadier on a machine other work keeps busy (it
            estimates the latency without interruptions).
    """

    name = "litert"
    _check_installed = staticmethod(check_litert)

    def convert(self, model):
        """The model as a TFLite flatbuffer (TensorFlow backend only; `time`
        converts in a TensorFlow child process under another)."""
        return tflite_flatbuffer(model, self.batch)

    def time(self, models):
        import keras

        if keras.backend.backend() == "tensorflow":
            return self._time_files([self.convert(m) for m in models])
        return self._time_written(models, "tflite")


@register_runtime
class ONNXRuntime(_TimedRuntime):
    """Times models in ONNX Runtime (CPU, float32).

    Each model is written to a temporary `.onnx` file by Keras' exporter
    with its batch fixed at `batch` (`conversion_process.write_runtime_files`:
    in this process under the TensorFlow backend, in one TensorFlow child
    process under another), then all are timed interleaved by
    `timing.time_model_files` (its sessions' idle threads do not spin, so the
    sessions taking turns leave the CPU to each other), and the files
    deleted.

    Args:
        threads: intra-op threads (`None`: ONNX Runtime's default).
        batch: batch size.
        runs: timed runs per model.
        warmup: untimed runs first.
        statistic: "median" of the timed runs, or "p10", their 10th
            percentile (as for `LiteRTRuntime`).
    """

    name = "onnxruntime"
    _check_installed = staticmethod(check_onnxruntime)

    def time(self, models):
        return self._time_written(models, "onnx")


def runtime_from_info(info):
    """The runtime a table was measured on, made again from `info`."""
    cls = RUNTIMES.get(info.get("name"))
    if cls is None:
        raise ValueError(
            f"The latency table was measured on runtime {info.get('name')!r}, "
            f"which keras_slim does not know ({', '.join(RUNTIMES)}); pass "
            "`runtime=`."
        )
    return cls(threads=info.get("threads"), batch=info.get("batch", 1))

