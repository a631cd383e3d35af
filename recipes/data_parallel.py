"""The recipes off TensorFlow: `keras.distribution.DataParallel` and `fit`.

Under the TensorFlow backend the recipes train with tf.distribute
(`recipes.tf_distribute`). Under `KERAS_BACKEND=jax`,
`backends.make_backend` picks `KerasDistribution` instead: the model is
replicated over all local devices (every GPU, every TPU core, or the CPU)
with `keras.distribution.DataParallel`, which splits each global batch over
them, and trained with `model.fit` and the `ISTAGamma` callback. Under
PyTorch the same code trains on one device (Keras' distribution API is
JAX-only).

Input: `--dataset=synthetic` is made in NumPy (the same examples as the
TensorFlow path's), so a synthetic run never needs TensorFlow (nor do the
TensorBoard summaries, `recipes.summaries`); a real dataset is read by the
same tensorflow-datasets pipeline as under TensorFlow (`recipes.inputs`:
`tf.data` for input only, so TensorFlow must be installed) and handed to
`fit` as NumPy batches. Resuming inside a stage uses
`keras.callbacks.BackupAndRestore` (every epoch); stages resume as under
TensorFlow (`recipes.stages`).
"""

import importlib.util
import os
import time

import keras
import numpy as np

from keras_slim.core import copying
from keras_slim.core.counting import count_macs, count_params
from keras_slim.sparsity.ista_callback import ISTAGamma
from recipes import summaries
from recipes.exporting import describe, float32_copy
from recipes.training import make_optimizer


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


class _EpochEnd(keras.callbacks.Callback):
    """After each epoch: the progress line, the TensorBoard scalars and
    `run.hooks.on_epoch_end` (as the tf.distribute loop does)."""

    def __init__(self, run, stage, writer, epochs, learning_rate, rho):
        super().__init__()
        self.run, self.stage, self.writer = run, stage, writer
        self.epochs, self.learning_rate, self.rho = epochs, learning_rate, rho
        self.start = self.resumed = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.start is None:
            self.start, self.resumed = time.time(), epoch

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        summaries.write_epoch(self.writer, self.run.steps_per_epoch, epoch,
                              logs, self.learning_rate, self.rho)
        extra = " ".join(f"{k}={float(v):.4g}" for k, v in logs.items()
                         if isinstance(v, (int, float)))
        elapsed = time.time() - self.start
        done, total = epoch + 1 - self.resumed, self.epochs - self.resumed
        self.run.log(f"  epoch {epoch + 1}/{self.epochs} {extra} "
                     f"[{summaries.format_seconds(elapsed)} elapsed, ETA "
                     f"{summaries.eta(elapsed, done, total)}]")
        self.run.hooks.on_epoch_end(self.stage, epoch, logs)


class KerasDistribution:
    """Training, evaluation and export with `keras.distribution` and `fit`.

    Args:
        flags_obj: the parsed flags (`--strategy` is ignored with a log
            line; `--mixed_precision` means bfloat16).
        log: a callable taking a line.
    """

    chief = True  # one process

    def __init__(self, flags_obj, log=print):
        policy = "float32"
        if flags_obj.mixed_precision:
            policy = "mixed_bfloat16"  # no loss scaling needed, GPU or TPU
        keras.mixed_precision.set_global_policy(policy)
        backend = keras.backend.backend()
        if flags_obj.strategy not in ("default", "mirrored"):
            log(f"--strategy={flags_obj.strategy} is a tf.distribute "
                f"strategy; under {backend} the run uses all local devices.")
        self.distribution = make_distribution(log)
        self.replicas = (1 if self.distribution is None
                         else self.distribution.device_mesh.devices.size)
        self.summary = {"strategy": "DataParallel" if self.distribution
                        is not None else "single_device",
                        "backend": backend, "replicas": self.replicas}

    def describe(self, batch, steps):
        return (f"backend={keras.backend.backend()} replicas={self.replicas} "
                f"global_batch={batch} steps_per_epoch={steps}")

    def datasets(self, flags_obj, info, preprocess, image_shape, batch,
                 datasets_override=None, observe=None):
        """`(train, evaluation, (train_count, eval_count), image_shape)`:
        train is `(images, labels)` arrays or a repeated `tf.data.Dataset`
        of batches, evaluation a function returning an iterable of
        `(images, labels, weights)` batches. `observe` (a `tf.data` test
        hook) is not used."""
        if datasets_override is None and flags_obj.dataset == "synthetic":
            count = flags_obj.synthetic_examples
            train = synthetic_arrays(image_shape, info.classes, count, True,
                                     flags_obj.seed)
            images, labels = synthetic_arrays(image_shape, info.classes,
                                              count, False, flags_obj.seed)

            def evaluation():
                for start in range(0, count, batch):
                    stop = start + batch
                    yield (images[start:stop], labels[start:stop],
                           np.ones(len(labels[start:stop]), "float32"))

            return train, evaluation, (count, count), image_shape
        from recipes.tf_distribute import tf_data_fns  # tf.data for input

        train_fn, eval_fn, counts, image_shape = tf_data_fns(
            flags_obj, info, preprocess, image_shape, batch,
            datasets_override, synthetic=False)
        evaluation = _numpy_batches(eval_fn, -(-counts[1] // batch))
        return train_fn(None), evaluation, counts, image_shape

    def train(self, run, stage, model, directory, epochs, learning_rate,
              momentum=0.0, nesterov=False, rho=None, ista_layers=None,
              penalty="memory"):
        """See `common.train`; trains with `fit`."""
        model = copying.clone_model(model)  # variables follow the distribution
        optimizer = make_optimizer(learning_rate, momentum, nesterov)
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(
            from_logits=True))
        callbacks = [keras.callbacks.BackupAndRestore(
            os.path.join(directory, "checkpoints"), delete_checkpoint=False)]
        ista = None
        if rho is not None:
            ista = ISTAGamma(rho, penalty=penalty, layers=ista_layers)
            callbacks.insert(0, ista)  # its logs reach _EpochEnd
        writer = summaries.stage_writer(directory, self.chief)
        callbacks.append(_EpochEnd(run, stage, writer, epochs, learning_rate,
                                   rho))
        x, y = (run.train_data if isinstance(run.train_data, tuple)
                else (run.train_data, None))
        try:
            history = model.fit(
                x, y, batch_size=run.batch_size if y is not None else None,
                epochs=epochs, steps_per_epoch=run.steps_per_epoch, verbose=0,
                callbacks=callbacks)
        finally:
            writer.close()
        losses = history.history.get("loss") or [float("nan")]
        record = {"params": count_params(model), "macs": count_macs(model),
                  "accuracy": self.evaluate(run, model),
                  "loss": float(losses[-1]), "epochs": epochs,
                  "steps": epochs * run.steps_per_epoch,
                  "resumed_from_epoch":
                      epochs - len(history.history.get("loss", []))}
        if ista is not None:
            record["gamma_zero_fraction"] = ista.ista.zero_fraction()
            record["gamma_l1"] = ista.ista.lasso()
        return model, record

    def evaluate(self, run, model):
        """Top-1 accuracy on the evaluation set (padding weighted out)."""
        correct = total = 0.0
        for images, labels, weights in run.eval_data():
            logits = model.predict_on_batch(images)
            hits = np.argmax(keras.ops.convert_to_numpy(logits), -1) == labels
            correct += float(np.sum(weights * hits))
            total += float(np.sum(weights))
        return correct / max(total, 1.0)

    def export(self, run, model, directory, accuracy=None):
        """The model as a TFLite file, checked against this backend's
        outputs (`keras_slim.export` converts in a TensorFlow-backend
        process); needs TensorFlow installed, else the record says it was
        skipped."""
        record = {**describe(model), "accuracy": accuracy}
        model = float32_copy(model)
        if importlib.util.find_spec("tensorflow") is None:
            record["tflite"] = None
            record["skipped"] = "TensorFlow is not installed: no TFLite file"
            run.log(f"  export skipped: {record['skipped']}")
            return None, record
        from keras_slim.deploy.export import export as export_model

        result = export_model(model, os.path.join(directory, "model.tflite"))
        record.update(tflite="model.tflite", tflite_bytes=result.size_bytes,
                      tflite_relative_difference=result.relative_difference)
        return None, record
