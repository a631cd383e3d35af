"""`StageRunner`: run each stage of a recipe once, record it in summary.json
(and its end-of-stage scalars in TensorBoard, `recipes.summaries`).

Every file written here appears complete or not at all
(`keras_slim.core.files`): a stage's `model.keras`, its record `done.json`
(written last: it marks the stage done), `summary.json` and `flags.json`,
the flags of the run that made `MODEL_DIR`. A rerun with other flags is
refused before anything is built, rather than reusing stages made with
the old ones and reporting their results as its own.
"""

import json
import os
import sys
import time

import keras

from keras_slim.core.files import atomic_path, write_text
from recipes.summaries import write_record
from recipes.usage import UsageError

FLAGS_FILE = "flags.json"
# Flags that say where a run reads and writes or what runs it, not what it
# computes: a run may resume with other values of these.
WHERE_FLAGS = frozenset({"model_dir", "data_dir", "strategy", "tpu"})


def _write_json(path, data):
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _defined_by_a_recipe(module):
    return (module.split(".")[0] in ("recipes", "studies")
            or module in ("__main__", sys.argv[0]) or module.endswith(".py"))


def run_flags(flags_obj):
    """The flags of a recipe that decide its results, `{name: value}`
    (every flag a recipe defined, less `WHERE_FLAGS`; absl's and the
    libraries' own flags left out)."""
    values = {}
    for module, defined in flags_obj.flags_by_module_dict().items():
        if not _defined_by_a_recipe(module):
            continue
        for flag in defined:
            if flag.name not in WHERE_FLAGS:
                value = flag.value
                values[flag.name] = list(value) if isinstance(
                    value, (list, tuple)) else value
    return dict(sorted(values.items()))


def _shown(value):
    return ",".join(map(str, value)) if isinstance(value, list) else value


def check_flags(model_dir, flags):
    """Refuse (`UsageError`, one line) to run into `model_dir` when the run
    recorded there had other `flags` (see `run_flags`)."""
    path = os.path.join(model_dir, FLAGS_FILE)
    if not os.path.isfile(path):
        return
    with open(path) as file:
        recorded = json.load(file)
    differ = sorted(name for name in set(recorded) | set(flags)
                    if recorded.get(name) != flags.get(name))
    if not differ:
        return
    shown = "; ".join(f"--{name}={_shown(flags.get(name))} here, "
                      f"{_shown(recorded.get(name))} there" for name in differ)
    raise UsageError(
        f"--model_dir={model_dir} holds a run made with other flags ({shown}; "
        f"see {path}): its finished stages would be reused as this run's. "
        "Rerun with the same flags to resume it, or use another "
        "--model_dir.")


class StageRunner:
    """Runs stages once: a stage with `done.json` is loaded, not rerun.

    Which stages are done is read once, when the runner is made, so every
    worker of a multi-worker run takes the same decisions.

    Args:
        model_dir: the run's folder.
        chief: whether this process writes.
        log: a callable taking a line.
        flags: the run's flags (`run_flags`, already checked against
            those recorded in `model_dir` by `check_flags`), recorded
            there when nothing is; `None` to record nothing.
    """

    def __init__(self, model_dir, chief, log=print, flags=None):
        self.model_dir = model_dir
        self.chief = chief
        self.log = log
        self.done = {}
        if os.path.isdir(model_dir):
            for name in sorted(os.listdir(model_dir)):
                path = os.path.join(model_dir, name, "done.json")
                if os.path.isfile(path):
                    with open(path) as file:
                        self.done[name] = json.load(file)
        if chief:
            os.makedirs(model_dir, exist_ok=True)
            if flags is not None:
                self._record_flags(flags)
        self.summary = {"stages": [], "ran": [], "skipped": []}

    def _record_flags(self, flags):
        path = os.path.join(self.model_dir, FLAGS_FILE)
        if os.path.isfile(path):
            return
        if self.done:
            self.log(f"{self.model_dir} records no flags (made before "
                     f"{FLAGS_FILE} was written); its done stages "
                     f"({', '.join(self.done)}) are reused as they are")
        _write_json(path, flags)

    def directory(self, name):
        return os.path.join(self.model_dir, name)

    def run(self, name, function):
        """Run `function(directory)` -> `(model, record)` unless done.

        Returns:
            `(model, record)`; for a stage done before, the model loaded
            from its folder (or `None` if it saved none).
        """
        directory = self.directory(name)
        if name in self.done:
            record = self.done[name]
            model = None
            if record.get("model"):
                model = keras.models.load_model(
                    os.path.join(directory, record["model"]), compile=False)
            self.summary["skipped"].append(name)
            self.log(f"[{name}] done before, skipped")
        else:
            self.log(f"[{name}]")
            os.makedirs(directory, exist_ok=True)
            start = time.time()
            model, record = function(directory)
            record = {"name": name, **record,
                      "seconds": round(time.time() - start, 2)}
            write_record(directory, self.chief, record)
            if self.chief:
                if model is not None:
                    record["model"] = "model.keras"
                    with atomic_path(os.path.join(directory,
                                                  "model.keras")) as path:
                        model.save(path)
                _write_json(os.path.join(directory, "done.json"), record)
            self.summary["ran"].append(name)
        self.summary["stages"].append(record)
        if self.chief:
            _write_json(os.path.join(self.model_dir, "summary.json"),
                        self.summary)
        shown = {k: record.get(k) for k in ("params", "macs", "accuracy")}
        self.log(f"[{name}] {shown}")
        return model, record
