"""The recipes off TensorFlow: `keras.distribution.DataParallel` and `fit`.

Under the TensorFlow backend the recipes train with tf.distribute
(`recipes.common`, `recipes.training`). Under `KERAS_BACKEND=jax`,
`common.setup`, `train`, `evaluate` and `export` hand their work to this
module: the model is replicated over all local devices (every GPU, every
TPU core, or the CPU) with `keras.distribution.DataParallel`, which splits
each global batch over them, and trained with `model.fit` and the
`ISTAGamma` callback. Under PyTorch the same code trains on one device
(Keras' distribution API is JAX-only).

Input: `--dataset=synthetic` is made in NumPy (the same examples as the
TensorFlow path's), so a synthetic run never needs TensorFlow; a real
dataset is read by the same tensorflow-datasets pipeline as under
TensorFlow (`recipes.inputs`: `tf.data` for input only, so TensorFlow
must be installed) and handed to `fit` as NumPy batches. Resuming inside a
stage uses `keras.callbacks.BackupAndRestore` (every epoch); stages resume
as under TensorFlow (`recipes.stages`).
"""

import dataclasses
import importlib.util
import os

import keras
import numpy as np

from keras_slim.core import copying
from keras_slim.core.counting import count_macs, count_params
from keras_slim.sparsity.ista_callback import ISTAGamma
from recipes.exporting import describe, float32_copy
from recipes.hooks import Hooks
from recipes.stages import StageRunner
from recipes.strategies import global_batch_size
from recipes.training import make_optimizer
from recipes.usage import UsageError


@dataclasses.dataclass
class Run:
    """What the stages of a run share, as `common.Run` (no strategy)."""

    flags: object
    distribution: object
    classes: int
    image_shape: tuple
    train_data: object  # (images, labels) arrays or a repeated tf.data
    eval_batches: object  # () -> iterable of (images, labels, weights)
    steps_per_epoch: int
    eval_steps: int
    stages: object
    batch_size: int
    log: object = print
    hooks: object = None
    strategy = None  # tells `common` this run is not tf.distribute's
    chief = True  # one process


def make_distribution(log=print):
    """DataParallel over all local devices under JAX; `None` elsewhere."""
    if keras.backend.backend() != "jax":
        return None
    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    log(f"keras.distribution.DataParallel over {len(devices)} device(s): "
        f"{', '.join(devices)}")
    return distribution


def synthetic_arrays(image_shape, classes, count, training, seed=0):
    """The examples of `inputs.synthetic_dataset_fn`, as NumPy arrays."""
    rng = np.random.default_rng(seed + (0 if training else 1))
    images = rng.standard_normal((count, *image_shape)).astype("float32")
    labels = rng.integers(0, classes, count).astype("int64")
    return images, labels


def _numpy_batches(dataset_fn, steps):
    def batches():
        dataset = dataset_fn(None).take(steps)
        yield from dataset.as_numpy_iterator()

    return batches


def setup(flags_obj, info, preprocess=None, image_size=None,
          datasets_override=None, log=print, hooks=None):
    """`common.setup` off TensorFlow; returns a `Run`."""
    keras.utils.set_random_seed(flags_obj.seed)
    policy = "float32"
    if flags_obj.mixed_precision:
        policy = "mixed_bfloat16"  # no loss scaling needed, on GPU or TPU
    keras.mixed_precision.set_global_policy(policy)
    if flags_obj.strategy not in ("default", "mirrored"):
        log(f"--strategy={flags_obj.strategy} is a tf.distribute strategy; "
            f"under {keras.backend.backend()} the run uses all local devices.")
    size = image_size or info.image_size
    image_shape = (size, size, 3)
    distribution = make_distribution(log)
    replicas = 1 if distribution is None else distribution.device_mesh.devices.size
    try:
        batch = global_batch_size(flags_obj.batch_size, replicas,
                                  flags_obj["batch_size"].present, log)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if datasets_override is None and flags_obj.dataset == "synthetic":
        count = flags_obj.synthetic_examples
        train_data = synthetic_arrays(image_shape, info.classes, count, True,
                                      flags_obj.seed)
        images, labels = synthetic_arrays(image_shape, info.classes, count,
                                          False, flags_obj.seed)
        train_count = eval_count = count

        def eval_batches():
            for start in range(0, count, batch):
                stop = start + batch
                yield (images[start:stop], labels[start:stop],
                       np.ones(len(labels[start:stop]), "float32"))
    else:
        from recipes import inputs  # tf.data for input only

        if datasets_override is not None:
            train_fn, eval_fn, (train_count, eval_count), image_shape = \
                inputs.override_dataset_fns(datasets_override, batch,
                                            flags_obj.seed, None)
        else:
            train_fn, train_count = inputs.tfds_dataset_fn(
                info, flags_obj.data_dir, True, batch, preprocess(True),
                image_shape, flags_obj.seed)
            eval_fn, eval_count = inputs.tfds_dataset_fn(
                info, flags_obj.data_dir, False, batch, preprocess(False),
                image_shape, flags_obj.seed)
        train_data = train_fn(None)
        eval_batches = _numpy_batches(eval_fn, -(-eval_count // batch))
    steps = flags_obj.steps_per_epoch or max(train_count // batch, 1)
    log(f"backend={keras.backend.backend()} replicas={replicas} "
        f"global_batch={batch} steps_per_epoch={steps}")
    stages = StageRunner(flags_obj.model_dir, True, log)
    stages.summary.update(
        dataset=flags_obj.dataset, strategy="DataParallel"
        if distribution is not None else "single_device",
        backend=keras.backend.backend(), replicas=replicas,
        global_batch_size=batch, steps_per_epoch=steps,
        precision=keras.mixed_precision.global_policy().name)
    return Run(flags_obj, distribution, info.classes, image_shape, train_data,
               eval_batches, steps, -(-eval_count // batch), stages, batch,
               log, hooks or Hooks())


def _copy(model):
    """A copy of `model` whose variables follow the current distribution."""
    return copying.clone_model(model)


class _EpochHook(keras.callbacks.Callback):
    """Calls `run.hooks.on_epoch_end` after each epoch (tests only)."""

    def __init__(self, run, stage):
        super().__init__()
        self.run = run
        self.stage = stage

    def on_epoch_end(self, epoch, logs=None):
        self.run.hooks.on_epoch_end(self.stage, epoch, logs or {})


def train(run, stage, model, directory, epochs, learning_rate, momentum=0.0,
          nesterov=False, rho=None, ista_layers=None, penalty="memory"):
    """`common.train` with `fit`; returns `(model, record)`."""
    model = _copy(model)
    optimizer = make_optimizer(learning_rate, momentum, nesterov)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    callbacks = [keras.callbacks.BackupAndRestore(
        os.path.join(directory, "checkpoints"), delete_checkpoint=False)]
    ista = None
    if rho is not None:
        ista = ISTAGamma(rho, penalty=penalty, layers=ista_layers)
        callbacks.insert(0, ista)
    callbacks.append(_EpochHook(run, stage))
    x, y = (run.train_data if isinstance(run.train_data, tuple)
            else (run.train_data, None))
    history = model.fit(x, y, batch_size=run.batch_size if y is not None
                        else None, epochs=epochs,
                        steps_per_epoch=run.steps_per_epoch, verbose=0,
                        callbacks=callbacks)
    losses = history.history.get("loss") or [float("nan")]
    record = {"params": count_params(model), "macs": count_macs(model),
              "accuracy": evaluate(run, model), "loss": float(losses[-1]),
              "epochs": epochs, "steps": epochs * run.steps_per_epoch,
              "resumed_from_epoch": epochs - len(history.history.get("loss", []))}
    if ista is not None:
        record["gamma_zero_fraction"] = ista.ista.zero_fraction()
        record["gamma_l1"] = ista.ista.lasso()
    run.log(f"[{stage}] loss {record['loss']:.4f}")
    return model, record


def evaluate(run, model):
    """Top-1 accuracy on the evaluation set (padding weighted out)."""
    correct = total = 0.0
    for images, labels, weights in run.eval_batches():
        logits = model.predict_on_batch(images)
        hits = np.argmax(keras.ops.convert_to_numpy(logits), -1) == labels
        correct += float(np.sum(weights * hits))
        total += float(np.sum(weights))
    return correct / max(total, 1.0)


def export(run, model, directory, accuracy=None):
    """The model as a TFLite file, checked against this backend's outputs
    (`keras_slim.deploy.export` converts in a TensorFlow-backend process); needs
    TensorFlow installed, else the record says it was skipped."""
    record = {**describe(model), "accuracy": accuracy}
    model = float32_copy(model)
    if importlib.util.find_spec("tensorflow") is None:
        record["tflite"] = None
        record["skipped"] = "TensorFlow is not installed: no TFLite file"
        return None, record
    from keras_slim.deploy.export import export as export_model

    result = export_model(model, os.path.join(directory, "model.tflite"))
    record.update(tflite="model.tflite", tflite_bytes=result.size_bytes,
                  tflite_relative_difference=result.relative_difference)
    return None, record
