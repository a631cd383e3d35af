"""The `keras-slim` console script, driven in a subprocess as a user would.

Uses the installed `keras-slim` script next to the running Python when
there is one, else `python -m keras_slim.tools.cli`.
"""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_slim.deploy.tflite import TFLiteModel
from keras_slim.tools import cli
from keras_slim.tools.pruning import prune
from tests import zoo

# Needs TensorFlow: deselected under the JAX and PyTorch backends.
pytestmark = pytest.mark.tensorflow

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = pathlib.Path(sys.executable).parent / "keras-slim"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [
    sys.executable, "-m", "keras_slim.tools.cli"
]
ZEROED = 2  # channels of each group whose gammas are set to zero


def keras_slim_cli(*args, cwd=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    return subprocess.run(
        COMMAND + [str(a) for a in args], capture_output=True, text=True,
        env=env, cwd=cwd, timeout=300,
    )


def assert_one_line_error(result, *snippets, code=1):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("keras-slim"), result.stderr
    assert "error:" in last
    for snippet in snippets:
        assert snippet in last, last


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    model = zoo.residual()
    rng = np.random.default_rng(0)
    # Zero the same channels in every BatchNormalization of a group (tied
    # by the residual adds), so zero_gamma can cut them.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma = np.abs(rng.standard_normal(layer.gamma.shape)) + 0.1
            gamma[:ZEROED] = 0.0
            layer.gamma.assign(gamma.astype("float32"))
    model_path = folder / "model.keras"
    model.save(model_path)
    data_path = folder / "x.npy"
    np.save(data_path, rng.random((40, 16, 16, 3), dtype="float32"))
    return {"folder": folder, "model": model, "model_path": model_path,
            "data": data_path}


def test_inspect_prints_the_groups_and_plots(files):
    plot = files["folder"] / "gammas.png"
    result = keras_slim_cli("inspect", files["model_path"], "--plot", plot)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("model `residual`")
    header = next(line for line in lines if line.startswith("group"))
    assert "gamma median" in header and "zero gammas" in header
    row = next(line for line in lines if line.startswith("r2b_conv"))
    cells = row.split()
    assert cells[-1] == str(ZEROED) and cells[-3] == "0"  # zeros, min
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[-1] == str(4 * ZEROED)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prune_saves_the_same_model_as_the_library(files):
    out = files["folder"] / "slim.keras"
    plan_path = files["folder"] / "plan.json"
    result = keras_slim_cli(
        "prune", files["model_path"], "--method", "global_gamma",
        "--ratio", "0.5", "--round-to", "2", "-o", out, "--plan", plan_path,
    )
    assert result.returncode == 0, result.stderr
    assert "width before" in result.stdout and "MACs" in result.stdout
    slim = keras.saving.load_model(out)
    expected = prune(files["model"], "global_gamma", ratio=0.5, round_to=2)
    assert slim.count_params() == expected.count_params() < \
        files["model"].count_params()
    x = np.random.default_rng(1).random((3, 16, 16, 3), dtype="float32")
    np.testing.assert_allclose(slim.predict(x, verbose=0),
                               expected.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
    assert "stem_conv" in plan_path.read_text()


def test_prune_zero_gamma_cuts_exactly_the_zero_channels(files, capsys):
    out = files["folder"] / "zero.keras"
    page = files["folder"] / "report" / "zero.md"
    status = cli.main(["prune", str(files["model_path"]), "--method",
                       "zero_gamma", "-o", str(out), "--report", str(page)])
    assert status == 0, capsys.readouterr().err
    assert "r2b_conv | 16 | 14" in page.read_text()
    assert (files["folder"] / "report" / "zero_widths.png").is_file()
    slim = keras.saving.load_model(out)
    widths = {layer.name: layer.filters for layer in slim.layers
              if isinstance(layer, keras.layers.Conv2D)}
    assert widths == {"stem_conv": 6, "r1a_conv": 6, "r1b_conv": 6,
                      "r2s_conv": 14, "r2a_conv": 14, "r2b_conv": 14}


def test_export_and_bench(files, capsys):
    folder = files["folder"]
    dense_path, dynamic_path = folder / "dense.tflite", folder / "dyn.tflite"
    result = keras_slim_cli("export", files["model_path"], "-o", dense_path)
    assert result.returncode == 0, result.stderr
    assert "[2/3] converting to float32 TFLite" in result.stdout
    assert "check passed" in result.stdout
    x = np.random.default_rng(2).random((4, 16, 16, 3), dtype="float32")
    got = TFLiteModel(dense_path)([x])[0]
    want = files["model"].predict(x, verbose=0)
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))

    status = cli.main(["export", str(files["model_path"]), "-o",
                       str(dynamic_path), "--quantize", "dynamic",
                       "--representative-data", str(files["data"])])
    assert status == 0 and dynamic_path.is_file()

    result = keras_slim_cli("bench", dense_path, dynamic_path, "--runs", "5",
                            "--warmup", "1", "--threads", "1",
                            "--turn-warmup", "1")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines()
            if line.startswith(str(folder))]
    assert len(rows) == 2 and rows[0].endswith("1.00x")
    assert "timed 2 model(s)" in result.stdout
    assert "1 untimed before each" in result.stdout


def test_lambda_layers_are_refused_and_not_run(tmp_path):
    marker = tmp_path / "lambda_ran"
    function = eval(  # a Lambda with a visible side effect
        f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t)[1]"
    )
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2)(keras.layers.Lambda(function)(inputs))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    marker.unlink()

    result = keras_slim_cli("inspect", path)
    assert_one_line_error(result, "Lambda", "--unsafe")
    assert not marker.exists()

    assert cli.main(["inspect", str(path), "--unsafe"]) == 0
    assert marker.exists()  # the flag really lets the code run


def test_error_messages_in_a_subprocess(files, tmp_path):
    missing = tmp_path / "missing.keras"
    assert_one_line_error(keras_slim_cli("inspect", missing),
                          "No such file", str(missing))
    assert_one_line_error(
        keras_slim_cli("prune", files["model_path"], "--method", "magic",
                       "-o", tmp_path / "x.keras"),
        "--method", "magic", code=2,
    )


@pytest.mark.parametrize(
    "args, snippets, code",
    [
        (["prune", "{model}", "--method", "global_gamma", "--ratio", "1.5",
          "-o", "{tmp}/x.keras"], ["--ratio", "1.5"], 1),
        (["prune", "{model}", "--method", "global_gamma", "-o",
          "{tmp}/x.keras"], ["needs --ratio"], 1),
        (["prune", "{model}", "--method", "zero_gamma", "--ratio", "0.5",
          "-o", "{tmp}/x.keras"], ["--ratio", "zero_gamma"], 1),
        (["prune", "{model}", "--method", "uniform", "--ratio", "0.5",
          "--round-to", "0", "-o", "{tmp}/x.keras"], ["--round-to"], 1),
        (["prune", "{model}", "--method", "uniform", "--ratio", "0.5",
          "-o", "{tmp}/x.h5"], ["-o", ".keras"], 1),
        (["prune", "{model}", "--method", "uniform", "--ratio", "0.5",
          "-o", "{model}"], ["differ"], 1),
        (["prune", "{model}", "--method", "uniform", "--ratio", "half",
          "-o", "{tmp}/x.keras"], ["--ratio", "half"], 2),
        (["export", "{model}", "-o", "{tmp}/x.bin"], [".tflite", ".onnx"], 1),
        (["export", "{model}", "-o", "{tmp}/x.onnx", "--quantize", "dynamic"],
         ["--quantize"], 1),
        (["bench", "{tmp}/x.npy"], [".tflite or .onnx"], 1),
        (["bench", "{fake_onnx}"], ["not an ONNX model"], 1),
        (["export", "{model}", "-o", "{tmp}/x", "--format", "saved_model",
          "--quantize", "dynamic"], ["--quantize"], 1),
        (["export", "{model}", "-o", "{tmp}/x.tflite", "--quantize",
          "dynamic", "--representative-data", "{tmp}/none.npy"],
         ["No such file"], 1),
        (["export", "{bad}", "-o", "{tmp}/x.tflite"], ["not a Keras model"], 1),
        (["bench", "{model}"], [".tflite"], 1),
        (["bench", "{tmp}/none.tflite"], ["No such file"], 1),
        (["bench", "{fake_tflite}"], ["not a TFLite model"], 1),
        (["bench", "{fake_tflite}", "--runs", "0"], ["--runs"], 1),
        (["bench", "{fake_tflite}", "--turn-warmup", "-1"],
         ["--turn-warmup"], 1),
        ([], ["COMMAND"], 2),
        (["inspect", "{tmp}/x.npy"], ["Expected a Keras model file"], 1),
        (["export", "{model}", "-o", "{tmp}/x.tflite", "--quantize", "int8"],
         ["--representative-data"], 1),
        (["inspect", "{model}", "--plot", "{tmp}/x.jpg"], ["--plot", ".png"],
         1),
    ],
)
def test_error_messages(files, tmp_path, capsys, args, snippets, code):
    """The same handling in-process (no TensorFlow start-up per case)."""
    bad = tmp_path / "bad.keras"
    bad.write_text("not a model")
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"\x00" * 64)
    fake_onnx = tmp_path / "fake.onnx"
    fake_onnx.write_bytes(b"\x00" * 64)
    np.save(tmp_path / "x.npy", np.zeros(3))
    fill = {"model": files["model_path"], "tmp": tmp_path, "bad": bad,
            "fake_tflite": fake, "fake_onnx": fake_onnx}
    argv = [a.format(**fill) for a in args]
    try:
        status = cli.main(argv)
    except SystemExit as exit_:  # argparse usage errors
        status = exit_.code
    captured = capsys.readouterr()
    assert status == code
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-slim")
    for snippet in snippets:
        assert snippet in lines[0]
