"""Runtimes that time models for a latency budget: `Runtime` (the
interface: `time(models) -> list of milliseconds`, `info() -> dict`),
`LiteRTRuntime`, the default, and `ONNXRuntime`. TensorFlow, LiteRT and
ONNX Runtime are imported only when a runtime converts or times a model."""

import importlib.util
import os
import tempfile

from keras_slim.deploy.runtime import _check_count

__all__ = [
    "RUNTIMES",
    "LiteRTRuntime",
    "ONNXRuntime",
    "Runtime",
    "check_litert",
    "check_onnxruntime",
    "runtime_from_info",
    "tflite_flatbuffer",
]


class Runtime:
    """What a runtime offers a budget search: timing Keras models.

    Args:
        threads: threads the runtime may use (`None`: its default).
        batch: batch size of the timed inputs.
    """

    name = "runtime"

    def __init__(self, threads=None, batch=1):
        if threads is not None:
            _check_count(threads, "threads", 1)
        _check_count(batch, "batch", 1)
        self.threads, self.batch = threads, batch

    def time(self, models):
        """Median milliseconds per call of each model, timed in one run."""
        raise NotImplementedError

    def info(self):
        return {"name": self.name, "threads": self.threads,
                "batch": self.batch}


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


def tflite_flatbuffer(model, batch=1):
    """`model` (TensorFlow backend) as a TFLite flatbuffer with its batch
    fixed, converted from a frozen concrete function: weights as
    constants, no SavedModel on disk."""
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants

    from keras_slim.deploy.runtime import quiet_native_output

    specs = [tf.TensorSpec((batch,) + tuple(t.shape[1:]), t.dtype)
             for t in model.inputs]

    def call(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0],
                     training=False)

    function = tf.function(call, input_signature=specs)
    frozen = convert_to_constants.convert_variables_to_constants_v2(
        function.get_concrete_function()
    )
    with quiet_native_output():
        return tf.lite.TFLiteConverter.from_concrete_functions(
            [frozen]
        ).convert()


class _TimedRuntime(Runtime):
    """A runtime that times files with `runtime.time_tflite`: the options
    of the timing and the statistic taken; a subclass names the check that
    its packages are installed (`_check_installed`)."""

    def __init__(self, threads=None, batch=1, runs=30, warmup=5,
                 statistic="median"):
        super().__init__(threads, batch)
        _check_count(runs, "runs", 1)
        _check_count(warmup, "warmup", 0)
        if statistic not in ("median", "p10"):
            raise ValueError(
                'Expected `statistic` to be "median" or "p10". '
                f"Received: statistic={statistic!r}"
            )
        self.runs, self.warmup, self.statistic = runs, warmup, statistic
        self._check_installed()

    def _time_files(self, files):
        from keras_slim.deploy.runtime import time_tflite

        results = time_tflite(files, runs=self.runs, warmup=self.warmup,
                              num_threads=self.threads)
        return [r.median_ms if self.statistic == "median" else r.p10_ms
                for r in results]

    def _time_written(self, models, format):
        """Write the models to temporary `format` files at this runtime's
        batch (in one TensorFlow child process off the TensorFlow
        backend), time them, delete them."""
        from keras_slim.deploy.conversion_process import write_runtime_files

        with tempfile.TemporaryDirectory(prefix="keras_slim_time_") as tmp:
            paths = [os.path.join(tmp, f"model_{i}.{format}")
                     for i in range(len(models))]
            write_runtime_files(models, paths, format, batch=self.batch)
            return self._time_files(paths)


class LiteRTRuntime(_TimedRuntime):
    """Times models in the LiteRT interpreter (float32, XNNPACK).

    Each model is converted to TFLite from a frozen concrete function
    (weights as constants, batch fixed; under JAX or PyTorch, all the
    models of one call in one TensorFlow-backend child process), then all
    are timed interleaved by `runtime.time_tflite`.

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


class ONNXRuntime(_TimedRuntime):
    """Times models in ONNX Runtime (CPU, float32).

    Each model is written to a temporary `.onnx` file by Keras' exporter
    with its batch fixed at `batch` (`conversion_process.write_runtime_files`:
    in this process under the TensorFlow backend, in one TensorFlow child
    process under another), then all are timed interleaved by
    `runtime.time_tflite` (its sessions' idle threads do not spin, so the
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


RUNTIMES = {"litert": LiteRTRuntime, "onnxruntime": ONNXRuntime}


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

