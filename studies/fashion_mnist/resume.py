"""Resuming a study run that was interrupted between epochs.

A Scratch-B run trains for an hour or more, longer than is left of many
sittings. `EpochCheckpoint` writes, after every epoch, the model's weights,
the optimizer's variables (its step count included, so the learning rate
schedule continues where it was) and the history so far to one `.npz`
file; `resume` loads them into a freshly compiled model of the same
architecture and says from which epoch to continue. The study names the
file `runs/<name>.partial.npz` and deletes it once the run's record is
written.

A resumed run is not bit-identical to an uninterrupted one (the batches
after the restart are shuffled from the seed again), so its record says
where it resumed (`resumed_at_epoch`).
"""

import json
import os

import keras
import numpy as np


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch, save what `resume` needs to `path` (atomically).

    Args:
        path: the `.npz` file.
        history: the history of the epochs before this `fit` call (a
            resumed run's), `{metric: [values]}`.
    """

    def __init__(self, path, history=None):
        super().__init__()
        self.path = path
        self.history = {k: list(v) for k, v in (history or {}).items()}

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        arrays = {f"weight_{i}": w
                  for i, w in enumerate(self.model.get_weights())}
        arrays.update({f"optimizer_{i}": np.asarray(v)
                       for i, v in enumerate(self.model.optimizer.variables)})
        meta = {"epochs_done": epoch + 1, "history": self.history}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        temporary = self.path + ".tmp.npz"
        np.savez(temporary, **arrays)
        os.replace(temporary, self.path)


def _indexed(arrays, prefix):
    count = sum(1 for key in arrays if key.startswith(prefix))
    return [arrays[f"{prefix}{i}"] for i in range(count)]


def resume(model, path):
    """Load the checkpoint at `path` into the compiled `model`.

    Returns:
        `(epochs_done, history)`, or `(0, {})` when there is no checkpoint.

    Raises:
        ValueError: the checkpoint does not fit the model (another run's).
    """
    if not os.path.exists(path):
        return 0, {}
    with np.load(path) as data:
        arrays = dict(data)
    meta = json.loads(arrays["meta"].tobytes().decode())
    weights = _indexed(arrays, "weight_")
    expected = [w.shape for w in model.get_weights()]
    if [w.shape for w in weights] != expected:
        raise ValueError(f"The checkpoint {path} holds weights of shapes "
                         f"{[w.shape for w in weights]}, the model "
                         f"{expected}: it is another run's. Delete it to "
                         "start the run again.")
    model.set_weights(weights)
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    saved = _indexed(arrays, "optimizer_")
    if len(saved) != len(optimizer.variables):
        raise ValueError(f"The checkpoint {path} holds {len(saved)} "
                         f"optimizer variables, the model's optimizer "
                         f"{len(optimizer.variables)}.")
    for variable, value in zip(optimizer.variables, saved):
        variable.assign(value)
    return meta["epochs_done"], meta["history"]
