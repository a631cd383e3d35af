"""The ResNet-20 recipe under JAX: keras.distribution.DataParallel over two
(forced) CPU devices, every stage on synthetic data, in a fresh process."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.backend("jax")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ["sparse-train-a", "slim-a", "fine-tune-a", "export"]


def test_resnet20_recipe_runs_every_stage_data_parallel(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT,
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "recipes", "resnet20_cifar10.py"),
         "--dataset=synthetic", "--epochs=1", "--finetune_epochs=1",
         "--steps_per_epoch=2", "--batch_size=8", "--synthetic_examples=16",
         "--models=a", "--rho=5", "--rho_warmup_steps=0", "--base_epochs=0",
         f"--model_dir={tmp_path}"],
        env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DataParallel over 2 device(s)" in done.stdout
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
