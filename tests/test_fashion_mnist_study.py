"""The Fashion-MNIST evidence study: every experiment reports numbers."""

import json
import math
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from absl import flags

import keras_slim
from studies.fashion_mnist import report, study
from studies.fashion_mnist import runs as lib
from studies.fashion_mnist.data import find_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--train_examples=64", "--validation_examples=16", "--budget_runs=3",
        "--test_examples=50", "--widths=4,8,8,8",
        "--batch_size=32", "--epochs=1", "--ista_max_epochs=1",
        "--seeds=0", "--ista_seeds=0", "--lottery_seeds=0",
        "--ratios=0.5", "--rethinking_ratio=0.5", "--rho=20",
        "--lottery_learning_rates=0.1", "--lottery_sparsity=0.5",
        "--ista_paper_max_epochs=2", "--ista_warmup_epochs=1"]


def tiny_data():
    rng = np.random.default_rng(0)
    return ((rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
             rng.integers(0, 10, 64, dtype=np.uint8)),
            (rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
             rng.integers(0, 10, 50, dtype=np.uint8)))


class MacsRuntime(keras_slim.Runtime):
    """Experiment 6's timings without LiteRT: milliseconds from MACs."""

    name = "macs"

    def __init__(self, batch, runs):
        super().__init__(batch=batch)

    def time(self, models):
        return [0.01 + keras_slim.count_macs(m) * self.batch / 1e7
                for m in models]


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
            path = os.path.join(runs_folder, row["name"] + ".json")
            with open(path) as f:
                record = json.load(f)
            # Each record carries its commit, seed, the study's settings and
            # both accuracies.
            assert record["commit"] == results["commit"]
            assert record["settings"] == {k: results["config"][k]
                                          for k in lib.RUN_SETTINGS}
            assert {"seed", "val_accuracy", "test_accuracy"} <= set(record)
    assert results["commit"]
    assert results["wall_seconds_runs"] > 0


def test_tiny_study_reports_every_experiment_and_resumes(tmp_path):
    model_dir = str(tmp_path / "records" / "w1")
    values = parse(TINY + ["--model_dir=" + model_dir])
    results = study.run(values, datasets_override=tiny_data(),
                        runtime_override=MacsRuntime)
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
    # ISTA follows Ye et al.'s protocol: model A from scratch (its initial
    # checksum is the seed's), rho at initialisation, no rescaling.
    rho = results["choices"]["rho"]
    assert rho["protocol"] == "paper" and rho["alpha"] == 1
    assert "warm_up" in rho  # A's rho is warmed up, as in the paper
    ista_rows = results["experiments"]["2_ista"]["runs"]
    stages = [r for r in ista_rows if "-paper-" in r["name"]
              and r["label"].endswith("after ISTA")]
    assert [r["label"][0] for r in stages] == ["A", "B", "C"]
    assert stages[0]["started_from"] is None
    assert all(1 <= r["epochs"] <= 2 for r in stages)
    assert all(s["channels_kept"] > 0
               for s in results["choices"]["ista_stops"])
    # Experiment 1 also fine-tunes the paper's way, with its own s chosen
    # on a grid whose choice is interior (or the grid's extensions ran out).
    full = results["choices"]["slimming_s_full_finetune"]
    tried = [e["s"] for e in full["candidates"]]
    assert full["interior"] == (min(tried) < full["value"] < max(tried))
    assert "pruned 50%, paper's fine-tune" in summary
    # The lottery's masks held through training: 50% of conv weights zero.
    for row in results["experiments"]["5_lottery_ticket"]["runs"]:
        if row["label"] != "dense":
            assert row["kept_share"] == pytest.approx(0.5, abs=0.01)
    # Every run's checkpoint between epochs is gone once its record is.
    assert not [f for f in os.listdir(os.path.join(model_dir, "runs"))
                if f.endswith(".partial.npz")]
    # A rerun runs nothing again and reports the same numbers.
    again = study.run(values, datasets_override=tiny_data(),
                        runtime_override=MacsRuntime)
    assert again["ran"] == []
    for name, experiment in results["experiments"].items():
        assert ([r["accuracy"] for r in again["experiments"][name]["runs"]]
                == [r["accuracy"] for r in experiment["runs"]])
    # The report: one table and one plot per experiment, the results copied.
    docs = str(tmp_path / "docs")
    page = report.write(os.path.join(model_dir, "results.json"), docs,
                        sweep_dir=str(tmp_path / "records"))
    text = open(page).read()
    # The width sweep: a verdict row per width for experiments 1, 3, 4.
    sweep = text[text.index("## Width sweep"):]
    assert sweep.count("| 1x (4-8-8-8, seeds 0) | **") == 3
    for name, title in report.TITLES.items():
        assert f"## {title}" in text
        plot = os.path.join(docs, f"exp{name[0]}.png")
        assert os.path.getsize(plot) > 0
    assert results["commit"] in text
    assert text.count("**Verdict:**") == len(study.EXPERIMENTS)
    # Each verdict is one of four outcomes, with its interval or reason.
    found = re.findall(r"\*\*Verdict:\*\* \*\*([a-z ]+)\*\*", text)
    assert len(found) == len(study.EXPERIMENTS)
    assert set(found) <= {"agrees", "disagrees", "inconclusive",
                          "not run as designed"}
    assert re.search(r"LiteRT latency \d+\.\d\d ms", text)
    assert "## Choices made on the validation split" in text
    assert re.search(r"Channels kept \(of the base's 28\): A \d+, B \d+, "
                     r"C \d+\.", text)
    assert "## The dense baseline" in text
    assert os.path.getsize(os.path.join(docs, "dense_curve.png")) > 0
    # An invocation of some experiments adds them to what the others wrote:
    # a study split between processes still leaves one complete file.
    path = os.path.join(model_dir, "results.json")
    os.remove(path)
    for name in reversed(study.EXPERIMENTS):
        part = study.run(parse(TINY + ["--model_dir=" + model_dir,
                                       "--experiments=" + name]),
                         datasets_override=tiny_data(),
                         runtime_override=MacsRuntime)
        assert part["ran"] == [] and part["finished"]
    assert list(part["experiments"]) == list(study.EXPERIMENTS)
    assert part["complete"]
    assert all(e["commit"] == results["commit"]
               for e in part["experiments"].values())
    assert part["wall_seconds_runs"] == results["wall_seconds_runs"]
    with open(path) as f:
        assert json.load(f)["experiments"] == part["experiments"]
    # One with other shared settings (ratios) replaces, not merges, what
    # was there.
    other = study.run(parse(TINY + ["--model_dir=" + model_dir,
                                    "--experiments=2_ista",
                                    "--ratios=0.4"]),
                      datasets_override=tiny_data(),
                      runtime_override=MacsRuntime)
    assert list(other["experiments"]) == ["2_ista"]
    assert not other["complete"]
    # Resuming with other training settings is refused.
    other = parse(TINY + ["--model_dir=" + model_dir, "--learning_rate=0.2"])
    with pytest.raises(ValueError, match="learning_rate: 0.1 then 0.2"):
        study.run(other, datasets_override=tiny_data(),
                  runtime_override=MacsRuntime)


class _Interrupted(Exception):
    pass


class _InterruptAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Interrupted


def test_an_interrupted_run_resumes_at_its_last_finished_epoch(tmp_path):
    rng = np.random.default_rng(0)
    data = (rng.uniform(size=(64, 28, 28, 1)).astype("float32"),
            rng.integers(0, 10, 64))
    path = str(tmp_path / "run.partial.npz")

    def fresh():
        keras.utils.set_random_seed(0)
        return lib.build_convnet([4, 8, 8, 8])

    first = fresh()
    with pytest.raises(_Interrupted):  # killed after its second epoch
        lib.fit(first, data, 4, 0.1, 0, 16, callbacks=[_InterruptAfter(1)],
                checkpoint=path)
    assert os.path.exists(path)
    saved = [w.copy() for w in first.get_weights()]
    model = fresh()
    history = lib.fit(model, data, 4, 0.1, 0, 16, checkpoint=path)
    assert history.resumed_at_epoch == 2
    assert len(history.history["loss"]) == 4
    # The optimizer's step count went on from the checkpoint, so the step
    # schedule ends where a run of 4 epochs ends: at a hundredth.
    numpy = keras.ops.convert_to_numpy
    assert int(numpy(model.optimizer.iterations)) == 4 * 4
    assert float(numpy(model.optimizer.learning_rate)) == pytest.approx(1e-3)
    # The checkpoint holds the weights: a finished run's resumes into a
    # fresh model unchanged, with nothing left to train.
    again = fresh()
    history = lib.fit(again, data, 4, 0.1, 0, 16, checkpoint=path)
    assert history.resumed_at_epoch == 4
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(a, b) for a, b in
               zip(saved, again.get_weights()))
    # A checkpoint of another architecture is refused, naming the file.
    keras.utils.set_random_seed(0)
    with pytest.raises(ValueError, match="run.partial.npz"):
        lib.fit(lib.build_convnet([4, 8, 8, 16]), data, 4, 0.1, 0, 16,
                checkpoint=path)


def test_unknown_experiment_is_an_error(tmp_path):
    values = parse(["--model_dir=" + str(tmp_path), "--experiments=6_magic"])
    with pytest.raises(ValueError, match="6_magic"):
        study.run(values, datasets_override=tiny_data(),
                        runtime_override=MacsRuntime)


@pytest.mark.slow
@pytest.mark.skipif(find_folder() is None, reason="Fashion-MNIST not installed")
def test_quick_study_runs_as_a_script_from_any_folder(tmp_path):
    model_dir = str(tmp_path / "quick")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)
    subprocess.run([sys.executable,
                    os.path.join(ROOT, "studies", "fashion_mnist", "study.py"),
                    "--quick", "--model_dir=" + model_dir],
                   cwd=str(tmp_path), env=env, check=True,
                   capture_output=True, timeout=900)
    with open(os.path.join(model_dir, "results.json")) as f:
        results = json.load(f)
    check_results(results, os.path.join(model_dir, "runs"))
    assert results["config"]["quick"] is True


def _record(name):
    return {"accuracy": 0.5, "params": 1, "name": name}, None


def test_runs_shared_by_two_processes_take_free_runs_first(tmp_path):
    runs = lib.Runs(str(tmp_path), log=lambda line: None, poll_seconds=0.05)
    other = subprocess.Popen([sys.executable, "-c",
                              "import time; time.sleep(30)"])
    try:
        with open(runs._lock_path("held"), "w") as f:
            f.write(str(other.pid))
        order = []

        def job(name):
            return name, lambda: (order.append(name), _record(name))[1], False
        # "held" is another live process's: the free run goes first, then
        # this process waits for the held one's record.
        def finish_held():
            with open(os.path.join(runs.folder, "held.json"), "w") as f:
                json.dump({"accuracy": 0.9, "params": 1}, f)
        import threading
        timer = threading.Timer(0.5, finish_held)
        timer.start()
        runs.run_all([job("held"), job("free")])
        timer.join()
        assert order == ["free"]
        assert runs.run("held", None)[0]["accuracy"] == 0.9
    finally:
        other.kill()
        other.wait()
    # A lock left by a process that is gone is taken over.
    with open(runs._lock_path("stale"), "w") as f:
        f.write(str(other.pid))
    record, _ = runs.run("stale", lambda: _record("stale"))
    assert record["name"] == "stale"
    assert not os.path.exists(runs._lock_path("stale"))


def test_progress_page_lists_finished_runs_and_dense_curves(tmp_path):
    from studies.fashion_mnist.claims import progress_page

    runs = tmp_path / "runs"
    runs.mkdir()
    for name, curve in (("dense-e2-lr0.1-s0", [0.5, 0.7]),
                        ("sparse-l10.1-e2-s0", [0.4, 0.6])):
        with open(runs / f"{name}.json", "w") as f:
            json.dump({"accuracy": 0.65, "val_accuracy": curve[-1],
                       "validation_curve": curve, "epochs": 2, "seed": 0,
                       "params": 100, "wall_seconds": 60,
                       "commit": "abc"}, f)
    page = open(progress_page(str(runs), str(tmp_path))).read()
    assert "| dense-e2-lr0.1-s0 | `abc` | 0 | 2 | 70.00 | 65.00 |" in page
    assert "| sparse-l10.1-e2-s0 | `abc` | 0 | 2 | 60.00 | 65.00 |" in page
    assert "Status: in progress" in page
    # Only the dense runs are the baseline's curve.
    baseline = page[page.index("## The dense baseline"):]
    assert "dense-e2-lr0.1-s0" in baseline and "sparse" not in baseline
    assert (tmp_path / "dense_curve.png").stat().st_size > 0


def test_t_interval_matches_a_hand_computation():
    from studies.fashion_mnist import verdicts

    # mean 2, sample sd 1, n = 4: half-width t(3) * 1 / 2 = 3.182 / 2
    mean, low, high = verdicts.interval([1.0, 2.0, 3.0, 2.0])
    sd = math.sqrt(2 / 3)
    assert mean == 2.0
    assert low == pytest.approx(2 - 3.182 * sd / 2)
    assert high == pytest.approx(2 + 3.182 * sd / 2)
    assert verdicts.interval([1.5])[1:] == (None, None)
    assert verdicts.t95(7) == 2.365 and verdicts.t95(35) == 2.042


@pytest.mark.parametrize("diffs, threshold, side, expected", [
    ([1.0, 1.2, 0.9], 0.0, "above", "agrees"),        # all well above 0
    ([-1.0, -1.2, -0.9], 0.0, "above", "disagrees"),  # all well below 0
    ([-1.0, 1.0, 0.1], 0.0, "above", "inconclusive"),  # spans 0
    ([2.0], 0.0, "above", "inconclusive"),            # one seed: no interval
    ([0.1, -0.1, 0.05], 0.3, "below", "agrees"),      # no advantage
    ([1.0, 1.1, 1.2], 0.3, "below", "disagrees"),
    ([-0.1, -0.2, -0.15], -0.3, "above", "agrees"),  # keeps its accuracy
])
def test_verdicts_of_known_differences(diffs, threshold, side, expected):
    from studies.fashion_mnist import verdicts

    part = verdicts.decide(diffs, threshold, side, "x")
    assert part["verdict"] == expected
    assert expected in verdicts.describe(part)


def test_combined_verdict_and_paired_differences():
    from studies.fashion_mnist import verdicts

    def part(v):
        return {"verdict": v}
    assert verdicts.combine([part("agrees"), part("agrees")]) == "agrees"
    assert verdicts.combine([part("agrees"), part("inconclusive")]) \
        == "inconclusive"
    assert verdicts.combine([part("inconclusive"), part("disagrees")]) \
        == "disagrees"
    assert verdicts.combine([part("disagrees"),
                             verdicts.not_as_designed("why")]) \
        == "not run as designed"
    rows = [{"label": "a", "seed": 0, "accuracy": 0.90},
            {"label": "b", "seed": 0, "accuracy": 0.88},
            {"label": "a", "seed": 1, "accuracy": 0.91},
            {"label": "b", "seed": 2, "accuracy": 0.80}]  # seed 2: no pair
    assert verdicts.paired(rows, {"label": "a"}, {"label": "b"}) \
        == [pytest.approx(2.0)]


def test_unequal_latencies_are_not_a_disagreement():
    from studies.fashion_mnist import claims

    def row(label, seed, latency, accuracy):
        return {"label": label, "seed": seed, "latency_of_dense": latency,
                "accuracy": accuracy}
    off = {"runs": [row("latency_aware", 0, 0.52, 0.80),
                    row("global_gamma", 0, 0.45, 0.90)]}
    assert claims.verdict("6_budget", off, {}).startswith(
        "**not run as designed**")
    equal = {"runs": [row("latency_aware", s, 0.50, 0.90 + s / 1000)
                      for s in range(3)]
             + [row("global_gamma", s, 0.505, 0.85) for s in range(3)]}
    assert claims.verdict("6_budget", equal, {}).startswith("**agrees**")


def test_a_missing_model_is_regenerated_and_its_record_kept(tmp_path):
    runs = lib.Runs(str(tmp_path), log=lambda line: None)
    calls = []

    def train():
        calls.append(1)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        return {"accuracy": 0.5 + 0.1 * len(calls), "params": 3}, model
    record, model = runs.run("r", train, keep_model=True)
    assert record["accuracy"] == 0.6 and model is not None
    os.remove(os.path.join(runs.folder, "r.keras"))  # not in the repository
    # Its record is enough for a table: nothing trains.
    assert runs.record("r", train, keep_model=True)["accuracy"] == 0.6
    runs.run_all([("r", train, True)])
    assert len(calls) == 1
    # A later run that needs the model trains it again; the record stays.
    record, model = runs.run("r", train, keep_model=True)
    assert len(calls) == 2 and record["accuracy"] == 0.6
    assert isinstance(model, keras.Model)
    with open(os.path.join(runs.folder, "r.regenerated.json")) as f:
        check = json.load(f)
    assert check["same"] is False
    assert check["regenerated"]["accuracy"] == pytest.approx(0.7)
    assert os.path.exists(os.path.join(runs.folder, "r.keras"))
    # Every record carries its provenance, the settings and the command.
    with open(os.path.join(runs.folder, "r.json")) as f:
        saved = json.load(f)
    assert set(saved["provenance"]["versions"]) == {
        "keras_slim", "keras", "tensorflow", "numpy"}
    assert saved["provenance"]["threads"]["cpu_count"] == os.cpu_count()


def test_latency_spread_is_reported_per_seed():
    runs = [{"seed": 1, "latency_ratio_spread": [0.99, 1.02]},
            {"seed": 0, "latency_ratio_spread": [0.98, 1.01]}, {"seed": 2}]
    text = report._spread({"runs": runs})
    assert text.endswith("0.980 to 1.010 (seed 0), 0.990 to 1.020 (seed 1).")
    assert report._spread({"runs": [{"seed": 0}]}) == ""
