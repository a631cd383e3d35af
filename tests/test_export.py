"""Export to TFLite and SavedModel: parity with Keras, quantization, errors."""

import importlib
import os

import keras
import numpy as np
import pytest

from examples.digits import load_digits
from keras_slim.deploy.export import export
from keras_slim.deploy.tflite import TFLiteModel
from keras_slim.deploy.timing import time_model_files
from tests import zoo

# Needs TensorFlow: deselected under the JAX and PyTorch backends.
pytestmark = pytest.mark.tensorflow

# The module, not the `export` function keras_slim re-exports by that name.
export_lib = importlib.import_module("keras_slim.deploy.export")

L = keras.layers


def conv_net():
    """Conv-BN-ReLU with non-trivial BatchNormalization statistics."""
    x = inputs = keras.Input((8, 8, 1), name="image")
    x = zoo.conv_bn(x, 8, "a")
    x = zoo.conv_bn(x, 16, "b")
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(256, activation="relu", name="fc")(x)
    model = keras.Model(inputs, L.Dense(10, name="head")(x), name="conv_net")
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            width = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 2.0, width))
            layer.beta.assign(rng.normal(0, 0.3, width))
            layer.moving_mean.assign(rng.normal(0, 0.3, width))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, width))
    return model


def images(count, seed=1):
    return np.random.default_rng(seed).random((count, 8, 8, 1), "float32")


def relative_gap(reference, other):
    return float(np.max(np.abs(reference - other)) / np.max(np.abs(reference)))


def test_float_tflite_matches_keras(tmp_path):
    model = conv_net()
    path = tmp_path / "model.tflite"
    result = export(model, path)
    assert result.path == str(path) and result.format == "tflite"
    assert result.size_bytes == os.path.getsize(path) > 0
    assert result.checked == export_lib.CHECK_SAMPLES
    assert result.relative_difference <= 1e-4
    # Check independently, on other inputs, through the LiteRT interpreter.
    x = images(5)
    got = TFLiteModel(path)([x], ["image"])[0]
    assert got.shape == (5, 10)
    assert relative_gap(model.predict(x, verbose=0), got) <= 1e-4


def test_dynamic_range_is_smaller_and_close(tmp_path):
    model = conv_net()
    float_result = export(model, tmp_path / "float.tflite")
    result = export(model, tmp_path / "dynamic.tflite", quantize="dynamic",
                    representative_data=images(8))
    assert result.quantize == "dynamic" and result.checked == 8
    assert 0 < result.relative_difference <= export_lib.DYNAMIC_TOLERANCE
    # int8 weights: the file shrinks (the Dense kernels dominate it).
    assert result.size_bytes < 0.6 * float_result.size_bytes


def test_saved_model_matches_keras(tmp_path):
    import tensorflow as tf

    model = conv_net()
    path = tmp_path / "saved"
    result = export(model, path, format="saved_model")
    assert os.path.isfile(path / "saved_model.pb")
    assert result.relative_difference <= 1e-4 and result.size_bytes > 0
    x = images(3)
    loaded = tf.saved_model.load(str(path))
    got = loaded.serve(x).numpy()
    assert relative_gap(model.predict(x, verbose=0), got) <= 1e-4


def test_several_inputs_and_outputs(tmp_path):
    model = zoo.multi_io()
    result = export(model, tmp_path / "multi.tflite")
    assert result.relative_difference <= 1e-4
    rng = np.random.default_rng(2)
    data = {"image": rng.random((4, 8, 8, 3), "float32"),
            "vector": rng.random((4, 4), "float32")}
    names = [t.name for t in model.inputs]
    got = TFLiteModel(tmp_path / "multi.tflite")(
        [data[n] for n in names], names
    )
    expected = model.predict(data, verbose=0)
    assert len(got) == 2
    for want, have in zip(expected, got):
        assert relative_gap(want, have.reshape(want.shape)) <= 1e-4


def test_sequential_model(tmp_path):
    result = export(zoo.sequential(), tmp_path / "seq.tflite")
    assert result.relative_difference <= 1e-4


def test_int8_agrees_with_a_trained_model(tmp_path):
    (x_train, y_train), (x_test, _) = load_digits()
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(16, 3, use_bias=False),
        L.BatchNormalization(momentum=0.9),
        L.ReLU(),
        L.Flatten(),
        L.Dense(10),
    ])
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    path = tmp_path / "int8.tflite"
    result = export(model, path, quantize="int8",
                    representative_data=x_train[:200])
    assert result.checked == 200
    assert result.agreement >= export_lib.INT8_AGREEMENT
    runner = TFLiteModel(path)
    (detail,) = runner.inputs.values()
    assert detail["dtype"] == np.int8  # integer inputs, quantized for us
    got = runner([x_test], [model.inputs[0].name])[0]
    expected = model.predict(x_test, verbose=0)
    assert np.mean(got.argmax(-1) == expected.argmax(-1)) >= 0.9


def test_failed_check_raises_and_keeps_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(export_lib, "DYNAMIC_TOLERANCE", 1e-12)
    path = tmp_path / "dynamic.tflite"
    with pytest.raises(RuntimeError, match="differs from Keras"):
        export(conv_net(), path, quantize="dynamic")
    assert path.is_file()


def test_nan_counts_as_a_difference():
    reference = [np.array([[1.0, 2.0]])]
    assert export_lib._differences(reference, [np.array([[1.0, np.nan]])]) == (
        np.inf, np.inf
    )
    assert export_lib._differences(reference, [np.array([[1.0, 2.0]])]) == (
        0.0, 0.0
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"format": "torchscript"}, "`format`"),
        ({"quantize": "float16"}, "`quantize`"),
        ({"format": "saved_model", "quantize": "dynamic"}, "`quantize`"),
        ({"quantize": "int8"}, "`representative_data`"),
        ({"representative_data": np.zeros((4, 9, 9, 1))},
         "`representative_data`.*shape"),
        ({"representative_data": [images(2), images(2)]},
         "`representative_data`"),
        ({"representative_data": {"other": images(2)}},
         "`representative_data`"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export(conv_net(), tmp_path / "x.tflite", **kwargs)
    assert not (tmp_path / "x.tflite").exists()


def test_tflite_path_must_not_be_a_directory(tmp_path):
    with pytest.raises(ValueError, match="`path`"):
        export(conv_net(), tmp_path)


def test_subclassed_model_is_refused(tmp_path):
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="functional"):
        export(Net(), tmp_path / "x.tflite")


def test_time_model_files_reports_each_file(tmp_path):
    small = keras.Sequential([keras.Input((8,)), L.Dense(4)])
    big = keras.Sequential([keras.Input((8,)), L.Dense(256), L.Dense(4)])
    paths = [export(m, tmp_path / f"{i}.tflite", check=False).path
             for i, m in enumerate((small, big))]
    results = time_model_files(paths, runs=5, warmup=1, num_threads=1)
    assert [r.path for r in results] == paths
    for r in results:
        assert r.runs == 5 and r.threads == 1
        assert 0 < r.p10_ms <= r.median_ms <= r.p90_ms


def test_time_model_files_turn_warmup_invokes_before_each_timed_run(
        tmp_path, monkeypatch):
    from keras_slim.deploy import timing

    calls = []
    original = timing._tflite_invoker

    def counting(path, num_threads, rng):
        invoke = original(path, num_threads, rng)

        def counted():
            calls.append(path)
            return invoke()
        return counted

    monkeypatch.setattr(timing, "_tflite_invoker", counting)
    paths = [export(keras.Sequential([keras.Input((4,)), L.Dense(n)]),
                    tmp_path / f"{n}.tflite", check=False).path
             for n in (2, 3)]
    time_model_files(paths, runs=3, warmup=1, num_threads=1, turn_warmup=2)
    # 1 warm-up each, then per round: 2 untimed + 1 timed invoke, in turns.
    assert len(calls) == 2 * (1 + 3 * 3)
    rounds = calls[2:]
    assert rounds[:3] == [paths[0]] * 3 and rounds[3:6] == [paths[1]] * 3
    assert rounds[6:9] == [paths[1]] * 3  # the order reverses each round


@pytest.mark.parametrize(
    "kwargs, match",
    [({"runs": 0}, "`runs`"), ({"warmup": -1}, "`warmup`"),
     ({"num_threads": 0}, "`num_threads`"),
     ({"turn_warmup": -1}, "`turn_warmup`")],
)
def test_time_model_files_bad_arguments(tmp_path, kwargs, match):
    path = export(keras.Sequential([keras.Input((2,)), L.Dense(2)]),
                  tmp_path / "m.tflite", check=False).path
    with pytest.raises(ValueError, match=match):
        time_model_files([path], **kwargs)


def test_time_model_files_missing_or_invalid_file(tmp_path):
    with pytest.raises(ValueError, match="No TFLite file"):
        time_model_files([str(tmp_path / "missing.tflite")])
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(ValueError, match="not a TFLite model"):
        time_model_files([str(bad)])
