"""Latency budgets measured on ONNX Runtime (`ONNXRuntime`): conversion with
the batch fixed, timing, the table, the missing-install error and the CLI.

The timings here are real but few (a handful of runs of tiny models); no
test asserts a speed, only that each model got one positive figure."""

import json
import os

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.deploy import conversion_process
from keras_slim.deploy import runtimes as runtimes_lib
from keras_slim.deploy.onnx_export import ONNXModel, session
from keras_slim.planners import latency_table as table_lib


def _conv(k_in, k_out, batch=None):
    inputs = keras.Input((6, 6, k_in), batch_size=batch)
    return keras.Model(inputs, keras.layers.Conv2D(k_out, 3)(inputs))


def _tiny():
    # Large enough that each layer outlasts an empty call (the table takes
    # that cost off every layer's timing).
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 16))
    x = keras.layers.Conv2D(32, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    outputs = keras.layers.Conv2D(32, 3)(x)
    return keras.Model(inputs, outputs)


def _no(module, monkeypatch):
    real = runtimes_lib.importlib.util.find_spec
    monkeypatch.setattr(
        runtimes_lib.importlib.util, "find_spec",
        lambda name: None if name == module else real(name),
    )


def test_onnx_runtime_times_each_model_and_deletes_its_files(monkeypatch):
    runtime = keras_slim.ONNXRuntime(threads=1, batch=2, runs=2, warmup=1)
    seen = []
    real = runtimes_lib._TimedRuntime._time_files

    def record(self, files):
        seen.append([(f, session(f).get_inputs()[0].shape) for f in files])
        return real(self, files)

    monkeypatch.setattr(runtimes_lib._TimedRuntime, "_time_files", record)
    times = runtime.time([_conv(3, 4), _conv(8, 16)])
    assert len(times) == 2 and all(t > 0 for t in times)
    # Each file has the runtime's batch, fixed, whatever the model's.
    assert [shape for _, shape in seen[0]] == [[2, 6, 6, 3], [2, 6, 6, 8]]
    assert not any(os.path.exists(f) for f, _ in seen[0])


def test_onnx_runtime_arguments_and_info_round_trip():
    runtime = keras_slim.ONNXRuntime(threads=2, batch=3, statistic="p10")
    assert runtime.info() == {"name": "onnxruntime", "threads": 2,
                              "batch": 3}
    again = table_lib.runtime_from_info(runtime.info())
    assert isinstance(again, table_lib.ONNXRuntime)
    assert again.info() == runtime.info()
    assert table_lib.RUNTIMES["onnxruntime"] is keras_slim.ONNXRuntime
    for bad, match in (({"runs": 0}, "runs=0"), ({"warmup": -1}, "warmup"),
                       ({"statistic": "mean"}, "statistic"),
                       ({"threads": 0}, "threads=0")):
        with pytest.raises(ValueError, match=match):
            keras_slim.ONNXRuntime(**bad)


def test_latency_table_on_onnx_runtime_predicts_its_dense_timing():
    model = _tiny()
    runtime = keras_slim.ONNXRuntime(threads=1, runs=3, warmup=1)
    table = table_lib.build_latency_table(model, runtime, verbose=False)
    assert table.runtime == {"name": "onnxruntime", "threads": 1,
                             "batch": 1}
    assert table.dense_ms > 0
    # Two convolutions; the second's input width is the first group's.
    assert [c["layer"] for c in table.calls] == [
        layer.name for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)]
    assert all(np.min(entry["ms"]) >= 0 for entry in table.entries.values())
    assert table.layers_ms > 0
    # At full widths the prediction is the dense timing (the table's sum is
    # scaled by dense_ms / layers_ms).
    assert table.predict({}) == pytest.approx(table.dense_ms)


@pytest.fixture
def child_commands(monkeypatch):
    """Pretend the backend is JAX, so conversions go to a TensorFlow child
    process, and record each child's command line."""
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    commands = []
    real = conversion_process._run_child
    monkeypatch.setattr(conversion_process, "_run_child",
                        lambda command: (commands.append(command),
                                         real(command)))
    return commands


def test_onnx_files_written_in_a_tensorflow_child_under_another_backend(
        tmp_path, child_commands):
    # Under JAX or PyTorch the models are converted in one child process
    # with the TensorFlow backend; forcing that path here checks the child.
    models = [_conv(3, 4), _conv(5, 2, batch=1)]
    paths = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    conversion_process.write_runtime_files(models, paths, "onnx", batch=2)
    # One child for all the models: write, FORMAT, BATCH, then (saved, written)
    # pairs.
    assert len(child_commands) == 1
    assert child_commands[0][3:6] == ["write", "onnx", "2"]
    assert child_commands[0][7::2] == [str(p) for p in paths]
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 3))
    got = ONNXModel(paths[0])([x])[0]
    np.testing.assert_allclose(got, models[0].predict(x, verbose=0),
                               atol=1e-5)
    assert session(paths[1]).get_inputs()[0].shape == [2, 6, 6, 5]


def test_litert_files_written_in_a_tensorflow_child_under_another_backend(
        tmp_path, child_commands):
    # LiteRTRuntime converts in this process under TensorFlow; under JAX or
    # PyTorch all the models of a call go to one TensorFlow child.
    from keras_slim.deploy.tflite import litert_interpreter

    models = [_conv(3, 4), _conv(5, 2, batch=1)]
    paths = [tmp_path / "a.tflite", tmp_path / "b.tflite"]
    conversion_process.write_runtime_files(models, paths, "tflite", batch=2)
    assert len(child_commands) == 1
    assert child_commands[0][3:6] == ["write", "tflite", "2"]
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 3))
    interpreter = litert_interpreter(str(paths[0]))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                           x.astype("float32"))
    interpreter.invoke()
    got = interpreter.get_tensor(
        interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(np.asarray(got).reshape(2, -1),
                               models[0].predict(x, verbose=0).reshape(2, -1),
                               atol=1e-5)
    times = keras_slim.LiteRTRuntime(threads=1, runs=2, warmup=1).time(
        models)
    assert len(child_commands) == 2 and len(times) == 2
    assert all(t > 0 for t in times)
    with pytest.raises(ValueError, match="Expected `format`"):
        conversion_process.write_runtime_files(models, paths, "savedmodel")


def test_onnx_runtime_not_installed_names_the_fix(monkeypatch, tmp_path,
                                                  capsys):
    from keras_slim.tools import cli

    _no("onnxruntime", monkeypatch)
    with pytest.raises(ImportError, match=r"pip install keras-slim\[onnx\]"):
        keras_slim.ONNXRuntime()
    with pytest.raises(ImportError, match="onnxruntime is not installed"):
        runtimes_lib.check_onnxruntime()
    path = tmp_path / "model.keras"
    _tiny().save(path)
    assert cli.main(["prune", str(path), "--target-latency", "0.6",
                     "--runtime", "onnxruntime", "-o",
                     str(tmp_path / "slim.keras")]) == 1
    assert "keras-slim[onnx]" in capsys.readouterr().err


def test_onnx_conversion_not_installed_names_tf2onnx(monkeypatch):
    _no("tf2onnx", monkeypatch)
    with pytest.raises(ImportError, match="tf2onnx is not installed"):
        keras_slim.ONNXRuntime()


def test_cli_refuses_a_table_timed_on_another_runtime(tmp_path, capsys):
    from keras_slim.tools import cli

    table = tmp_path / "table.json"
    table.write_text(json.dumps({
        "version": 1, "runtime": {"name": "litert", "threads": 2, "batch": 1},
        "dense_ms": 1.0, "layers_ms": 1.0, "calls": [], "entries": {}}))
    path = tmp_path / "model.keras"
    _tiny().save(path)
    assert cli.main(["prune", str(path), "--target-latency", "0.6",
                     "--threads", "2", "--runtime", "onnxruntime", "--table",
                     str(table), "-o", str(tmp_path / "slim.keras")]) == 1
    error = capsys.readouterr().err.strip()
    assert "timed on litert, not --runtime onnxruntime" in error
    assert len(error.splitlines()) == 1


def test_timed_onnx_sessions_do_not_spin(tmp_path, monkeypatch):
    from keras_slim.deploy import onnx_export
    from keras_slim.deploy.timing import time_model_files

    path = tmp_path / "conv.onnx"
    onnx_export.write_onnx(_conv(3, 4), path, batch=1)
    made = []
    real = onnx_export.session

    def record(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(onnx_export, "session", record)
    assert time_model_files([path, path], runs=1, warmup=0, num_threads=2)
    key = "session.intra_op.allow_spinning"
    assert [s.get_session_options().get_session_config_entry(key)
            for s in made] == ["0", "0"]
    # A session made for running a model keeps ONNX Runtime's default.
    with pytest.raises(RuntimeError, match="does not have configuration"):
        real(path).get_session_options().get_session_config_entry(key)
