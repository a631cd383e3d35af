"""Every file keras_slim writes appears complete or not at all.

A `keras-slim prune` and a `keras-slim export` are SIGKILLed halfway
through writing over an earlier output (tests/kill_in_write.py): the earlier
file is intact, and nothing partial has the final name. The library's other
writers (reports and their PNGs, plans, latency tables, SavedModel folders,
ONNX files) are interrupted in process, at the same point.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys

import keras
import pytest

from keras_slim.core import files
from keras_slim.core.surgery import slim_model
from keras_slim.planners.selection import plan_global_gamma

# The CLI and the exports need TensorFlow.
pytestmark = pytest.mark.tensorflow

ROOT = pathlib.Path(__file__).resolve().parents[1]
L = keras.layers


def tiny():
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((8, 8, 2))
    x = L.Conv2D(6, 3, padding="same", name="conv")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x), name="tiny")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("atomic")
    path = folder / "model.keras"
    tiny().save(path)
    return path


def killed_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(
                   [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")]
                                  if p]))
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "kill_in_write.py"),
         *map(str, args)], capture_output=True, text=True, env=env,
        timeout=300)


def assert_earlier_intact(path, earlier):
    folder = path.parent
    assert path.read_bytes() == earlier
    # Only the earlier files and the killed write's hidden temporary.
    stem, suffix = os.path.splitext(path.name)
    for name in os.listdir(folder):
        if name.startswith(f".{stem}."):
            assert name.endswith(f".partial{suffix}"), name


@pytest.mark.parametrize("command", ["prune", "export"])
def test_a_killed_command_keeps_the_earlier_file(saved, tmp_path, command):
    if command == "prune":
        out = tmp_path / "slim.keras"
        args = ["prune", saved, "--method", "global_gamma", "--ratio", "0.5",
                "-o", out]
    else:
        out = tmp_path / "model.tflite"
        args = ["export", saved, "-o", out, "--no-check"]
    earlier = b"an earlier output the user keeps" * 100
    out.write_bytes(earlier)
    done = killed_cli(*args)
    # Killed inside the write: the command writes through core/files.py.
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr)
    assert_earlier_intact(out, earlier)
    partial = [n for n in os.listdir(tmp_path) if n.startswith(".")]
    assert len(partial) == 1  # the half-written temporary, never renamed
    assert os.path.getsize(tmp_path / partial[0]) > 0


def interrupted(monkeypatch):
    """Make the next atomic write fail where the kill above happens."""
    def fail(path):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(files, "_sync", fail)


def test_report_plan_and_table_writes_are_atomic(tmp_path, monkeypatch):
    from keras_slim.planners.latency_table import LatencyTable
    from keras_slim.tools.report import plot_model, report

    model = tiny()
    slim = slim_model(model, plan_global_gamma(model, 0.5))
    page = tmp_path / "report.html"
    report(model, slim, page)
    earlier = {p: p.read_bytes() for p in tmp_path.iterdir()}
    assert len(earlier) == 4  # the page and three PNGs
    table = LatencyTable({"name": "fake", "threads": 1}, 1.0, [], {})
    table_path = tmp_path / "table.json"
    table.save(table_path)
    earlier[table_path] = table_path.read_bytes()
    assert json.loads(earlier[table_path])["dense_ms"] == 1.0
    interrupted(monkeypatch)
    for write in (lambda: report(model, slim, page),
                  lambda: plot_model(model, tmp_path / "report_gammas.png"),
                  lambda: files.write_text(tmp_path / "report.html", "x"),
                  lambda: LatencyTable({}, 2.0, [], {}).save(table_path)):
        with pytest.raises(RuntimeError, match="interrupted"):
            write()
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == earlier


@pytest.mark.parametrize("fmt, name", [("saved_model", "saved"),
                                       ("onnx", "model.onnx")])
def test_export_folder_and_onnx_writes_are_atomic(tmp_path, monkeypatch, fmt,
                                                  name):
    from keras_slim.deploy.export import export

    if fmt == "onnx":
        pytest.importorskip("tf2onnx")
    model = tiny()
    path = tmp_path / name
    export(model, path, format=fmt, check=False)
    before = {str(p.relative_to(tmp_path)): p.read_bytes()
              for p in tmp_path.rglob("*") if p.is_file()}
    interrupted(monkeypatch)
    with pytest.raises(RuntimeError, match="interrupted"):
        export(model, path, format=fmt, check=False)
    after = {str(p.relative_to(tmp_path)): p.read_bytes()
             for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before and os.listdir(tmp_path) == [name]


def test_a_saved_model_never_replaces_a_folder_of_other_files(tmp_path):
    from keras_slim.deploy.export import export

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds other files"):
        export(tiny(), tmp_path, format="saved_model", check=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"
