"""The ResNet-20 recipe under JAX: keras.distribution.DataParallel over two
(forced) CPU devices, every stage on synthetic data, in a fresh process;
and the same run where TensorFlow cannot be imported (the GPU machines'
setup), which must reach summary.json with its TensorBoard scalars."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import venv

import pytest

pytestmark = pytest.mark.backend("jax")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ["sparse-train-a", "slim-a", "fine-tune-a", "export"]
SMOKE = ["--dataset=synthetic", "--epochs=1", "--finetune_epochs=1",
         "--steps_per_epoch=2", "--batch_size=8", "--synthetic_examples=16",
         "--models=a", "--rho=5", "--rho_warmup_steps=0", "--base_epochs=0"]
# Installed by site at start-up: `import tensorflow` fails and
# `importlib.util.find_spec("tensorflow")` is None, as without TensorFlow.
NO_TENSORFLOW = textwrap.dedent(
    """
    import sys

    class _NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ModuleNotFoundError(f"No module named {name!r}",
                                          name=name)
            return None

    sys.meta_path.insert(0, _NoTensorFlow())
    sys.modules["tensorflow"] = None
    """
)
NOISE = ("Sharding callback duration", "Assets written to",
         "unsupported characters", "xla_bridge")


def _run_recipe(model_dir, env, extra=()):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "recipes", "resnet20_cifar10.py"),
         *SMOKE, *extra, f"--model_dir={model_dir}"],
        env=env, capture_output=True, text=True, timeout=900, check=False)


def test_resnet20_recipe_runs_every_stage_data_parallel(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT,
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    done = _run_recipe(tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DataParallel over 2 device(s)" in done.stdout
    assert "ETA" in done.stdout
    for noise in NOISE:
        assert noise not in done.stdout + done.stderr, noise
    with open(tmp_path / "summary.json") as file:
        summary = json.load(file)
    assert summary["backend"] == "jax" and summary["replicas"] == 2
    assert summary["strategy"] == "DataParallel"
    assert [s["name"] for s in summary["stages"]] == STAGES
    sparse, slim, tuned, export = summary["stages"]
    assert sparse["gamma_zero_fraction"] > 0
    assert slim["params"] < sparse["params"]
    assert sum(slim["removed_channels"].values()) > 0
    assert tuned["params"] == slim["params"]
    assert export["tflite_relative_difference"] <= 1e-4
    assert os.path.getsize(tmp_path / "export" / "model.tflite") == \
        export["tflite_bytes"]
    # Rerun with another --epochs: refused in one line, nothing reused.
    written = (tmp_path / "summary.json").read_bytes()
    again = _run_recipe(tmp_path, env, ["--epochs=2"])
    assert again.returncode == 1
    last = again.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: --model_dir={tmp_path} holds a run made "
                           "with other flags (--epochs=2 here, 1 there;"), last
    assert "Traceback" not in again.stderr
    assert (tmp_path / "summary.json").read_bytes() == written


def test_resnet20_recipe_runs_to_summary_without_tensorflow(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_TENSORFLOW)
    model_dir = tmp_path / "run"
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(site))
    done = _run_recipe(model_dir, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "export skipped: TensorFlow is not installed" in done.stdout
    with open(model_dir / "summary.json") as file:
        summary = json.load(file)
    assert [s["name"] for s in summary["stages"]] == STAGES
    sparse, slim, _, export = summary["stages"]
    assert sparse["gamma_zero_fraction"] > 0
    assert 0 < slim["params"] < sparse["params"]
    assert export["tflite"] is None and "TensorFlow" in export["skipped"]
    assert not os.path.exists(model_dir / "export" / "model.tflite")
    # The TensorBoard files, written without TensorFlow, read back with it
    # here (this process may import it).
    if _has_tensorflow():
        from recipes.summaries import read_scalars

        scalars = read_scalars(str(model_dir / "sparse-train-a" / "tensorboard"))
        assert scalars["loss"][-1][0] == sparse["steps"]
        assert scalars["gamma_zero_fraction"][-1][1] == pytest.approx(
            sparse["gamma_zero_fraction"])
        assert scalars["params"][-1][1] == sparse["params"]
    else:
        assert os.listdir(model_dir / "sparse-train-a" / "tensorboard")


def _has_tensorflow():
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


@pytest.mark.slow
def test_recipe_in_a_venv_without_tensorflow(tmp_path):
    """keras_slim installs without TensorFlow (an extra), and the JAX recipe
    runs there to summary.json. Installs keras, jax and absl-py from the
    package index (or pip's cache) into a new venv: a few minutes."""
    source = tmp_path / "source"  # a copy: pip builds in the source folder
    shutil.copytree(os.path.join(ROOT, "keras_slim"), source / "keras_slim",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", str(source),
                    "jax", "absl-py"], check=True, timeout=1200)
    listed = subprocess.run([python, "-m", "pip", "list"], check=True,
                            capture_output=True, text=True).stdout
    assert "keras-slim" in listed and "tensorflow" not in listed.lower()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["KERAS_BACKEND"] = "jax"
    model_dir = tmp_path / "run"
    done = subprocess.run(
        [python, os.path.join(ROOT, "recipes", "resnet20_cifar10.py"), *SMOKE,
         f"--model_dir={model_dir}"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(model_dir / "summary.json") as file:
        summary = json.load(file)
    assert [s["name"] for s in summary["stages"]] == STAGES
    assert summary["stages"][-1]["tflite"] is None
