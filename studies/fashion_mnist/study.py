r"""The seed papers' claims measured on Fashion-MNIST, with seeds and spread.

    python studies/fashion_mnist/study.py --model_dir=DIR [--quick]

Six experiments on a small BatchNormalization ConvNet (see
`studies/fashion_mnist/runs.py`), trained with plain `model.fit` on the
60,000 training images less a fixed, seeded validation split of 5,000, and
evaluated on all 10,000 test images. Every choice is made on the
validation split by a paper's rule (`studies/fashion_mnist/choices.py`):
the epochs, Network Slimming's `s`, ISTA's `rho` and when each ISTA stage
stops; fine-tuning runs a quarter of the epochs at the lowest learning rate
and Scratch-B gets the large model's computation (Rethinking's CIFAR rules).

1. Network Slimming (Liu et al. 2017): train with `GammaL1`, prune 30/50/70%
   of the channels by one global |gamma| threshold, fine-tune; against the
   dense network.
2. ISTA (Ye et al. 2018): from the trained dense network, models A -> B -> C
   with increasing `rho`, each stage from the one before and until a
   plateau; slim the zero-gamma channels (constants folded), fine-tune;
   plus a network of B's size (uniform widths) from scratch.
3. Rethinking (Liu et al. 2019): global-gamma and L1-norm pruning at one
   ratio, fine-tuned against Scratch-E and Scratch-B, over seeds.
4. Rethinking, Figure 3: the widths slimming found against uniform widths
   with the same parameter count, both trained from scratch.
5. Rethinking, Section 6: lottery-ticket initialisation against a random
   re-initialisation for unstructured magnitude pruning, at learning rates
   0.1 and 0.01.
6. Budgets: the latency-aware plan and the global-gamma plan at an equal
   measured LiteRT latency, both fine-tuned (`studies/fashion_mnist/budget.py`).

Every finished run writes `DIR/runs/<run>.json` (its commit, seed, settings,
validation and test accuracy) and is skipped on a rerun; the study writes
`DIR/results.json`, adding its experiments to those other invocations on
`DIR` wrote there. Two processes started with the same command share the
runs (lock files), so two trainings run at a time; `--experiments=` can
split the study between them and one results file still gathers it. `--quick` runs
everything with one seed on a small subset (a smoke run: its numbers mean
little).
"""

import os
import time

if not __package__:  # run as a file: import this repository
    import _bootstrap  # noqa: F401
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import contextlib  # noqa: E402
import json  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import keras_slim  # noqa: E402
from keras_slim.core import files  # noqa: E402
from studies.fashion_mnist import choices as choices  # noqa: E402
from studies.fashion_mnist import flags as study_flags  # noqa: E402
from studies.fashion_mnist import runs as lib  # noqa: E402
from studies.fashion_mnist.budget import budget_experiment  # noqa: E402
from studies.fashion_mnist.data import data_files, load_fashion_mnist  # noqa: E402
from studies.fashion_mnist.flags import EXPERIMENTS, config_from_flags, define_flags  # noqa: E402


def _data(config, data_dir, datasets_override):
    """`(train, validation, test)`: the validation split is a fixed,
    seeded draw of `validation_examples` of the first `train_examples`
    training images, held out from training."""
    (x_train, y_train), (x_test, y_test) = (
        datasets_override or load_fashion_mnist(data_dir))

    def prepare(x, y):
        return (np.asarray(x, "float32")[..., None] / 255.0,
                np.asarray(y, "int32"))

    n = config["train_examples"]
    order = np.random.default_rng(config["split_seed"]).permutation(n)
    held = np.sort(order[:config["validation_examples"]])
    kept = np.sort(order[config["validation_examples"]:])
    x_train, y_train = np.asarray(x_train[:n]), np.asarray(y_train[:n])
    m = config["test_examples"]
    return (prepare(x_train[kept], y_train[kept]),
            prepare(x_train[held], y_train[held]),
            prepare(x_test[:m], y_test[:m]))


class Study:
    """The five experiments over one `Runs` folder; shared runs run once.

    Every choice (epochs, Network Slimming's s, ISTA's rho and stops) is
    made on the validation split and kept in `self.choices`, with the
    validation accuracy it rests on; the test images are only evaluated.
    """

    def __init__(self, config, train, validation, test, runs,
                 runtime_override=None):
        self.c, self.runs = config, runs
        self.runtime_override = runtime_override
        self.train, self.validation, self.test = train, validation, test
        self.choices = {}

    # -- training blocks ------------------------------------------------------

    def _fit(self, model, name, epochs, learning_rate, seed,
             schedule=None, callbacks=()):
        schedule = schedule or self.c["schedule"]
        log = lib.EpochLog(name, epochs, self.runs.log)
        # A run resumes from its last epoch; not one whose callbacks keep
        # state across epochs (ISTA's plateau, the lottery's masks).
        checkpoint = None if callbacks else self.runs.partial_path(name)
        return lib.fit(model, self.train, epochs, learning_rate, seed,
                       self.c["batch_size"], schedule=schedule,
                       callbacks=[*callbacks, log],
                       validation=self.validation, checkpoint=checkpoint)

    def _record(self, model, seed, history=None, **extra):
        record = dict(lib.describe(model, self.test), seed=seed, **extra)
        record["test_accuracy"] = record["accuracy"]
        record["val_accuracy"] = lib.accuracy(model, self.validation)
        if history is not None:
            record["validation_curve"] = [
                float(v) for v in history.history["val_accuracy"]]
            record["loss_curve"] = [float(v) for v in history.history["loss"]]
            if hasattr(history, "resumed_at_epoch"):
                record["resumed_at_epoch"] = history.resumed_at_epoch
        return record

    @property
    def finetune_epochs(self):
        return max(1, round(self.epochs * self.c["finetune_fraction"]))

    @property
    def finetune_learning_rate(self):
        return self.c["learning_rate"] / 100  # the step schedule's lowest

    def initial(self, seed):
        """The dense network's initial weights for `seed` (deterministic)."""
        keras.utils.set_random_seed(seed)
        return lib.build_convnet(self.c["widths"])

    def dense_job(self, seed, learning_rate=None, epochs=None):
        lr = self.c["learning_rate"] if learning_rate is None else learning_rate
        epochs = self.epochs if epochs is None else epochs
        name = f"dense-e{epochs}-lr{lr:g}-s{seed}"

        def train():
            model = self.initial(seed)
            initial = lib.checksum(model)
            history = self._fit(model, name, epochs, lr, seed)
            return self._record(model, seed, history, epochs=epochs,
                                learning_rate=lr,
                                initial_checksum=initial), model
        return name, train, True

    def dense(self, seed, learning_rate=None, epochs=None):
        return self.runs.run(*self.dense_job(seed, learning_rate, epochs))

    def sparse_job(self, seed, s=None):
        s = self.slimming_s if s is None else s
        name = f"sparse-l1{s:.3g}-e{self.epochs}-s{seed}"

        def train():
            model = keras_slim.add_gamma_regularizer(
                self.initial(seed), keras_slim.GammaL1(s))
            history = self._fit(model, name, self.epochs,
                                self.c["learning_rate"], seed)
            return self._record(model, seed, history, epochs=self.epochs,
                                s=s), model
        return name, train, True

    def sparse(self, seed, s=None):
        return self.runs.run(*self.sparse_job(seed, s))

    def fine_tune_job(self, name, source, plan, seed, full_schedule=False,
                      **extra):
        """Slim `source()` by `plan(model)`, record it, fine-tune without
        penalty: a quarter of the epochs at the lowest learning rate, or
        with `full_schedule` the whole training schedule from the
        inherited weights (Network Slimming's own fine-tune)."""
        epochs, lr, schedule = (
            (self.epochs, self.c["learning_rate"], self.c["schedule"])
            if full_schedule else
            (self.finetune_epochs, self.finetune_learning_rate, "constant"))

        def train():
            model = source()
            slim = keras_slim.slim_model(model, plan(model))
            pruned = lib.accuracy(slim, self.test)
            pruned_val = lib.accuracy(slim, self.validation)
            slim = keras_slim.remove_gamma_regularizer(slim)
            history = self._fit(slim, name, epochs, lr, seed,
                                schedule=schedule)
            return self._record(slim, seed, history, pruned_accuracy=pruned,
                                pruned_val_accuracy=pruned_val,
                                epochs=epochs, learning_rate=lr,
                                fine_tune_schedule=schedule,
                                **extra), slim
        return name, train, True

    def scratch_job(self, name, architecture, seed, epochs, **extra):
        """`architecture()` re-initialised and trained from scratch."""
        def train():
            model = keras_slim.reinitialize(
                keras_slim.remove_gamma_regularizer(architecture()),
                seed=seed + 1000)
            history = self._fit(model, name, epochs, self.c["learning_rate"],
                                seed)
            return self._record(model, seed, history, epochs=epochs,
                                **extra), model
        return name, train, False

    def slimmed_job(self, seed, ratio, s=None):
        """Network Slimming at `ratio` (experiment 1's runs)."""
        s = self.slimming_s if s is None else s
        return self.fine_tune_job(
            f"slimming-l1{s:.3g}-e{self.epochs}-r{ratio:g}-s{seed}",
            lambda: self.sparse(seed, s)[1],
            lambda m: keras_slim.plan_global_gamma(m, ratio), seed,
            ratio=ratio, s=s)

    def slimmed(self, seed, ratio):
        return self.runs.run(*self.slimmed_job(seed, ratio))

    def paper_slimmed_job(self, seed, ratio, s=None):
        """Network Slimming at `ratio`, fine-tuned the paper's way: the
        full training schedule from the inherited weights, at its `s`."""
        s = self.paper_s if s is None else s
        return self.fine_tune_job(
            f"slimming-fullft-l1{s:.3g}-e{self.epochs}-r{ratio:g}-s{seed}",
            lambda: self.sparse(seed, s)[1],
            lambda m: keras_slim.plan_global_gamma(m, ratio), seed,
            full_schedule=True, ratio=ratio, s=s)

    # -- choices on the validation split --------------------------------------

    @property
    def epochs(self):
        if "epochs" not in self.choices:
            self.choices["epochs"] = choices.choose_epochs(self)
        return self.choices["epochs"]["value"]

    @property
    def slimming_s(self):
        if "slimming_s" not in self.choices:
            self.choices["slimming_s"] = choices.choose_slimming_s(self)
        return self.choices["slimming_s"]["value"]

    @property
    def paper_s(self):
        """`s` chosen after the paper's fine-tune, on a grid extended until
        the choice is interior."""
        if "slimming_s_full_finetune" not in self.choices:
            self.choices["slimming_s_full_finetune"] = (
                choices.choose_paper_s(self))
        return self.choices["slimming_s_full_finetune"]["value"]

    # -- the experiments ------------------------------------------------------

    def network_slimming(self):
        seeds = self.c["seeds"]
        self.runs.run_all([self.dense_job(s) for s in seeds]
                          + [self.sparse_job(s) for s in seeds])
        self.runs.run_all([self.slimmed_job(s, r) for s in seeds
                           for r in self.c["ratios"]])
        rows = self._paper_slimming() if self.c["slimming_full_finetune"] else []
        recorded = self.runs.record  # records alone: no model regenerated
        for seed in seeds:
            rows.append(dict(recorded(*self.dense_job(seed)), label="dense"))
            rows.append(dict(recorded(*self.sparse_job(seed)),
                             label="sparse-trained"))
            for ratio in self.c["ratios"]:
                record = recorded(*self.slimmed_job(seed, ratio))
                rows.append(dict(record, label=f"pruned {ratio:.0%} + fine-tune"))
                rows.append(dict(record, label=f"pruned {ratio:.0%}, no fine-tune",
                                 accuracy=record["pruned_accuracy"],
                                 val_accuracy=record["pruned_val_accuracy"]))
        return rows

    def _paper_slimming(self):
        """Experiment 1's rows fine-tuned the paper's way (full schedule,
        its own `s`)."""
        seeds, ratios = self.c["seeds"], self.c["ratios"]
        self.runs.run_all([self.sparse_job(s, self.paper_s) for s in seeds])
        self.runs.run_all([self.paper_slimmed_job(s, r) for s in seeds
                           for r in ratios])
        rows = []
        for seed in seeds:
            rows.append(dict(self.runs.record(*self.sparse_job(seed,
                                                               self.paper_s)),
                             label="sparse-trained (full fine-tune's s)"))
            for ratio in ratios:
                record = self.runs.record(*self.paper_slimmed_job(seed, ratio))
                rows.append(dict(record, label=f"pruned {ratio:.0%}, "
                                               "paper's fine-tune"))
        return rows

    def ista(self):
        rows = []
        for seed in self.c["ista_seeds"]:
            rows.extend(choices.ista_chain(self, seed))
        return rows

    def rethinking(self):
        ratio, seeds = self.c["rethinking_ratio"], self.c["seeds"]
        epochs = self.epochs
        self.runs.run_all([self.dense_job(s) for s in seeds]
                          + [self.sparse_job(s) for s in seeds])
        l1_jobs = {s: self.fine_tune_job(
            f"l1-e{epochs}-r{ratio:g}-s{s}", lambda s=s: self.dense(s)[1],
            lambda m: keras_slim.plan_l1_norm(m, ratio), s, ratio=ratio)
            for s in seeds}
        self.runs.run_all([self.slimmed_job(s, ratio) for s in seeds]
                          + list(l1_jobs.values()))
        scratch, rows = [], []
        for seed in seeds:
            dense = self.dense(seed)
            rows.append(dict(dense[0], label="unpruned", method="-"))
            tuned = {"global_gamma": self.slimmed(seed, ratio),
                     "l1_norm": self.runs.run(*l1_jobs[seed])}
            for method, (record, slim) in tuned.items():
                rows.append(dict(record, label="fine-tuned", method=method))
                cap = self.c["scratch_b_cap"] or None
                budget = keras_slim.scratch_budget(
                    dense[0]["macs"], record["macs"], epochs, cap=cap)
                for kind, n in (("E", epochs), ("B", budget)):
                    job = self.scratch_job(
                        f"scratch-{kind}-{method}-e{n}-r{ratio:g}-s{seed}",
                        lambda slim=slim: slim, seed, n, ratio=ratio)
                    scratch.append(job)
                    rows.append((job[0], dict(label=f"Scratch-{kind}",
                                              method=method)))
        self.runs.run_all(scratch)
        jobs = {job[0]: job for job in scratch}
        return [dict(self.runs.run(*jobs[row[0]])[0], **row[1])
                if isinstance(row, tuple) else row for row in rows]

    def architecture(self):
        seeds, epochs = self.c["seeds"], self.epochs
        self.runs.run_all([self.slimmed_job(s, r) for s in seeds
                           for r in self.c["ratios"]])
        jobs, rows = [], []
        for seed in seeds:
            dense = self.dense(seed)
            for ratio in self.c["ratios"]:
                slim = self.slimmed(seed, ratio)[1]
                found = (f"scratch-E-global_gamma-e{epochs}-r{ratio:g}-s{seed}",
                         lambda slim=slim: slim)
                plan, uniform = lib.plan_equal_params(
                    dense[1], keras_slim.count_params(slim))
                same = (f"uniform-e{epochs}-r{ratio:g}-s{seed}",
                        lambda plan=plan, d=dense[1]: keras_slim.slim_model(d, plan))
                for label, (name, build), extra in (
                        ("slimming widths", found, {}),
                        ("uniform widths", same, {"uniform_ratio": uniform})):
                    jobs.append(self.scratch_job(name, build, seed, epochs,
                                                 ratio=ratio, **extra))
                    rows.append((jobs[-1], dict(label=label, ratio=ratio)))
        self.runs.run_all(jobs)
        return [dict(self.runs.run(*job)[0], **extra) for job, extra in rows]

    def lottery(self):
        sparsity, epochs = self.c["lottery_sparsity"], self.epochs
        lrs, seeds = self.c["lottery_learning_rates"], self.c["lottery_seeds"]
        self.runs.run_all([self.dense_job(s, lr) for lr in lrs for s in seeds])
        jobs, rows = [], []
        for lr in lrs:
            for seed in seeds:
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
                    "winning ticket": lambda d=dense[1], i=initial, m=masks:
                        keras_slim.rewind(d, i, masks=m),
                    "random re-init": lambda d=dense[1], seed=seed:
                        keras_slim.reinitialize(d, seed=seed + 1000),
                }
                for label, start in starts.items():
                    kind = "ticket" if "ticket" in label else "random"
                    name = (f"lottery-{kind}-e{epochs}-lr{lr:g}-p{sparsity:g}"
                            f"-s{seed}")

                    def train(start=start, masks=masks, lr=lr, seed=seed,
                              name=name):
                        model = start()
                        mask = keras_slim.MagnitudeMask(masks=masks)
                        history = self._fit(model, name, epochs, lr, seed,
                                            callbacks=[mask])
                        kept = lib.kept_share(model, masks)
                        return self._record(model, seed, history,
                                            epochs=epochs, sparsity=sparsity,
                                            learning_rate=lr,
                                            kept_share=kept), model
                    jobs.append((name, train, False))
                    rows.append((jobs[-1], dict(label=label)))
        self.runs.run_all(jobs)
        return [row if isinstance(row, dict)
                else dict(self.runs.run(*row[0])[0], **row[1]) for row in rows]


def command_of(flags_obj):
    """The command that reruns this invocation: every study flag given."""
    names = flags.FlagValues()
    define_flags(names)
    given = [flags_obj[n].serialize() for n in names
             if n != "experiments" and n in flags_obj and flags_obj[n].present]
    return " ".join(["python -m studies.fashion_mnist.study", *given])


# The settings shared by every experiment: an earlier results file made
# with the same ones is merged (experiment-specific settings, such as the
# lottery's seeds, are in its runs' names and choices).
SHARED_SETTINGS = (*lib.RUN_SETTINGS, "seeds", "ratios", "rethinking_ratio",
                   "quick")


def _merge_earlier(path, config, experiments, commit):
    """This invocation's experiments, stamped with `commit`, over those an
    earlier (or a parallel) invocation on the same `model_dir` wrote to
    `path` with the same configuration, in the study's order; and the
    earlier file's training seconds by run.

    So `--experiments=` lists split across processes still leave one
    results file with every finished experiment. An earlier file made
    with other settings (seeds, ratios, ...) is not merged: it is named
    in the log and replaced.
    """
    merged, seconds = {}, {}
    if os.path.exists(path):
        with open(path) as f:
            before = json.load(f)

        def same(c):  # what every experiment's runs depend on
            return {k: c.get(k) for k in SHARED_SETTINGS}
        if same(before.get("config", {})) == same(config):
            merged.update(before.get("experiments", {}))
            seconds.update(before.get("run_wall_seconds", {}))
        else:
            print(f"{path} was written with other settings; its experiments "
                  f"({', '.join(before.get('experiments', {}))}) are replaced",
                  flush=True)
    for name, experiment in experiments.items():
        merged[name] = dict(experiment, commit=commit)
    return ({name: merged[name] for name in EXPERIMENTS if name in merged},
            seconds)


@contextlib.contextmanager
def _file_lock(path):
    """An exclusive lock on `path` across processes (none where `fcntl`
    is missing, as on Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write_results(flags_obj, config, study, experiments, start, commit):
    path = os.path.join(flags_obj.model_dir, "results.json")
    with _file_lock(path + ".lock"):
        return _write_results_locked(path, flags_obj, config, study,
                                     experiments, start, commit)


def _write_results_locked(path, flags_obj, config, study, experiments,
                          start, commit):
    runs, train, test = study.runs, study.train, study.test
    merged, unique = _merge_earlier(path, config, experiments, commit)
    for name in runs.ran + runs.skipped:
        with open(os.path.join(runs.folder, name + ".json")) as f:
            unique[name] = json.load(f)["wall_seconds"]
    results = {
        "commit": commit,  # HEAD when this invocation started
        "command": command_of(flags_obj),
        "config": config,
        "dataset": {"name": "Fashion-MNIST", "train_examples": len(train[0]),
                    "validation_examples": len(study.validation[0]),
                    "test_examples": len(test[0])},
        "choices": study.choices,
        # each with the commit of the invocation that summarized it
        "experiments": merged,
        # this invocation's `--experiments` all done / every experiment in
        "finished": list(experiments) == config["experiments"],
        "complete": list(merged) == list(EXPERIMENTS),
        # every run behind these experiments, choices included, counted once
        "wall_seconds_runs": round(sum(unique.values()), 2),
        "run_wall_seconds": dict(sorted(unique.items())),
        "wall_seconds_this_invocation": round(time.perf_counter() - start, 2),
        "ran": list(runs.ran),
        "skipped": sorted(set(runs.skipped)),
    }
    files.write_text(path, json.dumps(results, indent=1))
    print(f"Wrote {path} ({', '.join(merged)})", flush=True)
    return results


def run(flags_obj, datasets_override=None, runtime_override=None):
    """Run the study; returns the dict written to `model_dir/results.json`.

    Args:
        flags_obj: the parsed flags (see `define_flags`).
        datasets_override: `((x_train, y_train), (x_test, y_test))` uint8
            images and labels used instead of Fashion-MNIST (tests).
        runtime_override: `callable(batch, runs) -> keras_slim.Runtime`
            used instead of LiteRT in experiment 6 (tests).
    """
    if not flags_obj.model_dir:
        raise ValueError("Expected `--model_dir`. Received: none")
    start = time.perf_counter()
    commit = lib.git_commit()
    config = config_from_flags(flags_obj)
    train, validation, test = _data(config, flags_obj.data_dir,
                                    datasets_override)
    settings = lib.check_config(flags_obj.model_dir, config)
    runs = lib.Runs(flags_obj.model_dir, commit=commit,
                    log=lambda line: print(line, flush=True),
                    settings=settings, config=config,
                    data_files=(None if datasets_override else
                                data_files(flags_obj.data_dir)))
    study = Study(config, train, validation, test, runs, runtime_override)
    experiments = {}
    methods = dict(zip(EXPERIMENTS, (study.network_slimming, study.ista,
                                     study.rethinking, study.architecture,
                                     study.lottery,
                                     lambda: budget_experiment(study))))
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
        results = _write_results(flags_obj, config, study, experiments,
                                 start, commit)
    return results


def main(_):
    run(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    flags.adopt_module_key_flags(study_flags)  # listed by --help
    app.run(main)
