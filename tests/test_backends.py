"""One `.keras` file, any backend: a model trained with ISTA and slimmed on
this test run's backend exports to TFLite and ONNX, with the CLI (a
TensorFlow-backend process) and with `keras_slim.deploy.export` (a child process
off TensorFlow), and both files agree with this backend's outputs.

Needs TensorFlow, LiteRT, tf2onnx and ONNX Runtime installed, but not the
TensorFlow backend: this module runs under every backend.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.deploy.conversion_process import child_environment
from keras_slim.deploy.export import FLOAT_TOLERANCE, export
from keras_slim.deploy.onnx_export import ONNXModel
from keras_slim.deploy.tflite import TFLiteModel
from keras_slim.deploy.timing import time_model_files
from keras_slim.tools import cli
from tests import zoo

L = keras.layers


def _net():
    spread = keras.initializers.RandomUniform(0.05, 1.5)
    x = inputs = keras.Input((12, 12, 3))
    for i, width in enumerate((8, 12)):
        x = L.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = L.BatchNormalization(gamma_initializer=spread, name=f"bn{i}")(x)
        x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(5)(x), name="net")


def _slimmed_here():
    """A conv-BN net trained with ISTA on this backend until gammas die,
    slimmed, with its outputs on fixed inputs."""
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12, 12, 3)).astype("float32")
    y = rng.integers(0, 5, 64)
    model = _net()
    model.compile(keras.optimizers.SGD(0.1),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ista = keras_slim.ISTAGamma(1.0)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[ista])
    plan = keras_slim.plan_zero_gamma(model)
    assert sum(plan.widths[g] - len(k) for g, k in plan.kept.items()) > 0
    slim = keras_slim.slim_model(model, plan)
    probe = rng.normal(size=(8, 12, 12, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(slim(probe, training=False))
    # The slim model computes what the trained one does (dead channels).
    np.testing.assert_allclose(
        expected, keras.ops.convert_to_numpy(model(probe, training=False)),
        rtol=1e-4, atol=1e-4)
    return slim, probe, expected


def _assert_parity(expected, got):
    scale = float(np.max(np.abs(expected)))
    assert float(np.max(np.abs(np.reshape(got, expected.shape) - expected))) \
        <= FLOAT_TOLERANCE * scale


def test_keras_file_from_this_backend_exports_with_the_cli(tmp_path,
                                                           keras_backend):
    slim, probe, expected = _slimmed_here()
    saved = tmp_path / f"slim_{keras_backend}.keras"
    slim.save(saved)
    for suffix in ("tflite", "onnx"):
        out = tmp_path / f"slim.{suffix}"
        done = subprocess.run(
            [sys.executable, "-m", "keras_slim.tools.cli", "export", str(saved),
             "-o", str(out)],
            env=child_environment(), capture_output=True, text=True,
            check=False)
        assert done.returncode == 0, done.stderr
        assert "check passed" in done.stdout
        runner = (TFLiteModel(str(out)) if suffix == "tflite"
                  else ONNXModel(str(out)))
        got = runner([probe])[0]
        _assert_parity(expected, got)
    # `keras-slim bench` times both runtimes side by side.
    assert cli.main(["bench", str(tmp_path / "slim.tflite"),
                     str(tmp_path / "slim.onnx"), "--runs", "3",
                     "--warmup", "1"]) == 0


def test_export_api_writes_checked_tflite_and_onnx(tmp_path):
    slim, probe, expected = _slimmed_here()
    for fmt in ("tflite", "onnx"):
        path = tmp_path / f"slim.{fmt}"
        result = export(slim, path, format=fmt)
        assert result.format == fmt and result.checked == 16
        assert result.relative_difference <= FLOAT_TOLERANCE
        assert os.path.getsize(path) == result.size_bytes > 0
    _assert_parity(expected, ONNXModel(str(tmp_path / "slim.onnx"))([probe])[0])
    latencies = time_model_files([str(tmp_path / "slim.tflite"),
                            str(tmp_path / "slim.onnx")], runs=3, warmup=1)
    assert [os.path.basename(r.path) for r in latencies] == \
        ["slim.tflite", "slim.onnx"]
    assert all(r.median_ms > 0 for r in latencies)


@pytest.mark.parametrize("kwargs, message", [
    ({"format": "onnx", "quantize": "dynamic"}, "`quantize` applies"),
    ({"format": "torchscript"}, "`format`"),
])
def test_export_rejects_bad_onnx_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        export(zoo.chain(), tmp_path / "x.onnx", **kwargs)


def test_onnx_model_rejects_a_non_onnx_file(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not an ONNX model"):
        ONNXModel(str(path))


def test_latency_runtimes_time_this_backends_models():
    """A latency budget measures on LiteRT or ONNX Runtime whatever the
    backend (off TensorFlow the models are converted in a child)."""
    model = _net()
    slim = keras_slim.slim_model(
        model, keras_slim.plan_uniform(model, 0.5, score="random", seed=0))
    for runtime in (keras_slim.LiteRTRuntime(threads=1, runs=2, warmup=1),
                    keras_slim.ONNXRuntime(threads=1, runs=2, warmup=1)):
        times = runtime.time([model, slim])
        assert len(times) == 2 and all(t > 0 for t in times), runtime.name
