"""The Fashion-MNIST evidence study: every experiment reports numbers."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from recipes import fashion_mnist_report as report
from recipes import fashion_mnist_study as study
from recipes.fashion_mnist_data import find_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--train_examples=64", "--test_examples=50", "--widths=4,8,8,8",
        "--batch_size=32", "--epochs=1", "--finetune_epochs=1",
        "--ista_epochs=1", "--seeds=0", "--ista_seeds=0", "--lottery_seeds=0",
        "--ratios=0.5", "--rethinking_ratio=0.5", "--rho=20",
        "--lottery_learning_rates=0.1", "--lottery_sparsity=0.5"]


def tiny_data():
    rng = np.random.default_rng(0)
    return ((rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
             rng.integers(0, 10, 64, dtype=np.uint8)),
            (rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
             rng.integers(0, 10, 50, dtype=np.uint8)))


def parse(args):
    values = flags.FlagValues()
    study.define_flags(values)
    values(["study"] + args)
    return values


def check_results(results, runs_folder):
    assert set(results["experiments"]) == set(study.EXPERIMENTS)
    for name, experiment in results["experiments"].items():
        assert experiment["summary"], name
        for entry in experiment["summary"]:
            accuracy = entry["accuracy"]["mean"]
            assert math.isfinite(accuracy) and 0 <= accuracy <= 1, (name, entry)
            assert entry["params"]["mean"] > 0 and entry["macs"]["mean"] > 0
        for row in experiment["runs"]:
            assert os.path.exists(os.path.join(runs_folder, row["name"] + ".json"))
    assert results["commit"]
    assert results["wall_seconds_runs"] > 0


def test_tiny_study_reports_every_experiment_and_resumes(tmp_path):
    model_dir = str(tmp_path / "study")
    values = parse(TINY + ["--model_dir=" + model_dir])
    results = study.run(values, datasets_override=tiny_data())
    check_results(results, os.path.join(model_dir, "runs"))
    with open(os.path.join(model_dir, "results.json")) as f:
        assert json.load(f)["experiments"].keys() == results["experiments"].keys()
    summary = {e["label"]: e for e in
               results["experiments"]["1_network_slimming"]["summary"]}
    dense = summary["dense"]["params"]["mean"]
    assert summary["pruned 50% + fine-tune"]["params"]["mean"] < dense
    # Experiment 4 compares architectures of (nearly) equal size.
    arch = results["experiments"]["4_architecture"]["summary"]
    found, uniform = (e["params"]["mean"] for e in arch)
    assert abs(found - uniform) <= 0.1 * found
    # The lottery's masks held through training: 50% of conv weights zero.
    for row in results["experiments"]["5_lottery_ticket"]["runs"]:
        if row["label"] != "dense":
            assert row["kept_share"] == pytest.approx(0.5, abs=0.01)
    # A rerun runs nothing again and reports the same numbers.
    again = study.run(values, datasets_override=tiny_data())
    assert again["ran"] == []
    for name, experiment in results["experiments"].items():
        assert ([r["accuracy"] for r in again["experiments"][name]["runs"]]
                == [r["accuracy"] for r in experiment["runs"]])
    # The report: one table and one plot per experiment, the results copied.
    docs = str(tmp_path / "docs")
    page = report.write(os.path.join(model_dir, "results.json"), docs)
    text = open(page).read()
    for name, title in report.TITLES.items():
        assert f"## {title}" in text
        plot = os.path.join(docs, f"fashion_mnist_exp{name[0]}.png")
        assert os.path.getsize(plot) > 0
    assert results["commit"] in text
    assert os.path.exists(os.path.join(docs, "fashion_mnist_results.json"))
    # Resuming with other training settings is refused.
    other = parse(TINY + ["--model_dir=" + model_dir, "--epochs=2"])
    with pytest.raises(ValueError, match="epochs: 1 then 2"):
        study.run(other, datasets_override=tiny_data())


def test_unknown_experiment_is_an_error(tmp_path):
    values = parse(["--model_dir=" + str(tmp_path), "--experiments=6_magic"])
    with pytest.raises(ValueError, match="6_magic"):
        study.run(values, datasets_override=tiny_data())


@pytest.mark.slow
@pytest.mark.skipif(find_folder() is None, reason="Fashion-MNIST not installed")
def test_quick_study_runs_as_a_script_from_any_folder(tmp_path):
    model_dir = str(tmp_path / "quick")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)
    subprocess.run([sys.executable,
                    os.path.join(ROOT, "recipes", "fashion_mnist_study.py"),
                    "--quick", "--model_dir=" + model_dir],
                   cwd=str(tmp_path), env=env, check=True,
                   capture_output=True, timeout=900)
    with open(os.path.join(model_dir, "results.json")) as f:
        results = json.load(f)
    check_results(results, os.path.join(model_dir, "runs"))
    assert results["config"]["quick"] is True
