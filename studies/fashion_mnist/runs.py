"""The pieces of the Fashion-MNIST study: network, training, run records.

Each finished run of the study writes `MODEL_DIR/runs/<name>.json` (its
record: accuracy, parameters, MACs, wall seconds, ...) and, when a later run
starts from it, `MODEL_DIR/runs/<name>.keras`. A run whose JSON exists is
not run again: its record (and model) are read back, so an interrupted study
continues where it stopped; a run interrupted between epochs resumes from
its last one (`runs/<name>.partial.npz`, `resume.py`).

Only plain `model.fit` and keras_slim's public API are used, so the study
runs on any Keras backend that keras_slim supports.
"""

import functools
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import time

import keras
import numpy as np

import keras_slim
from keras_slim.core import files
from studies.fashion_mnist.resume import EpochCheckpoint, resume

L = keras.layers


def build_convnet(widths, weight_decay=5e-5, bn_momentum=0.9):
    """A small BatchNormalization ConvNet for 28 x 28 x 1 images.

    Blocks of conv 3x3 (no bias) - BN - ReLU, a 2x2 max-pooling after every
    second block, then global average pooling and a Dense classifier.
    "valid" padding, so that a dead channel's constant output folds exactly
    into the next layer (Ye et al. 2018's constant folding).

    Args:
        widths: output channels of each convolution.
        weight_decay: L2 factor on kernels (5e-5 here is PyTorch's weight
            decay 1e-4: Keras' L2 adds `l * sum(w**2)`).
        bn_momentum: BatchNormalization's moving-average momentum (0.9:
            the statistics settle within the few hundred steps run here).

    Returns:
        An uncompiled functional `keras.Model`.
    """
    regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
    x = inputs = keras.Input((28, 28, 1), name="image")
    for i, width in enumerate(widths):
        x = L.Conv2D(width, 3, use_bias=False, kernel_regularizer=regularizer,
                     name=f"conv{i + 1}")(x)
        x = L.BatchNormalization(momentum=bn_momentum, name=f"bn{i + 1}")(x)
        x = L.ReLU(name=f"relu{i + 1}")(x)
        if i % 2 == 1:
            x = L.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(10, kernel_regularizer=regularizer, name="logits")(x)
    return keras.Model(inputs, outputs, name="fashion_convnet")


def learning_rate_schedule(learning_rate, steps, schedule="step"):
    """The learning rate of `steps` optimizer steps.

    `"step"`: the papers' CIFAR schedule (Network Slimming, Rethinking):
    `learning_rate`, divided by 10 at 50% and again at 75% of the steps.
    `"cosine"`: a cosine decay to 0. `"constant"`: `learning_rate`
    throughout (fine-tuning, ISTA).
    """
    steps = max(1, steps)
    if schedule == "step":
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [steps // 2, (3 * steps) // 4],
            [learning_rate, learning_rate / 10, learning_rate / 100])
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    if schedule == "constant":
        return learning_rate
    raise ValueError("Expected `schedule` in ('step', 'cosine', 'constant'). "
                     f"Received: schedule={schedule!r}")


def summed_learning_rate(learning_rate, steps, schedule="step"):
    """Sum of the learning rate over `steps` steps: the total pull of an
    L1 penalty's subgradient on one weight (per unit of `s`)."""
    if schedule == "constant":
        return learning_rate * steps
    if schedule == "step":
        first, second = steps // 2, (3 * steps) // 4
        return learning_rate * (first + (second - first) / 10
                                + (steps - second) / 100)
    raise ValueError(f"No summed learning rate for schedule={schedule!r}")


def compile_sgd(model, learning_rate, steps, schedule="step"):
    """SGD, momentum 0.9, with `learning_rate_schedule(...)`."""
    model.compile(
        keras.optimizers.SGD(learning_rate_schedule(learning_rate, steps,
                                                    schedule), momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


class EpochLog(keras.callbacks.Callback):
    """One progress line per epoch: loss, validation accuracy, ETA."""

    def __init__(self, name, epochs, log):
        super().__init__()
        self.name, self.epochs, self.log = name, epochs, log

    def on_train_begin(self, logs=None):
        self.start, self.first = time.perf_counter(), None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        spent = time.perf_counter() - self.start
        if self.first is None:  # a resumed run starts past epoch 0
            self.first = epoch
        eta = spent / (epoch + 1 - self.first) * (self.epochs - epoch - 1)
        val = logs.get("val_accuracy")
        self.log(f"  {self.name}: epoch {epoch + 1}/{self.epochs}, loss "
                 f"{logs.get('loss', float('nan')):.4f}"
                 + (f", validation {val:.4f}" if val is not None else "")
                 + f", {spent:.0f} s, ETA {eta:.0f} s")


def fit(model, data, epochs, learning_rate, seed, batch_size,
        schedule="step", callbacks=(), validation=None, checkpoint=None):
    """Train `model` in place on `data = (x, y)`; returns the History.

    `validation = (x, y)` is evaluated after every epoch (its accuracy is
    in `history.history["val_accuracy"]`). With a `checkpoint` path, the
    state after every epoch is saved there, and a checkpoint found there
    is resumed (`resume`): the History then covers every
    epoch and has `resumed_at_epoch`."""
    x, y = data
    keras.utils.set_random_seed(seed)
    steps = epochs * math.ceil(len(x) / batch_size)
    compile_sgd(model, learning_rate, steps, schedule)
    if epochs == 0:
        return None
    done, before = (0, {}) if checkpoint is None else resume(model, checkpoint)
    callbacks = list(callbacks)
    if checkpoint is not None:  # first, so that later callbacks see it saved
        callbacks.insert(0, EpochCheckpoint(checkpoint, before))
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs,
                        initial_epoch=done, callbacks=callbacks, verbose=0,
                        validation_data=validation)
    if done:
        history.history = {
            key: list(before.get(key, [])) + list(history.history.get(key, []))
            for key in {*before, *history.history}}
        history.resumed_at_epoch = done
    return history


def mean_cross_entropy(model, data, batch_size=1000):
    """The task loss (mean cross-entropy, inference mode) on `data`."""
    x, y = data
    total = 0.0
    for start in range(0, len(x), batch_size):
        logits = keras.ops.convert_to_numpy(
            model(x[start:start + batch_size], training=False)).astype("float64")
        logits -= logits.max(axis=-1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        total -= float(log_p[np.arange(len(log_p)),
                             y[start:start + batch_size]].sum())
    return total / len(x)


def accuracy(model, data, batch_size=1000):
    """Top-1 accuracy of `model` (inference mode) on `data = (x, y)`."""
    x, y = data
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size], training=False)
        predicted = np.argmax(keras.ops.convert_to_numpy(logits), axis=-1)
        correct += int(np.sum(predicted == y[start:start + batch_size]))
    return correct / len(x)


def widths_of(model):
    """Output channels of every convolution and Dense layer, by name."""
    return {layer.name: int(layer.get_config().get("filters")
                            or layer.get_config().get("units"))
            for layer in model.layers
            if isinstance(layer, (L.Conv2D, L.Dense))}


def describe(model, data):
    """The numbers every record carries: accuracy, params, MACs, widths."""
    return {"accuracy": accuracy(model, data),
            "params": int(keras_slim.count_params(model)),
            "macs": int(keras_slim.count_macs(model)),
            "widths": widths_of(model)}


def kept_share(model, masks):
    """Share of the masked kernels' weights that are non-zero in `model`."""
    values = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    total = sum(values[path].size for path in masks)
    return sum(int(np.count_nonzero(values[path])) for path in masks) / total


def checksum(model):
    """Sum of |w| over every weight: tells two initialisations apart."""
    return float(sum(np.abs(keras.ops.convert_to_numpy(v)).sum()
                     for v in model.weights))


def plan_equal_params(model, target, steps=14):
    """`plan_uniform` whose slim model has the parameter count nearest `target`.

    A bisection over the uniform ratio (more pruning, fewer parameters).

    Returns:
        `(plan, ratio)`.
    """
    low, high = 0.0, 0.95
    best = None
    for _ in range(steps):
        ratio = (low + high) / 2
        plan = keras_slim.plan_uniform(model, ratio, score="l1")
        params = keras_slim.count_params(keras_slim.slim_model(model, plan))
        if best is None or abs(params - target) < abs(best[2] - target):
            best = (plan, ratio, params)
        if params > target:
            low = ratio
        else:
            high = ratio
    return best[0], best[1]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Runs:
    """Records of the study's runs under `model_dir/runs/`, resumable.

    Several study processes may share one `model_dir` (the same command
    started twice runs two trainings at a time): a run is claimed with a
    lock file (`<name>.lock`, holding the process id) before it trains, and
    a process that needs a run another one holds waits for its record. A
    lock whose process is gone is taken over.

    Args:
        model_dir: the study's folder.
        log: callable taking one line of progress text.
        commit: the code's commit, stored in every record.
        poll_seconds: how often a waiting process looks again.
        settings: the study's settings (`config.json`), stored in every
            record as "settings", beside the run's own flags.
        data_files: the data's files, whose sha256 every record stores
            (`provenance`); `None` for data given in memory.
        config: every setting of the invocation (all flags), stored in
            every record as "config", with the command line as "argv".
    """

    def __init__(self, model_dir, log=print, commit=None, poll_seconds=10.0,
                 settings=None, data_files=None, config=None):
        self.folder = os.path.join(model_dir, "runs")
        self.commit = commit
        self.config = None if config is None else dict(config)
        self.data_files = data_files
        self.settings = None if settings is None else dict(settings)
        os.makedirs(self.folder, exist_ok=True)
        self.log = log
        self.poll_seconds = poll_seconds
        self.ran, self.skipped = [], []

    def _paths(self, name):
        base = os.path.join(self.folder, name)
        return base + ".json", base + ".keras"

    def partial_path(self, name):
        """Where run `name` keeps its state between epochs, until its
        record is written (`fit(checkpoint=...)`)."""
        return os.path.join(self.folder, name + ".partial.npz")

    def done(self, name, need_model=False):
        record_path, model_path = self._paths(name)
        return os.path.exists(record_path) and (
            not need_model or os.path.exists(model_path))

    def _load(self, name, need_model):
        if not self.done(name, need_model):
            return None
        record_path, model_path = self._paths(name)
        with open(record_path) as f:
            record = json.load(f)
        model = (keras.models.load_model(model_path, compile=False)
                 if need_model else None)
        self.skipped.append(name)
        return record, model

    def record(self, name, train, keep_model=False):
        """Run `name`'s record, run now only if it has none (its model, if
        a later run needs it, is made then: see `run`)."""
        return self.run(name, train, keep_model and not self.done(name))[0]

    # -- claiming runs across processes -----------------------------------

    def _lock_path(self, name):
        return os.path.join(self.folder, name + ".lock")

    def held_elsewhere(self, name):
        """Whether another live process holds run `name`."""
        try:
            with open(self._lock_path(name)) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            return False
        return pid != os.getpid() and _alive(pid)

    def _acquire(self, name):
        path = self._lock_path(name)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self.held_elsewhere(name):
                    return False
                try:  # its process is gone: take the run over
                    os.remove(path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return True
        return False

    def _release(self, name):
        try:
            os.remove(self._lock_path(name))
        except FileNotFoundError:
            pass

    # -- running ------------------------------------------------------------

    def run(self, name, train, keep_model=False):
        """The record (and model) of run `name`, run now only if not done.

        Waits while another process holds the run.

        Args:
            name: unique run name (a file name).
            train: callable returning `(record, model)`; `record` a dict.
            keep_model: save the model, for runs that later runs start from.

        Returns:
            `(record, model)`; `model` is `None` for a skipped run unless
            `keep_model`.
        """
        waited = False
        while True:
            found = self._load(name, keep_model)
            if found is not None:
                return found
            if self._acquire(name):
                break
            if not waited:
                self.log(f"{name}: held by another study process; waiting")
                waited = True
            time.sleep(self.poll_seconds)
        try:
            found = self._load(name, keep_model)  # finished meanwhile
            if found is not None:
                return found
            if keep_model and self.done(name):
                return self._regenerate(name, train)
            return self._train(name, train, keep_model)
        finally:
            self._release(name)

    def _train(self, name, train, keep_model):
        self.log(f"{name}: training")
        start = time.perf_counter()
        record, model = train()
        record = dict(record, name=name, commit=self.commit,
                      wall_seconds=round(time.perf_counter() - start, 2),
                      provenance=provenance(self.data_files))
        if self.settings is not None:
            record["settings"] = self.settings
        if self.config is not None:
            record["config"] = self.config
            record["argv"] = list(sys.argv)
        record_path, model_path = self._paths(name)
        if keep_model:
            with files.atomic_path(model_path) as temporary:
                model.save(temporary)
        files.write_text(record_path, json.dumps(  # written last
            record, indent=1, sort_keys=True))
        if os.path.exists(self.partial_path(name)):
            os.remove(self.partial_path(name))
        self.ran.append(name)
        figures = [f"{label} {record[key]:.4f}" for key, label in
                   (("accuracy", "test accuracy"),
                    ("val_accuracy", "validation")) if key in record]
        if "params" in record:
            figures.append(f"{record['params']:,} params")
        self.log(f"{name}: {', '.join(figures + [''])}"
                 f"{record['wall_seconds']:.0f} s")
        return record, model

    def _regenerate(self, name, train):
        """A recorded run's model, not in the repository, trained again by
        its command; the record stays as it was, and
        `<name>.regenerated.json` says whether the new model's accuracies
        equal the recorded ones."""
        record_path, model_path = self._paths(name)
        with open(record_path) as f:
            record = json.load(f)
        self.log(f"{name}: regenerating its model")
        fresh, model = train()
        with files.atomic_path(model_path) as temporary:
            model.save(temporary)
        keys = ("accuracy", "val_accuracy", "params")
        files.write_text(record_path[:-len(".json")] + ".regenerated.json",
                         json.dumps({
                             "commit": self.commit,
                             "recorded": {k: record.get(k) for k in keys},
                             "regenerated": {k: fresh.get(k) for k in keys},
                             "same": all(record.get(k) == fresh.get(k)
                                         for k in keys),
                             "provenance": provenance(self.data_files)},
                             indent=1, sort_keys=True))
        if os.path.exists(self.partial_path(name)):
            os.remove(self.partial_path(name))
        self.skipped.append(name)
        return record, model

    def run_all(self, jobs):
        """Run every job of `jobs` (`(name, train, keep_model)` tuples that
        do not depend on one another), taking first the ones no other
        process holds, so that two processes share them out."""
        pending = list(jobs)
        # a recorded run counts as used (its time is the study's), and its
        # model is made on demand
        self.skipped.extend(j[0] for j in pending if self.done(j[0]))
        while pending:
            pending = [j for j in pending if not self.done(j[0])]
            free = [j for j in pending if not self.held_elsewhere(j[0])]
            if free:
                self.run(*free[0])
            elif pending:
                time.sleep(self.poll_seconds)


def aggregate(records, keys=("accuracy", "val_accuracy", "params", "macs",
                             "wall_seconds", "epochs")):
    """Mean and sample standard deviation (ddof=1) of `keys` over records.

    Returns:
        dict key -> {"mean", "std", "n", "values"}; `std` is `None` for a
        single record.
    """
    out = {}
    for key in keys:
        values = [r[key] for r in records if r.get(key) is not None]
        if not values:
            continue
        out[key] = {
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "n": len(values),
            "values": values,
        }
    return out


def summarize(rows, keys=("label", "method", "ratio", "learning_rate")):
    """Rows grouped by their label (and method, ratio, learning rate) with
    mean and standard deviation over seeds, in first-seen order."""
    groups = {}
    for row in rows:
        key = tuple(row.get(k) for k in keys)
        groups.setdefault(key, []).append(row)
    out = []
    for key, members in groups.items():
        entry = {k: v for k, v in zip(keys, key) if v is not None}
        entry.update(aggregate(members))
        entry["seeds"] = [m["seed"] for m in members]
        entry["runs"] = [m["name"] for m in members]
        out.append(entry)
    return out


# Settings that change what a run of a given name computes (the others,
# seeds, ratios, epochs, s, rho, learning rates, are in run names).
RUN_SETTINGS = ("train_examples", "validation_examples", "split_seed",
                "test_examples", "widths", "batch_size", "learning_rate",
                "schedule", "finetune_fraction", "epoch_grid",
                "epoch_min_gain", "slimming_s_factors", "slimming_choice_ratio",
                "scratch_b_cap", "rho_multiples", "ista_max_epochs",
                "ista_patience", "ista_min_delta", "ista_learning_rate",
                "backend")


def check_config(model_dir, config):
    """Refuse to resume a study that ran with other settings in `model_dir`.

    Writes `model_dir/config.json` on the first run. Returns the settings
    (what every run record stores).
    """
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, "config.json")
    settings = {k: config[k] for k in RUN_SETTINGS}
    if os.path.exists(path):
        with open(path) as f:
            before = json.load(f)
        changed = [f"{k}: {before.get(k)} then {settings[k]}"
                   for k in RUN_SETTINGS if before.get(k) != settings[k]]
        if changed:
            raise ValueError(
                f"{model_dir} holds runs made with other settings "
                f"({', '.join(changed)}); use another --model_dir.")
        return settings
    files.write_text(path, json.dumps(settings, indent=1))
    return settings


def _version(package):
    """The installed version of `package` (without importing it), else
    the version of the module of that name (this repository's keras_slim
    when it is not installed)."""
    if package == "keras_slim":
        return keras_slim.__version__
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=None)
def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _threads():
    threads = {"cpu_count": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        threads["usable_cpus"] = len(os.sched_getaffinity(0))
    tf = sys.modules.get("tensorflow")  # not imported here for others
    if tf is None or not hasattr(tf, "config"):
        return threads
    # 0 is TensorFlow's default: as many threads as usable cores
    threads["tf_intra_op"] = tf.config.threading.get_intra_op_parallelism_threads()
    threads["tf_inter_op"] = tf.config.threading.get_inter_op_parallelism_threads()
    return threads


def provenance(data_files=None):
    """What a record needs to be reproduced, read when the run finishes:
    versions, CPU, threads, and the sha256 of each data file (`data_files`,
    paths; `None`: data given in memory)."""
    return {
        "versions": {name: _version(name) for name in
                     ("keras_slim", "keras", "tensorflow", "numpy")},
        "python": platform.python_version(),
        "backend": keras.backend.backend(),
        "cpu": _cpu_model(),
        "threads": _threads(),
        "data_sha256": (None if data_files is None else
                        {os.path.basename(p): _sha256(p) for p in data_files}),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def git_commit():
    """The repository's HEAD commit (with `+dirty` for local changes)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root,
                                capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain",
                                "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")
