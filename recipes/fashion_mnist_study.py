r"""The seed papers' claims measured on Fashion-MNIST, with seeds and spread.

    python recipes/fashion_mnist_study.py --model_dir=DIR [--quick]

Five experiments on a small BatchNormalization ConvNet (see
`recipes/fashion_mnist_runs.py`), trained with plain `model.fit` on a fixed
subset of the training images and evaluated on all 10,000 test images:

1. Network Slimming (Liu et al. 2017): train with `GammaL1`, prune 30/50/70%
   of the channels by one global |gamma| threshold, fine-tune; against the
   dense network.
2. ISTA (Ye et al. 2018): from the trained dense network, models A, B, C
   with increasing `rho`; slim the zero-gamma channels (constants folded),
   fine-tune; plus a network of B's size (uniform widths) from scratch.
3. Rethinking (Liu et al. 2019): global-gamma and L1-norm pruning at one
   ratio, fine-tuned against Scratch-E and Scratch-B, over seeds.
4. Rethinking, Figure 3: the widths slimming found against uniform widths
   with the same parameter count, both trained from scratch.
5. Rethinking, Section 6: lottery-ticket initialisation against a random
   re-initialisation for unstructured magnitude pruning, at learning rates
   0.1 and 0.01.

Every finished run writes `DIR/runs/<run>.json` and is skipped on a rerun;
the study writes `DIR/results.json`. `--quick` runs everything with one seed
on a small subset (a smoke run: its numbers mean little).
"""

import os
import sys
import time

if __package__ in (None, ""):  # run as a script: import this repository
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import keras_slim  # noqa: E402
from recipes import fashion_mnist_flags  # noqa: E402
from recipes import fashion_mnist_runs as lib  # noqa: E402
from recipes.fashion_mnist_data import load_fashion_mnist  # noqa: E402
from recipes.fashion_mnist_flags import EXPERIMENTS, config_from_flags, define_flags  # noqa: E402


def _data(config, data_dir, datasets_override):
    (x_train, y_train), (x_test, y_test) = (
        datasets_override or load_fashion_mnist(data_dir))

    def prepare(x, y, n):
        x = np.asarray(x[:n], "float32") / 255.0
        return x[..., None], np.asarray(y[:n], "int32")

    return (prepare(x_train, y_train, config["train_examples"]),
            prepare(x_test, y_test, config["test_examples"]))


class Study:
    """The five experiments over one `Runs` folder; shared runs run once."""

    def __init__(self, config, train, test, runs):
        self.c, self.train, self.test, self.runs = config, train, test, runs

    # -- training blocks ------------------------------------------------------

    def _fit(self, model, epochs, learning_rate, seed, **kwargs):
        return lib.fit(model, self.train, epochs, learning_rate, seed,
                       self.c["batch_size"], **kwargs)

    def _record(self, model, seed, **extra):
        return dict(lib.describe(model, self.test), seed=seed, **extra)

    def initial(self, seed):
        """The dense network's initial weights for `seed` (deterministic)."""
        keras.utils.set_random_seed(seed)
        return lib.build_convnet(self.c["widths"])

    def dense(self, seed, learning_rate=None):
        lr = self.c["learning_rate"] if learning_rate is None else learning_rate

        def train():
            model = self.initial(seed)
            initial = lib.checksum(model)
            self._fit(model, self.c["epochs"], lr, seed)
            return self._record(model, seed, epochs=self.c["epochs"],
                                learning_rate=lr,
                                initial_checksum=initial), model
        return self.runs.run(f"dense-lr{lr:g}-s{seed}", train, keep_model=True)

    def sparse(self, seed):
        """Trained from scratch with Network Slimming's L1 on gammas."""
        def train():
            model = keras_slim.add_gamma_regularizer(
                self.initial(seed), keras_slim.GammaL1(self.c["slimming_s"]))
            self._fit(model, self.c["epochs"], self.c["learning_rate"], seed)
            return self._record(model, seed, epochs=self.c["epochs"],
                                s=self.c["slimming_s"]), model
        return self.runs.run(f"sparse-s{seed}", train, keep_model=True)

    def fine_tune(self, name, source, plan, seed, **extra):
        """Slim `source` by `plan`, record it, fine-tune without penalty."""
        def train():
            slim = keras_slim.slim_model(source, plan)
            pruned = lib.accuracy(slim, self.test)
            slim = keras_slim.remove_gamma_regularizer(slim)
            self._fit(slim, self.c["finetune_epochs"],
                      self.c["finetune_learning_rate"], seed)
            return self._record(slim, seed, pruned_accuracy=pruned,
                                epochs=self.c["finetune_epochs"],
                                **extra), slim
        return self.runs.run(name, train, keep_model=True)

    def scratch(self, name, architecture, seed, epochs, **extra):
        """`architecture` re-initialised and trained from scratch."""
        def train():
            model = keras_slim.reinitialize(
                keras_slim.remove_gamma_regularizer(architecture),
                seed=seed + 1000)
            self._fit(model, epochs, self.c["learning_rate"], seed)
            return self._record(model, seed, epochs=epochs, **extra), model
        return self.runs.run(name, train)[0]

    def slimmed(self, seed, ratio):
        """Network Slimming at `ratio` (experiment 1's runs)."""
        sparse = self.sparse(seed)[1]
        plan = keras_slim.plan_global_gamma(sparse, ratio)
        return self.fine_tune(f"slimming-r{ratio:g}-s{seed}", sparse, plan,
                              seed, ratio=ratio)

    # -- the experiments ------------------------------------------------------

    def network_slimming(self):
        rows = []
        for seed in self.c["seeds"]:
            rows.append(dict(self.dense(seed)[0], label="dense"))
            rows.append(dict(self.sparse(seed)[0], label="sparse-trained"))
            for ratio in self.c["ratios"]:
                record = self.slimmed(seed, ratio)[0]
                rows.append(dict(record, label=f"pruned {ratio:.0%} + fine-tune"))
                rows.append(dict(record, label=f"pruned {ratio:.0%}, no fine-tune",
                                 accuracy=record["pruned_accuracy"]))
        return rows

    def ista(self):
        rows = []
        for seed in self.c["ista_seeds"]:
            dense = self.dense(seed)
            rows.append(dict(dense[0], label="base"))
            for letter, rho in zip("ABC", self.c["rho"]):
                name = f"ista-{letter}-rho{rho:g}-s{seed}"

                def train(rho=rho):
                    model = keras.models.clone_model(dense[1])
                    model.set_weights(dense[1].get_weights())
                    history = self._fit(model, self.c["ista_epochs"],
                                        self.c["ista_learning_rate"], seed,
                                        decay=False,
                                        callbacks=[keras_slim.ISTAGamma(rho)])
                    zero = history.history["gamma_zero_fraction"][-1]
                    return self._record(model, seed, rho=rho,
                                        gamma_zero_fraction=float(zero),
                                        epochs=self.c["ista_epochs"]), model
                sparse = self.runs.run(name, train, keep_model=True)
                plan = keras_slim.plan_zero_gamma(sparse[1])
                tuned = self.fine_tune(f"{name}-slim", sparse[1], plan, seed,
                                       rho=rho)[0]
                rows.append(dict(sparse[0], label=f"{letter}: after ISTA"))
                rows.append(dict(tuned, label=f"{letter}: slim, no fine-tune",
                                 accuracy=tuned["pruned_accuracy"]))
                rows.append(dict(tuned, label=f"{letter}: slim + fine-tune"))
                if letter == "ABC"[len(self.c["rho"]) // 2]:  # B's size
                    plan, ratio = lib.plan_equal_params(dense[1],
                                                        tuned["params"])
                    reference = keras_slim.slim_model(dense[1], plan)
                    rows.append(dict(self.scratch(
                        f"ista-reference-s{seed}", reference, seed,
                        self.c["epochs"], uniform_ratio=ratio),
                        label="reference (B's size, uniform, scratch)"))
        return rows

    def rethinking(self):
        rows, ratio = [], self.c["rethinking_ratio"]
        epochs = self.c["epochs"]
        for seed in self.c["seeds"]:
            dense = self.dense(seed)
            rows.append(dict(dense[0], label="unpruned", method="-"))
            tuned_gamma = self.slimmed(seed, ratio)
            plan = keras_slim.plan_l1_norm(dense[1], ratio)
            tuned_l1 = self.fine_tune(f"l1-r{ratio:g}-s{seed}", dense[1], plan,
                                      seed, ratio=ratio)
            for method, (record, slim) in (("global_gamma", tuned_gamma),
                                           ("l1_norm", tuned_l1)):
                rows.append(dict(record, label="fine-tuned", method=method))
                budget = keras_slim.scratch_budget(
                    dense[0]["macs"], record["macs"], epochs,
                    cap=self.c["scratch_b_cap"])
                for kind, n in (("E", epochs), ("B", budget)):
                    rows.append(dict(self.scratch(
                        f"scratch-{kind}-{method}-r{ratio:g}-s{seed}", slim,
                        seed, n, ratio=ratio), label=f"Scratch-{kind}",
                        method=method))
        return rows

    def architecture(self):
        rows, epochs = [], self.c["epochs"]
        for seed in self.c["seeds"]:
            dense = self.dense(seed)
            for ratio in self.c["ratios"]:
                slim = self.slimmed(seed, ratio)[1]
                found = self.scratch(
                    f"scratch-E-global_gamma-r{ratio:g}-s{seed}", slim, seed,
                    epochs, ratio=ratio)
                rows.append(dict(found, label="slimming widths", ratio=ratio))
                plan, uniform = lib.plan_equal_params(dense[1], found["params"])
                rows.append(dict(self.scratch(
                    f"uniform-r{ratio:g}-s{seed}",
                    keras_slim.slim_model(dense[1], plan), seed, epochs,
                    ratio=ratio, uniform_ratio=uniform),
                    label="uniform widths", ratio=ratio))
        return rows

    def lottery(self):
        rows, sparsity = [], self.c["lottery_sparsity"]
        epochs = self.c["epochs"]
        for lr in self.c["lottery_learning_rates"]:
            for seed in self.c["lottery_seeds"]:
                dense = self.dense(seed, lr)
                rows.append(dict(dense[0], label="dense", learning_rate=lr))
                masks = keras_slim.magnitude_masks(dense[1], sparsity)
                initial = self.initial(seed)
                if not np.isclose(lib.checksum(initial),
                                  dense[0]["initial_checksum"], rtol=1e-6):
                    raise RuntimeError(f"Seed {seed} rebuilt other initial "
                                       "weights than the dense run's.")
                initial = keras_slim.snapshot_weights(initial)
                starts = {
                    "winning ticket": lambda: keras_slim.rewind(
                        dense[1], initial, masks=masks),
                    "random re-init": lambda: keras_slim.reinitialize(
                        dense[1], seed=seed + 1000),
                }
                for label, start in starts.items():
                    def train(start=start):
                        model = start()
                        mask = keras_slim.MagnitudeMask(masks=masks)
                        self._fit(model, epochs, lr, seed, callbacks=[mask])
                        kept = lib.kept_share(model, masks)
                        return self._record(model, seed, epochs=epochs,
                                            sparsity=sparsity,
                                            learning_rate=lr,
                                            kept_share=kept), model
                    kind = "ticket" if "ticket" in label else "random"
                    record = self.runs.run(
                        f"lottery-{kind}-lr{lr:g}-p{sparsity:g}-s{seed}",
                        train)[0]
                    rows.append(dict(record, label=label))
        return rows


def _write_results(flags_obj, config, train, test, runs, experiments, start,
                   commit):
    unique = {}
    for name in runs.ran + runs.skipped:
        with open(os.path.join(runs.folder, name + ".json")) as f:
            unique[name] = json.load(f)["wall_seconds"]
    results = {
        "commit": commit,  # HEAD when this invocation started
        "command": "python recipes/fashion_mnist_study.py "
                   f"--model_dir={flags_obj.model_dir}"
                   + (" --quick" if flags_obj.quick else ""),
        "config": config,
        "dataset": {"name": "Fashion-MNIST", "train_examples": len(train[0]),
                    "test_examples": len(test[0])},
        "experiments": dict(experiments),
        "finished": list(experiments) == config["experiments"],
        "wall_seconds_runs": round(sum(unique.values()), 2),
        "wall_seconds_this_invocation": round(time.perf_counter() - start, 2),
        "ran": list(runs.ran),
        "skipped": sorted(set(runs.skipped)),
    }
    path = os.path.join(flags_obj.model_dir, "results.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(path + ".tmp", path)
    print(f"Wrote {path} ({', '.join(experiments)})", flush=True)
    return results


def run(flags_obj, datasets_override=None):
    """Run the study; returns the dict written to `model_dir/results.json`.

    Args:
        flags_obj: the parsed flags (see `define_flags`).
        datasets_override: `((x_train, y_train), (x_test, y_test))` uint8
            images and labels used instead of Fashion-MNIST (tests).
    """
    if not flags_obj.model_dir:
        raise ValueError("Expected `--model_dir`. Received: none")
    start = time.perf_counter()
    commit = lib.git_commit()
    config = config_from_flags(flags_obj)
    train, test = _data(config, flags_obj.data_dir, datasets_override)
    lib.check_config(flags_obj.model_dir, config)
    runs = lib.Runs(flags_obj.model_dir, commit=commit,
                    log=lambda line: print(line, flush=True))
    study = Study(config, train, test, runs)
    experiments = {}
    methods = dict(zip(EXPERIMENTS, (study.network_slimming, study.ista,
                                     study.rethinking, study.architecture,
                                     study.lottery)))
    results = None
    for name in config["experiments"]:
        began = time.perf_counter()
        rows = methods[name]()
        experiments[name] = {
            "runs": rows,
            "summary": lib.summarize(rows),
            # the runs' own training time, also for runs done earlier
            "wall_seconds": sum(r["wall_seconds"] for r in
                                {r["name"]: r for r in rows}.values()),
            "wall_seconds_this_invocation": round(time.perf_counter() - began, 2),
        }
        # Written after every experiment: an interrupted study still leaves
        # the finished ones (the next run redoes nothing it finished).
        results = _write_results(flags_obj, config, train, test, runs,
                                 experiments, start, commit)
    return results


def main(_):
    run(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    flags.adopt_module_key_flags(fashion_mnist_flags)  # listed by --help
    app.run(main)
