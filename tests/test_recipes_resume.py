"""A recipe killed and run again ends where the uninterrupted run ends, bit
for bit, and says what it reuses.

The ConvNet recipe (ISTA rounds) on 16 in-memory 16x16 images, under the
default (CPU) strategy in this process: an uninterrupted run, and a run
stopped by a test hook after an epoch's checkpoint (as a kill would stop
it) and started again. Variants of the stopped run's folder check the
fall-back to the checkpoint before a torn or missing one, the one-line
stop when none can be read, a stage stopped during its end-of-stage save
and a rerun with other flags.
"""

import json
import os
import shutil
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from recipes import convnet_cifar10
from recipes.hooks import Hooks
from recipes.usage import UsageError

pytestmark = pytest.mark.tensorflow

FLAGS = ["--models=a", "--rho=40", "--rho_warmup_steps=0",
         "--widths=4,8,8,8", "--reference_widths=", "--base_epochs=0",
         "--epochs=3", "--finetune_epochs=1", "--steps_per_epoch=2",
         "--batch_size=4", "--seed=3"]
STAGE = "sparse-train-a"


class Killed(Exception):
    pass


class KillAfter(Hooks):
    """Stops the run after epoch `epoch` (0-based) of `stage` was
    checkpointed, as a kill would stop it."""

    def __init__(self, stage, epoch):
        self.stage, self.epoch = stage, epoch

    def on_epoch_end(self, stage, epoch, logs):
        if (stage, epoch) == (self.stage, self.epoch):
            raise Killed(f"{stage} {epoch}")


def _data():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((16, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, 10, 16).astype("int64")
    test = rng.standard_normal((8, 16, 16, 3)).astype("float32")
    return (tf.data.Dataset.from_tensor_slices((images, labels)),
            tf.data.Dataset.from_tensor_slices((test, labels[:8])))


def run(model_dir, extra=(), hooks=None):
    values = flags.FlagValues()
    convnet_cifar10.define_flags(values)
    values(["recipe", *FLAGS, *extra, f"--model_dir={model_dir}"])
    return convnet_cifar10.run(
        values, datasets_override=_data(),
        strategy_override=tf.distribute.get_strategy(), hooks=hooks)


def _killed(model_dir, stage=STAGE, epoch=1):
    with pytest.raises(Killed):
        run(model_dir, hooks=KillAfter(stage, epoch))


def _weights(model_dir, stage):
    model = keras.models.load_model(
        os.path.join(model_dir, stage, "model.keras"), compile=False)
    return model.get_weights()


def _same_weights(one, other, stage):
    first, second = _weights(one, stage), _weights(other, stage)
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes(), stage


RESULTS = ("params", "macs", "accuracy", "loss", "gamma_zero_fraction",
           "gamma_l1", "removed_channels", "widths")


def _results(record):
    return {k: record[k] for k in RESULTS if k in record}


def _stage(summary, name):
    (record,) = [s for s in summary["stages"] if s["name"] == name]
    return record


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("uninterrupted"))
    return model_dir, run(model_dir)


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A run stopped after epoch 2 of 3 of sparse training: its folder,
    to copy."""
    model_dir = str(tmp_path_factory.mktemp("killed"))
    _killed(model_dir)
    return model_dir


def _copy(killed, tmp_path):
    model_dir = str(tmp_path / "run")
    shutil.copytree(killed, model_dir)
    return model_dir


def _checkpoints(model_dir):
    return os.path.join(model_dir, STAGE, "checkpoints")


def _variables(reader):
    return sorted(set(reader.get_variable_to_shape_map())
                  - {"_CHECKPOINTABLE_OBJECT_GRAPH"})


def _same_checkpoints(one, other):
    """The variables of two checkpoints are equal, bit for bit (their
    object graphs hold the layers' names, which differ in one process)."""
    first, second = tf.train.load_checkpoint(one), tf.train.load_checkpoint(other)
    names = _variables(first)
    assert names == _variables(second)
    assert len(names) > 20, names  # model, optimizer, epoch, loss
    for name in names:
        a, b = first.get_tensor(name), second.get_tensor(name)
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), name


def test_resumed_run_is_the_uninterrupted_run_bit_for_bit(
        uninterrupted, killed, tmp_path, capsys):
    reference, summary = uninterrupted
    model_dir = _copy(killed, tmp_path)
    capsys.readouterr()
    resumed = run(model_dir)
    assert "  resuming from epoch 2" in capsys.readouterr().out
    assert resumed["ran"] == [STAGE, "slim-a", "fine-tune-a", "export"]
    assert _stage(resumed, STAGE)["resumed_from_epoch"] == 2
    assert [s["name"] for s in resumed["stages"]] == [
        s["name"] for s in summary["stages"]]
    for record in summary["stages"]:
        assert _results(_stage(resumed, record["name"])) == _results(record)
    assert _stage(summary, "slim-a")["params"] < _stage(summary, STAGE)["params"]
    for stage in (STAGE, "slim-a", "fine-tune-a"):
        _same_weights(reference, model_dir, stage)


def _resume_last_epoch(uninterrupted, model_dir, capsys):
    """Rerun `model_dir` to the end of the stage's last epoch; returns the
    log. Its last checkpoint must be the uninterrupted run's."""
    capsys.readouterr()
    with pytest.raises(Killed):
        run(model_dir, hooks=KillAfter(STAGE, 2))
    shown = capsys.readouterr().out
    assert "  resuming from epoch 1" in shown
    _same_checkpoints(os.path.join(_checkpoints(uninterrupted[0]), "ckpt-3"),
                      os.path.join(_checkpoints(model_dir), "ckpt-3"))
    return shown


def test_torn_newest_checkpoint_falls_back_to_the_one_before(
        uninterrupted, killed, tmp_path, capsys):
    model_dir = _copy(killed, tmp_path)
    folder = _checkpoints(model_dir)
    (data,) = [n for n in os.listdir(folder) if n.startswith("ckpt-2.data")]
    path = os.path.join(folder, data)
    with open(path, "r+b") as file:
        file.truncate(os.path.getsize(path) // 2)
    shown = _resume_last_epoch(uninterrupted, model_dir, capsys)
    assert f"{folder}/ckpt-2 is unreadable" in shown
    assert f"resuming from the checkpoint before it, {folder}/ckpt-1" in shown


def test_missing_index_falls_back_instead_of_restarting(
        uninterrupted, killed, tmp_path, capsys):
    model_dir = _copy(killed, tmp_path)
    folder = _checkpoints(model_dir)
    os.remove(os.path.join(folder, "ckpt-2.index"))
    os.remove(os.path.join(folder, "checkpoint"))  # the state file, too
    shown = _resume_last_epoch(uninterrupted, model_dir, capsys)
    assert (f"{folder}/ckpt-2.index is missing: resuming from the checkpoint "
            f"before it, {folder}/ckpt-1") in shown


def test_no_readable_checkpoint_stops_in_one_line_naming_the_file(
        killed, tmp_path):
    model_dir = _copy(killed, tmp_path)
    folder = _checkpoints(model_dir)
    for name in os.listdir(folder):
        if ".data" in name:
            os.truncate(os.path.join(folder, name), 10)
    with pytest.raises(UsageError) as error:
        run(model_dir)
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    assert f"{folder}/ckpt-2 is unreadable" in message
    assert f"{folder}/ckpt-1 is unreadable" in message
    assert f"Delete {folder}" in message


def test_stage_stopped_in_its_end_of_stage_save_keeps_its_record(
        uninterrupted, tmp_path):
    _, summary = uninterrupted
    model_dir = str(tmp_path / "run")
    # Every epoch checkpointed, the stage's model and done.json not written.
    _killed(model_dir, epoch=2)
    assert not os.path.exists(os.path.join(model_dir, STAGE, "done.json"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no false ISTA warning
        with pytest.raises(Killed):
            run(model_dir, hooks=KillAfter("fine-tune-a", 0))
    record = json.load(open(os.path.join(model_dir, STAGE, "done.json")))
    assert record["resumed_from_epoch"] == 3
    assert _results(record) == _results(_stage(summary, STAGE))
    assert np.isfinite(record["loss"])


@pytest.mark.parametrize("extra,named", [
    (["--epochs=4"], "--epochs=4 here, 3 there"),
    (["--rho=41"], "--rho=41 here, 40 there"),
    (["--seed=4"], "--seed=4 here, 3 there")])
def test_rerun_with_other_flags_is_refused(uninterrupted, tmp_path, extra,
                                           named):
    reference, _ = uninterrupted
    model_dir = str(tmp_path / "run")
    shutil.copytree(reference, model_dir)
    before = sorted(os.listdir(model_dir))
    with pytest.raises(UsageError) as error:
        run(model_dir, extra)
    message = str(error.value)
    assert named in message and "\n" not in message
    assert f"--model_dir={model_dir}" in message
    assert sorted(os.listdir(model_dir)) == before
    # The same flags, or another place to run, are fine.
    assert run(model_dir, ["--strategy=mirrored"])["ran"] == []


def test_flags_are_recorded_with_the_run(uninterrupted):
    reference, _ = uninterrupted
    recorded = json.load(open(os.path.join(reference, "flags.json")))
    assert recorded["epochs"] == 3 and recorded["rho"] == ["40"]
    assert recorded["seed"] == 3 and recorded["widths"] == ["4", "8", "8", "8"]
    assert "model_dir" not in recorded and "verbosity" not in recorded


def test_epoch_stream_is_a_function_of_seed_epoch_and_pipeline():
    """Order and augmentation of an epoch's training stream: the same
    whenever the pipeline is made again (whatever random numbers were
    drawn in between), another for another epoch, seed or pipeline."""
    from recipes import inputs

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (12, 8, 8, 3)).astype("uint8")
    base = tf.data.Dataset.from_tensor_slices((images, np.arange(12)))
    preprocess = inputs.cifar_preprocess("cifar10", True, style="ye")

    def stream(epoch, seed=5, pipeline=0):
        dataset = inputs._finish_training(
            base, 4, inputs.stream_seed(seed, epoch, pipeline), preprocess)
        return [(x.numpy().tobytes(), tuple(y.numpy()))
                for x, y in dataset.take(3)]

    first = stream(1)
    tf.random.uniform((3,))  # stateful draws do not move the stream
    keras.random.normal((3,))
    assert stream(1) == first
    for other in (stream(2), stream(1, seed=6), stream(1, pipeline=1)):
        assert other != first
    # Each example is augmented differently in two epochs.
    def by_example(epoch):
        dataset = inputs._finish_training(
            base, 12, inputs.stream_seed(5, epoch), preprocess)
        x, y = next(iter(dataset))
        return {int(label): image.tobytes()
                for label, image in zip(y.numpy(), x.numpy())}

    one, two = by_example(1), by_example(2)
    assert sorted(one) == sorted(two) == list(range(12))
    assert all(one[k] != two[k] for k in one)
