"""`StageRunner`: run each stage of a recipe once, record it in summary.json
(and its end-of-stage scalars in TensorBoard, `recipes.summaries`)."""

import json
import os
import time

import keras

from recipes.summaries import write_record


def _write_json(path, data):
    temporary = f"{path}.tmp"
    with open(temporary, "w") as file:
        json.dump(data, file, indent=2, sort_keys=False)
    os.replace(temporary, path)


class StageRunner:
    """Runs stages once: a stage with `done.json` is loaded, not rerun.

    Which stages are done is read once, when the runner is made, so every
    worker of a multi-worker run takes the same decisions.
    """

    def __init__(self, model_dir, chief, log=print):
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
        self.summary = {"stages": [], "ran": [], "skipped": []}

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
                    model.save(os.path.join(directory, "model.keras"))
                _write_json(os.path.join(directory, "done.json"), record)
            self.summary["ran"].append(name)
        self.summary["stages"].append(record)
        if self.chief:
            _write_json(os.path.join(self.model_dir, "summary.json"),
                        self.summary)
        shown = {k: record.get(k) for k in ("params", "macs", "accuracy")}
        self.log(f"[{name}] {shown}")
        return model, record
