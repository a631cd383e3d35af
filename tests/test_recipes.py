"""The recipes end to end on synthetic data, and their shared pieces.

The end-to-end runs need two logical CPU devices, which must be configured
before TensorFlow initialises its devices: they run in one fresh Python
process (`mirrored` fixture) that also simulates a run killed during
fine-tuning (a hook raising after an epoch, as a kill would stop it) and
started again, and checks how the global batch meets two replicas.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from recipes import common, inputs, models
from recipes.stages import StageRunner

# Needs TensorFlow: deselected under the JAX and PyTorch backends.
pytestmark = pytest.mark.tensorflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--dataset=synthetic", "--epochs=1", "--finetune_epochs=1",
         "--steps_per_epoch=2", "--batch_size=8", "--synthetic_examples=16",
         "--strategy=mirrored"]
TWO_CPUS = textwrap.dedent(
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    """
)
RECIPES = {
    "convnet_cifar10": ["--models=a,b", "--rho=40,150", "--rho_warmup_steps=0",
                        "--widths=8,16,16,32", "--reference_widths=4,8,8,16",
                        "--base_epochs=1", "--refine_epochs=1"],
    # Killed after 3 of the 4 fine-tuning steps, then run again.
    "resnet20_cifar10": ["--models=a", "--rho=5", "--rho_warmup_steps=0",
                         "--base_epochs=0", "--finetune_epochs=2"],
    "vgg_cifar_slimming": ["--depth=11", "--scratch=E,B", "--ratio=0.3",
                           "--mixed_precision"],
    "resnet101_imagenet": ["--weights=none", "--image_size=32",
                           "--resnet_blocks=1,1,1,1", "--resnet_width=4",
                           "--rho=20"],
}

SCENARIO = TWO_CPUS + textwrap.dedent(
    """
    import importlib, json, os, sys
    from absl import flags
    from recipes.common import UsageError
    from recipes.hooks import Hooks

    out_dir = sys.argv[1]
    recipes, small = json.loads(sys.argv[2]), json.loads(sys.argv[3])
    # One strategy for the whole process: collective keys of two
    # MirroredStrategy objects in one process collide.
    from recipes.common import make_strategy
    strategy = make_strategy("mirrored")

    class Killed(Exception):
        pass

    class KillAfterEpoch(Hooks):
        # Stops the run after the first epoch of `stage`, as a kill would.
        def __init__(self, stage):
            self.stage = stage

        def on_epoch_end(self, stage, epoch, logs):
            if stage == self.stage and epoch == 0:
                raise Killed(stage)

    def run(name, extra, hooks=None, base=small):
        module = importlib.import_module("recipes." + name)
        values = flags.FlagValues()
        module.define_flags(values)
        values(["recipe"] + base + extra)
        return module.run(values, strategy_override=strategy, hooks=hooks)

    result = {}
    # --batch_size given and not a multiple of 2: one clear error, nothing
    # built or written.
    bad_dir = os.path.join(out_dir, "bad_batch")
    try:
        run("resnet20_cifar10", ["--batch_size=125", "--model_dir=" + bad_dir])
        result["explicit_batch_error"] = None
    except UsageError as error:
        result["explicit_batch_error"] = str(error)
    result["bad_batch_dir_exists"] = os.path.exists(bad_dir)
    for name, extra in recipes.items():
        model_dir = os.path.join(out_dir, name)
        extra = extra + ["--model_dir=" + model_dir]
        if name != "resnet20_cifar10":
            result[name] = run(name, extra)
            continue
        # The default --batch_size (125, not given), killed during
        # fine-tuning (after its first epoch), then rerun.
        default_batch = [a for a in small
                         if not a.startswith("--batch_size")]
        try:
            run(name, extra, KillAfterEpoch("fine-tune-a"), default_batch)
            result["interrupted"] = False
        except Killed:
            result["interrupted"] = True
        done = {s: os.path.getmtime(os.path.join(model_dir, s, "done.json"))
                for s in os.listdir(model_dir)
                if os.path.exists(os.path.join(model_dir, s, "done.json"))}
        result["done_before_rerun"] = sorted(done)
        result[name] = run(name, extra, base=default_batch)
        result["earlier_stages_untouched"] = all(
            os.path.getmtime(os.path.join(model_dir, s, "done.json")) == t
            for s, t in done.items())
    print("RESULT" + json.dumps(result))
    """
)


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("recipes"))
    run = subprocess.run(
        [sys.executable, "-c", SCENARIO, out_dir, json.dumps(RECIPES),
         json.dumps(SMALL)],
        env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=1800)
    lines = [s for s in run.stdout.splitlines() if s.startswith("RESULT")]
    assert run.returncode == 0 and lines, (run.stdout[-3000:]
                                           + run.stderr[-3000:])
    return out_dir, json.loads(lines[-1][len("RESULT"):]), run.stdout


def _stage(summary, name):
    matches = [s for s in summary["stages"] if s["name"] == name]
    assert len(matches) == 1, [s["name"] for s in summary["stages"]]
    return matches[0]


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_runs_every_stage_on_two_replicas(mirrored, recipe):
    out_dir, result, _ = mirrored
    summary = result[recipe]
    assert summary["replicas"] == 2
    mixed = "--mixed_precision" in RECIPES[recipe]
    assert summary["precision"] == ("mixed_float16" if mixed else "float32")
    names = [s["name"] for s in summary["stages"]]
    for prefix in ("sparse-train", "slim", "fine-tune", "export"):
        assert any(n.startswith(prefix) for n in names), names
    on_disk = json.load(open(os.path.join(out_dir, recipe, "summary.json")))
    assert [s["name"] for s in on_disk["stages"]] == names
    for stage in summary["stages"]:
        assert stage["params"] > 0 and stage["macs"] > 0
        assert 0.0 <= stage["accuracy"] <= 1.0
    export = os.path.join(out_dir, recipe, "export")
    assert os.path.getsize(os.path.join(export, "model.tflite")) > 0
    assert os.path.isfile(os.path.join(export, "saved_model", "saved_model.pb"))
    # keras_slim.deploy.export checked both against Keras (1e-4 of the range).
    record = _stage(summary, "export")
    assert record["tflite_relative_difference"] <= 1e-4
    assert record["saved_model_relative_difference"] <= 1e-4


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_stage_writes_tensorboard_scalars(mirrored, recipe):
    from recipes.summaries import read_scalars

    out_dir, result, _ = mirrored
    for stage in result[recipe]["stages"]:
        folder = os.path.join(out_dir, recipe, stage["name"], "tensorboard")
        scalars = read_scalars(folder)
        assert {"params", "macs", "accuracy"} <= set(scalars), (stage, scalars)
        assert scalars["params"][-1][1] == stage["params"]
        if "epochs" in stage:  # a training stage
            steps = [step for step, _ in scalars["loss"]]
            assert steps[-1] == stage["steps"], (stage["name"], steps)
            assert len(scalars["learning_rate"]) == len(steps)
        if "gamma_zero_fraction" in stage:  # ISTA
            assert {"rho", "gamma_l1"} <= set(scalars)
            assert scalars["gamma_zero_fraction"][-1][1] == pytest.approx(
                stage["gamma_zero_fraction"])


@pytest.mark.parametrize("recipe,suffix", [
    ("convnet_cifar10", "-a"), ("convnet_cifar10", "-b"),
    ("resnet20_cifar10", "-a"),
    ("vgg_cifar_slimming", ""), ("resnet101_imagenet", "")])
def test_slim_stage_prunes_and_records_widths(mirrored, recipe, suffix):
    summary = mirrored[1][recipe]
    sparse = _stage(summary, "sparse-train" + suffix)
    slim = _stage(summary, "slim" + suffix)
    tuned = _stage(summary, "fine-tune" + suffix)
    assert 0 < slim["params"] < sparse["params"]
    assert slim["macs"] < sparse["macs"]
    assert slim["params_before"] == sparse["params"]
    assert sum(slim["removed_channels"].values()) > 0
    assert tuned["params"] == slim["params"]
    widths = slim["widths"]
    for group, removed in slim["removed_channels"].items():
        assert widths[group] >= 1
    assert set(slim["removed_channels"]) <= set(widths)


def test_ista_stages_make_exact_zeros(mirrored):
    for recipe, stage in (("convnet_cifar10", "sparse-train-a"),
                          ("resnet20_cifar10", "sparse-train-a"),
                          ("resnet101_imagenet", "sparse-train")):
        record = _stage(mirrored[1][recipe], stage)
        assert 0 < record["gamma_zero_fraction"] < 1, (recipe, record)


def test_convnet_trains_base_and_reference(mirrored):
    summary = mirrored[1]["convnet_cifar10"]
    base = _stage(summary, "base")
    reference = _stage(summary, "reference")
    assert reference["params"] < base["params"]
    assert base["params"] == _stage(summary, "sparse-train-a")["params"]


def test_model_b_starts_from_fine_tuned_a(mirrored):
    summary = mirrored[1]["convnet_cifar10"]
    assert (_stage(summary, "sparse-train-b")["params"]
            == _stage(summary, "fine-tune-a")["params"])


def test_vgg_scratch_budgets(mirrored):
    summary = mirrored[1]["vgg_cifar_slimming"]
    sparse = _stage(summary, "sparse-train")
    slim = _stage(summary, "slim")
    assert _stage(summary, "scratch-e")["epochs"] == sparse["epochs"]
    assert _stage(summary, "scratch-b")["epochs"] == int(
        sparse["epochs"] * sparse["macs"] / slim["macs"])
    assert _stage(summary, "scratch-e")["params"] == slim["params"]


def test_killed_run_continues_without_redoing_earlier_stages(mirrored):
    result = mirrored[1]
    assert result["interrupted"]
    assert result["done_before_rerun"] == ["slim-a", "sparse-train-a"]
    resumed = result["resnet20_cifar10"]
    assert resumed["skipped"] == ["sparse-train-a", "slim-a"]
    assert resumed["ran"] == ["fine-tune-a", "export"]
    assert result["earlier_stages_untouched"]
    tuned = _stage(resumed, "fine-tune-a")
    assert tuned["resumed_from_epoch"] == 1
    assert tuned["epochs"] == 2


def test_default_batch_is_rounded_to_the_replicas_with_a_log_line(mirrored):
    _, result, stdout = mirrored
    summary = result["resnet20_cifar10"]  # run without --batch_size (125)
    assert summary["replicas"] == 2
    assert summary["global_batch_size"] == 126
    assert ("global batch 126 instead of the default --batch_size=125"
            in stdout)


def test_explicit_batch_not_divisible_stops_before_building(mirrored):
    result = mirrored[1]
    message = result["explicit_batch_error"]
    assert message is not None and "\n" not in message
    for part in ("--batch_size=125", "2 replicas", "--batch_size=124 or 126"):
        assert part in message, message
    assert not result["bad_batch_dir_exists"]


@pytest.mark.parametrize("batch,replicas,explicit,expected", [
    (125, 2, False, 126), (125, 4, False, 124), (126, 3, True, 126),
    (3, 4, False, 4), (6, 4, False, 8)])
def test_global_batch_size(batch, replicas, explicit, expected):
    from recipes.strategies import global_batch_size

    lines = []
    assert global_batch_size(batch, replicas, explicit, lines.append) == expected
    assert len(lines) == (expected != batch)


def test_explicit_batch_error_names_nearest_values():
    from recipes.strategies import global_batch_size

    with pytest.raises(ValueError, match=r"--batch_size=3 .* 4 replicas.*"
                       r"--batch_size=4\.$"):
        global_batch_size(3, 4, True)
    with pytest.raises(ValueError, match=r"--batch_size=8 or 12\.$"):
        global_batch_size(10, 4, True)


# -- command lines ------------------------------------------------------------


@pytest.mark.parametrize("recipe,form", [
    (name, "file") for name in sorted(RECIPES)] + [
    ("resnet20_cifar10", "module")])
def test_recipe_starts_as_file_and_as_module_outside_the_root(tmp_path,
                                                              recipe, form):
    """`python recipes/<name>.py` (no PYTHONPATH) and `python -m
    recipes.<name>` (the repository on PYTHONPATH, as after `pip install
    -e .`), both from another folder, reach the recipe's own flags. The
    file form also trains in `test_recipes_multiworker.py`."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if form == "file":
        env.pop("PYTHONPATH", None)
        argv = [sys.executable, os.path.join(ROOT, "recipes", recipe + ".py")]
    else:
        env = _env()
        argv = [sys.executable, "-m", "recipes." + recipe]
    run = subprocess.run(argv + ["--helpfull"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    # absl's --helpfull exits with 1 after printing the help.
    assert run.returncode == 1 and "Traceback" not in run.stderr, (
        run.stderr[-3000:])
    own = {"convnet_cifar10": "--widths", "resnet20_cifar10": "--rho_warmup",
           "vgg_cifar_slimming": "--scratch",
           "resnet101_imagenet": "--resnet_blocks"}[recipe]
    assert own in run.stdout and "--batch_size" in run.stdout
    assert "--interrupt" not in run.stdout
    assert os.listdir(tmp_path) == []


def test_ista_rounds_help_says_model_a_starts_from_scratch():
    from recipes import resnet20_cifar10

    values = _flag_values(resnet20_cifar10, [])
    help_text = values["models"].help
    assert "from scratch" in help_text and "from the base network" not in help_text
    assert values.base_epochs is None and values.refine_epochs is None


# -- in-process pieces ----------------------------------------------------------


def _flag_values(module, argv):
    values = flags.FlagValues()
    module.define_flags(values)
    values(["recipe"] + argv)
    return values


@pytest.mark.parametrize("recipe,dataset", [
    ("resnet20_cifar10", "cifar10"), ("resnet101_imagenet", "imagenet2012")])
def test_unprepared_data_dir_is_a_clear_error(tmp_path, recipe, dataset):
    import importlib

    module = importlib.import_module(f"recipes.{recipe}")
    values = _flag_values(module, [f"--data_dir={tmp_path}",
                                   f"--model_dir={tmp_path / 'out'}",
                                   "--weights=none"]
                          if recipe == "resnet101_imagenet"
                          else [f"--data_dir={tmp_path}",
                                f"--model_dir={tmp_path / 'out'}"])
    with pytest.raises(FileNotFoundError, match="not prepared") as error:
        module.run(values)
    message = str(error.value)
    assert dataset in message and str(tmp_path) in message
    assert "never download" in message
    assert not os.path.exists(tmp_path / "out")
    assert os.listdir(tmp_path) == []


def test_event_files_are_what_tf_summary_writes(tmp_path):
    """`summaries.EventWriter` (no TensorFlow) writes the bytes
    `tf.summary.write` writes for a float32 scalar with the scalars
    plugin's metadata; TensorFlow reads them back, checksums checked."""
    from recipes import summaries

    metadata = tf.compat.v1.SummaryMetadata(
        plugin_data=tf.compat.v1.SummaryMetadata.PluginData(
            plugin_name="scalars")).SerializeToString()
    writer = tf.summary.create_file_writer(str(tmp_path / "tf"))
    with writer.as_default():
        tf.summary.write("loss", tf.constant(1.25, tf.float32), step=300001,
                         metadata=metadata)
    writer.close()
    (path,) = (tmp_path / "tf").iterdir()
    theirs = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    event = tf.compat.v1.Event.FromString(theirs[1])
    assert summaries.scalar_event("loss", 1.25, 300001,
                                  event.wall_time) == theirs[1]

    ours = summaries.stage_writer(str(tmp_path / "stage"), chief=True)
    summaries.write_scalars(ours, {"loss": 0.5, "params": 281274,
                                   "skipped": True}, 7)
    ours.close()
    assert summaries.read_scalars(str(tmp_path / "stage" / "tensorboard")) == {
        "loss": [(7, 0.5)], "params": [(7, 281274.0)]}
    (file,) = (tmp_path / "stage" / "tensorboard").iterdir()
    data = bytearray(file.read_bytes())
    data[-5] ^= 1  # a flipped bit fails the record's checksum
    file.write_bytes(bytes(data))
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(file)))
    assert not os.path.exists(tmp_path / "worker")
    summaries.write_scalars(summaries.stage_writer(str(tmp_path / "worker"),
                                                   chief=False), {"loss": 1.0}, 1)
    assert not os.path.exists(tmp_path / "worker")


def test_unknown_strategy_is_a_clear_error():
    with pytest.raises(ValueError, match="Expected `strategy`"):
        common.make_strategy("horovod")


def test_vgg_rejects_unknown_scratch_protocol(tmp_path):
    from recipes import vgg_cifar_slimming

    values = _flag_values(vgg_cifar_slimming, [
        "--dataset=synthetic", "--scratch=C", f"--model_dir={tmp_path}"])
    with pytest.raises(ValueError, match="--scratch"):
        vgg_cifar_slimming.run(values)


def test_eval_pipeline_counts_every_example_once_over_two_pipelines():
    dataset_fn, count = inputs.synthetic_dataset_fn((4, 4, 3), 5, 10, False,
                                                    4, seed=3)
    weights, labels = [], []
    for index in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=index,
            num_replicas_in_sync=2)
        batches = list(dataset_fn(context))
        assert len(batches) == inputs.eval_steps(count, 4) == 3
        for _, y, w in batches:
            assert y.shape == (2,)
            weights.append(w.numpy())
            labels.append(y.numpy()[w.numpy() > 0])
    assert np.concatenate(weights).sum() == 10
    whole = [y.numpy() for _, y, _ in dataset_fn(None)]
    assert sorted(np.concatenate(labels)) == sorted(
        np.concatenate(whole)[:10])


def test_training_pipeline_shards_and_splits_the_global_batch():
    dataset_fn, _ = inputs.synthetic_dataset_fn((4, 4, 3), 5, 16, True, 8)
    context = tf.distribute.InputContext(num_input_pipelines=2,
                                         input_pipeline_id=1,
                                         num_replicas_in_sync=4)
    images, labels = next(iter(dataset_fn(context)))
    assert images.shape == (2, 4, 4, 3) and labels.shape == (2,)


def test_stage_runner_skips_done_stages(tmp_path):
    calls = []

    def stage(directory):
        calls.append(directory)
        model = models.convnet((2, 2, 2, 2), input_shape=(8, 8, 3))
        return model, {"params": model.count_params()}

    first = StageRunner(str(tmp_path), chief=True, log=lambda _: None)
    model, record = first.run("one", stage)
    second = StageRunner(str(tmp_path), chief=True, log=lambda _: None)
    loaded, again = second.run("one", stage)
    assert len(calls) == 1
    assert again == record and second.summary["skipped"] == ["one"]
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["stages"][0]["name"] == "one"


def test_paper_parameter_counts():
    assert models.resnet20().count_params() == 281_274  # paper: 281,304
    assert models.vgg(19).count_params() == 20_046_026  # paper: 20.04M
    reference = models.convnet(models.CONVNET_REFERENCE)
    assert reference.count_params() == 223_978  # paper: 224,008
    base = models.convnet(models.CONVNET_BASE)
    # The published Table 1 lists 1,986,760 (lost in the seed text).
    assert base.count_params() == 1_986_730
    gammas = [layer.name for layer in models.resnet20().layers
              if isinstance(layer, keras.layers.BatchNormalization)
              and layer.scale]
    assert len(gammas) == 9 and all("c0" in name for name in gammas)


def test_resnet_builder_loads_keras_applications_weights(tmp_path):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    reference = keras.applications.ResNet50(weights=None,
                                            input_shape=(32, 32, 3),
                                            classes=7)
    path = str(tmp_path / "resnet50.h5")
    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, reference)
    ours = models.resnet_v1(models.RESNET_BLOCKS[50], classes=7,
                            input_shape=(32, 32, 3), name="resnet50")
    assert [w.shape for w in ours.weights] == [
        w.shape for w in reference.weights]
    ours.load_weights(path)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.softmax(ours(x))),
        keras.ops.convert_to_numpy(reference(x)), atol=1e-5)
