"""Recipes under MultiWorkerMirroredStrategy: two worker processes on
127.0.0.1, each with its own TF_CONFIG, bounded in time.

- The ResNet-20 recipe started as a file (`python recipes/...py`, from
  another folder, no PYTHONPATH) with its default `--batch_size` (the
  paper's 125, rounded to 126 for two replicas), synthetic data.
- The ConvNet recipe on a real TFDS dataset on disk: Fashion-MNIST images
  (from `studies.fashion_mnist.data`) padded to 32x32x3 and written in the
  CIFAR-10 TFDS format (same name, version and features, one file per
  split), so that the recipe reads it with `--dataset=cifar10
  --data_dir=...` through tensorflow-datasets. A test hook records the raw
  images each worker's training pipeline yields, in order, to check that
  every example is seen exactly once per epoch across the two workers.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

# Needs TensorFlow: deselected under the JAX and PyTorch backends.
pytestmark = pytest.mark.tensorflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 420
TRAIN_EXAMPLES, TEST_EXAMPLES = 256, 64
TFDS_BATCH = 32  # global: 16 per worker, 8 steps per epoch


def _free_ports(count):
    sockets = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_workers(argv_of, cwd, log_dir, pythonpath):
    """Start `argv_of(index)` for two workers, wait; returns their outputs
    and process ids."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes, logs = [], []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {
                       "type": "worker", "index": index}}))
        env.pop("PYTHONPATH", None)
        if pythonpath:
            env["PYTHONPATH"] = ROOT
        log = open(os.path.join(log_dir, f"worker{index}.log"), "w+")
        logs.append(log)
        processes.append(subprocess.Popen(argv_of(index), env=env, cwd=cwd,
                                          stdout=log,
                                          stderr=subprocess.STDOUT))
    deadline = time.time() + TIMEOUT
    try:
        while any(p.poll() is None for p in processes):
            failed = [p for p in processes if p.poll() not in (None, 0)]
            if failed or time.time() > deadline:
                break
            time.sleep(1)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    codes = [p.returncode for p in processes]
    assert codes == [0, 0], f"exit codes {codes}\n" + "\n----\n".join(
        o[-3000:] for o in outputs)
    return outputs, [p.pid for p in processes]


# -- ResNet-20, synthetic data, default batch -----------------------------------


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("multiworker"))
    elsewhere = str(tmp_path_factory.mktemp("cwd"))
    argv = [sys.executable, os.path.join(ROOT, "recipes", "resnet20_cifar10.py"),
            "--strategy=multi_worker_mirrored", "--dataset=synthetic",
            f"--model_dir={model_dir}", "--models=a", "--rho=5",
            "--rho_warmup_steps=0", "--base_epochs=0", "--epochs=1",
            "--finetune_epochs=1", "--steps_per_epoch=2"]
    outputs, _ = _run_workers(lambda index: argv, elsewhere,
                              os.path.dirname(model_dir), pythonpath=False)
    assert os.listdir(elsewhere) == []
    return model_dir, outputs


def test_two_workers_write_one_summary(workers):
    model_dir, outputs = workers
    summary = json.load(open(os.path.join(model_dir, "summary.json")))
    assert summary["strategy"] == "multi_worker_mirrored"
    assert summary["replicas"] == 2
    names = [s["name"] for s in summary["stages"]]
    assert names == ["sparse-train-a", "slim-a", "fine-tune-a", "export"]
    sparse, slim = summary["stages"][0], summary["stages"][1]
    assert 0 < slim["params"] < sparse["params"]
    assert 0 < sparse["gamma_zero_fraction"] < 1
    assert all("replicas=2" in output for output in outputs)


def test_default_batch_is_rounded_for_two_workers(workers):
    model_dir, outputs = workers
    summary = json.load(open(os.path.join(model_dir, "summary.json")))
    assert summary["global_batch_size"] == 126
    assert all("global batch 126 instead of the default --batch_size=125"
               in output for output in outputs)
    assert all("ETA" in output for output in outputs)
    # run_main hides TensorFlow's INFO logs (checkpoints, SavedModel export).
    for noise in ("Sharding callback duration", "Assets written to",
                  "unsupported characters"):
        assert not any(noise in output for output in outputs), noise


def test_only_the_chief_keeps_outputs(workers):
    model_dir, _ = workers
    for stage in ("sparse-train-a", "fine-tune-a"):
        folder = os.path.join(model_dir, stage)
        assert os.path.isfile(os.path.join(folder, "model.keras"))
        entries = os.listdir(os.path.join(folder, "checkpoints"))
        assert "checkpoint" in entries
        assert not [e for e in entries if e.startswith(".worker")]
        assert not [e for e in os.listdir(folder) if e.startswith(".worker")]
    export = os.path.join(model_dir, "export")
    assert os.path.getsize(os.path.join(export, "model.tflite")) > 0


# -- ConvNet, a real TFDS dataset ----------------------------------------------


def _image_key(image):
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def _unique(images, labels, count):
    """The first `count` examples whose images differ from every other."""
    keys, chosen = set(), []
    for index, image in enumerate(images):
        key = _image_key(image)
        if key not in keys:
            keys.add(key)
            chosen.append(index)
        if len(chosen) == count:
            break
    return images[chosen], labels[chosen]


def build_fashion_mnist_as_cifar10(data_dir):
    """Write Fashion-MNIST examples as a TFDS `cifar10` 3.0.2 dataset (one
    file per split); returns the keys of the training images as stored."""
    import tensorflow_datasets as tfds

    from studies.fashion_mnist.data import load_fashion_mnist

    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()

    def rgb32(images):
        padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
        return np.repeat(padded[..., None], 3, axis=-1)

    x_train, y_train = _unique(rgb32(x_train), y_train, TRAIN_EXAMPLES)
    x_test, y_test = rgb32(x_test[:TEST_EXAMPLES]), y_test[:TEST_EXAMPLES]
    features = tfds.features

    with tfds.core.registered.skip_registration():
        class Cifar10(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version("3.0.2")

            def _info(self):
                return tfds.core.DatasetInfo(
                    builder=self, supervised_keys=("image", "label"),
                    features=features.FeaturesDict({
                        "id": features.Text(),
                        "image": features.Image(shape=(32, 32, 3)),
                        "label": features.ClassLabel(num_classes=10)}))

            def _split_generators(self, dl_manager):
                return {"train": self._generate_examples(x_train, y_train),
                        "test": self._generate_examples(x_test, y_test)}

            def _generate_examples(self, images, labels):
                for index, (image, label) in enumerate(zip(images, labels)):
                    yield index, {"id": str(index), "image": image,
                                  "label": int(label)}

    tfds.disable_progress_bar()
    Cifar10(data_dir=data_dir).download_and_prepare()
    return sorted(_image_key(image) for image in x_train)


WORKER = textwrap.dedent(
    """
    import hashlib, json, sys
    import tensorflow as tf
    from absl import app, flags
    from recipes import convnet_cifar10 as recipe
    from recipes.hooks import Hooks

    class RecordExamples(Hooks):
        # Keys of the raw training images, one list per training pipeline
        # (one per epoch of each stage), in the order training consumes
        # them (and a little more, read ahead).
        def __init__(self):
            self.streams = []

        def training_examples(self, dataset):
            seen = []
            self.streams.append(seen)

            def note(image, label):
                seen.append(hashlib.sha1(image.numpy().tobytes()).hexdigest())
                return label

            def mapped(image, label):
                noted = tf.py_function(note, [image, label], label.dtype)
                noted.set_shape(label.shape)
                return image, noted

            return dataset.map(mapped)

    out = sys.argv.pop(1)
    hooks = RecordExamples()
    recipe.define_flags()

    def main(_):
        recipe.run(flags.FLAGS, hooks=hooks)
        with open(out, "w") as file:
            json.dump(hooks.streams, file)

    app.run(main)
    """
)


@pytest.fixture(scope="module")
def tfds_workers(tmp_path_factory):
    pytest.importorskip("tensorflow_datasets")
    from studies.fashion_mnist.data import find_folder

    if find_folder() is None:
        pytest.skip("Fashion-MNIST files are not installed")
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    keys = build_fashion_mnist_as_cifar10(data_dir)
    model_dir = str(tmp_path_factory.mktemp("tfds_run"))
    elsewhere = str(tmp_path_factory.mktemp("tfds_cwd"))
    records = [os.path.join(os.path.dirname(model_dir), f"seen{index}.json")
               for index in range(2)]

    def argv_of(index):
        return [sys.executable, "-c", WORKER, records[index],
                "--strategy=multi_worker_mirrored", "--dataset=cifar10",
                f"--data_dir={data_dir}", f"--model_dir={model_dir}",
                f"--batch_size={TFDS_BATCH}", "--models=a", "--rho=40",
                "--rho_warmup_steps=0", "--widths=8,16,16,32",
                "--reference_widths=", "--base_epochs=0", "--epochs=2",
                "--finetune_epochs=1"]

    outputs, pids = _run_workers(argv_of, elsewhere,
                                 os.path.dirname(model_dir), pythonpath=True)
    seen = [json.load(open(path)) for path in records]
    return {"model_dir": model_dir, "data_dir": data_dir, "keys": keys,
            "seen": seen, "pids": pids}


def test_tfds_dataset_has_one_file_per_split(tfds_workers):
    import tensorflow_datasets as tfds

    builder = tfds.builder("cifar10", data_dir=tfds_workers["data_dir"])
    assert builder.info.splits["train"].num_shards == 1
    assert builder.info.splits["train"].num_examples == TRAIN_EXAMPLES


def test_every_example_seen_once_per_epoch_across_workers(tfds_workers):
    model_dir, keys = tfds_workers["model_dir"], tfds_workers["keys"]
    seen = tfds_workers["seen"]
    summary = json.load(open(os.path.join(model_dir, "summary.json")))
    steps = summary["steps_per_epoch"]
    assert steps == TRAIN_EXAMPLES // TFDS_BATCH
    per_epoch = steps * TFDS_BATCH // 2  # examples one worker uses per epoch
    training = [s for s in summary["stages"] if "epochs" in s]
    assert [s["name"] for s in training] == ["sparse-train-a", "fine-tune-a"]
    epochs = [(s["name"], epoch) for s in training
              for epoch in range(s["epochs"])]
    for worker in seen:
        assert len(worker) == len(epochs)  # one pipeline per epoch
    orders = []
    for index, epoch in enumerate(epochs):
        parts = [worker[index][:per_epoch] for worker in seen]
        assert all(len(part) == per_epoch for part in parts)
        assert not set(parts[0]) & set(parts[1]), epoch
        assert sorted(parts[0] + parts[1]) == keys, epoch
        orders.append((epoch, tuple(parts[0])))
    # Each epoch number has its own order (every stage's epoch e reads
    # the same stream).
    by_epoch = {}
    for (_, number), order in orders:
        by_epoch.setdefault(number, set()).add(order)
    assert all(len(same) == 1 for same in by_epoch.values())
    assert len({next(iter(same)) for same in by_epoch.values()}) == len(
        by_epoch) == 2


def test_tfds_run_writes_summary_and_chief_tensorboard(tfds_workers):
    from recipes.summaries import read_scalars

    model_dir, pids = tfds_workers["model_dir"], tfds_workers["pids"]
    summary = json.load(open(os.path.join(model_dir, "summary.json")))
    assert summary["dataset"] == "cifar10" and summary["replicas"] == 2
    assert [s["name"] for s in summary["stages"]] == [
        "sparse-train-a", "slim-a", "fine-tune-a", "export"]
    for stage in summary["stages"]:
        assert 0.0 <= stage["accuracy"] <= 1.0
        folder = os.path.join(model_dir, stage["name"], "tensorboard")
        # Event file names end in `.<pid>.<n>.v2`: only the chief wrote.
        writers = {name.split(".")[-3] for name in os.listdir(folder)}
        assert writers == {str(pids[0])}
        assert read_scalars(folder)["params"][-1][1] == stage["params"]
