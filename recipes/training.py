"""The custom training loop every recipe uses, under any tf.distribute strategy.

Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy` ("Attempt to
convert a value (PerReplica...)", keras-team/keras#20585), so the recipes run
one loop of their own under every strategy, the Model Garden way:
`strategy.run` of a replica step inside a `tf.function`, the per-example
loss averaged over the global batch (`tf.nn.compute_average_loss`), the
regularization losses (GammaL1, weight decay) scaled per replica
(`tf.nn.scale_regularization_loss`), and `optimizer.apply_gradients`.
ISTA runs inside `apply_gradients`: `keras_slim.sparsity.ista.attach_ista` gives the
gammas a constraint the optimizer applies after each update.

Resuming: a `tf.train.Checkpoint` of the model, the optimizer, the epoch
counter and the epoch's loss is written by a `tf.train.CheckpointManager`
after every epoch, the last two kept, and the newest readable one is
restored when the loop starts again (`recipes.checkpoints`); an
interrupted epoch is run again from its start. Each epoch reads its own
input pipeline, `dataset_fn(input_context, epoch)`, whose order and
augmentation depend on the seed and the epoch's number only, so a resumed
run trains on what the uninterrupted one did, bit for bit. Every worker
saves (checkpointing is collective under `MultiWorkerMirroredStrategy`);
workers other than the chief write to a temporary folder that is removed
afterwards.
"""

import functools
import os
import shutil
import time

import keras

from recipes import checkpoints
from recipes.lazy_tensorflow import tf
from recipes.summaries import eta, format_seconds


def is_chief(strategy):
    """Whether this process is the chief (the one that writes outputs)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    if task_type == "worker":
        has_chief = "chief" in resolver.cluster_spec().as_dict()
        return not has_chief and task_id == 0
    return False


def worker_directory(directory, strategy):
    """Where this worker writes: `directory` for the chief, else a temporary
    folder inside it."""
    if is_chief(strategy):
        return directory
    resolver = strategy.cluster_resolver
    return os.path.join(directory, f".worker_{resolver.task_type}_{resolver.task_id}")


class Trainer:
    """Trains and evaluates one model under a strategy.

    Build the model and optimizer inside `strategy.scope()` before creating
    the trainer; attach ISTA (if any) before the first `train` call.

    Args:
        strategy: a `tf.distribute.Strategy`.
        model: a `keras.Model` returning logits, built in the scope.
        optimizer: a Keras optimizer, built in the scope.
        global_batch_size: the batch size summed over replicas.
        log: a callable taking a line of progress.
    """

    def __init__(self, strategy, model, optimizer, global_batch_size,
                 log=print):
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.global_batch_size = int(global_batch_size)
        self.log = log
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=None)
        with strategy.scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False,
                                     name="epoch")
            self.loss = tf.Variable(float("nan"), dtype=tf.float32,
                                    trainable=False, name="loss")
        self._train_loop = None
        self._eval_step = None
        self._manager = None

    # -- steps ----------------------------------------------------------------

    def _replica_step(self, images, labels):
        model, optimizer = self.model, self.optimizer
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = self.loss_fn(labels, tf.cast(logits, tf.float32))
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=self.global_batch_size)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(
                    tf.add_n([tf.cast(x, tf.float32) for x in model.losses]))
            scaled = loss
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                scaled = optimizer.scale_loss(loss)
        variables = model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    def _make_train_loop(self):
        strategy = self.strategy

        @tf.function
        def train_loop(iterator, steps):
            total = tf.constant(0.0)
            for _ in tf.range(steps):
                images, labels = next(iterator)
                per_replica = strategy.run(self._replica_step,
                                           args=(images, labels))
                total += strategy.reduce("SUM", per_replica, axis=None)
            return total / tf.cast(steps, tf.float32)

        return train_loop

    def _replica_eval(self, images, labels, weights):
        logits = self.model(images, training=False)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int64)
        correct = tf.cast(tf.equal(predicted, labels), tf.float32) * weights
        return tf.reduce_sum(correct), tf.reduce_sum(weights)

    def _make_eval_step(self):
        strategy = self.strategy

        @tf.function
        def eval_step(iterator):
            images, labels, weights = next(iterator)
            correct, count = strategy.run(self._replica_eval,
                                          args=(images, labels, weights))
            return (strategy.reduce("SUM", correct, axis=None),
                    strategy.reduce("SUM", count, axis=None))

        return eval_step

    # -- public ---------------------------------------------------------------

    def restore(self, checkpoint_dir):
        """Restore the newest readable checkpoint of `checkpoint_dir` (see
        `recipes.checkpoints`); returns the epochs it had done (0 when
        there is none). Called by `train` if not called before; call it
        first to attach ISTA after the optimizer's step is restored.

        Raises:
            checkpoints.CheckpointError: no checkpoint there can be read.
        """
        checkpoint = tf.train.Checkpoint(model=self.model,
                                         optimizer=self.optimizer,
                                         epoch=self.epoch, loss=self.loss)
        restored = checkpoints.restore_newest(checkpoint, checkpoint_dir,
                                              self.log)
        write_dir = worker_directory(checkpoint_dir, self.strategy)
        self._manager = (checkpoints.manager(checkpoint, write_dir, restored,
                                             checkpoint_dir), write_dir)
        resumed = int(self.epoch.numpy())
        if resumed:
            self.log(f"  resuming from epoch {resumed} ({restored})")
        return resumed

    def train(self, dataset_fn, epochs, steps_per_epoch, checkpoint_dir,
              on_epoch_end=None):
        """Train for `epochs` epochs, resuming from `checkpoint_dir`.

        Args:
            dataset_fn: a `dataset_fn(input_context, epoch)` of (image,
                label), epoch `epoch`'s stream (0-based).
            epochs: total epochs of this stage.
            steps_per_epoch: steps in an epoch.
            checkpoint_dir: the stage's checkpoint folder (the chief's; other
                workers save next to it and delete their copy).
            on_epoch_end: optional callable `(epoch, logs)`, called after the
                epoch's checkpoint is written; it may add floats to `logs`
                (they are shown on the epoch's progress line).

        Returns:
            dict with `loss` (last epoch's mean, also when every epoch was
            done before), `resumed_from_epoch`, `steps_run` (in this call)
            and `seconds`.
        """
        if self._manager is None:
            self.restore(checkpoint_dir)
        manager, write_dir = self._manager
        resumed = int(self.epoch.numpy())
        if self._train_loop is None:
            self._train_loop = self._make_train_loop()
        start, steps_run = time.time(), 0
        for epoch in range(resumed, epochs):
            iterator = iter(self.strategy.distribute_datasets_from_function(
                functools.partial(dataset_fn, epoch=epoch)))
            loss = float(self._train_loop(iterator, tf.constant(steps_per_epoch)))
            steps_run += steps_per_epoch
            self.epoch.assign(epoch + 1)
            self.loss.assign(loss)
            manager.save()
            if write_dir != checkpoint_dir:
                shutil.rmtree(write_dir, ignore_errors=True)
            logs = {"loss": loss}
            if on_epoch_end is not None:
                on_epoch_end(epoch, logs)
            extra = " ".join(f"{k}={v:.4g}" for k, v in logs.items()
                             if isinstance(v, float))
            elapsed = time.time() - start
            self.log(f"  epoch {epoch + 1}/{epochs} {extra} "
                     f"[{format_seconds(elapsed)} elapsed, ETA "
                     f"{eta(elapsed, epoch + 1 - resumed, epochs - resumed)}]")
        return {"loss": float(self.loss.numpy()), "resumed_from_epoch": resumed,
                "steps_run": steps_run, "seconds": time.time() - start}

    def evaluate(self, dataset_fn, steps):
        """Top-1 accuracy over `steps` batches of (image, label, weight)."""
        if self._eval_step is None:
            self._eval_step = self._make_eval_step()
        iterator = iter(self.strategy.distribute_datasets_from_function(
            dataset_fn))
        correct = count = 0.0
        for _ in range(steps):
            c, n = self._eval_step(iterator)
            correct += float(c)
            count += float(n)
        return correct / max(count, 1.0)


def make_optimizer(learning_rate, momentum=0.0, nesterov=False):
    """SGD, wrapped in a loss-scale optimizer under mixed_float16."""
    optimizer = keras.optimizers.SGD(learning_rate, momentum=momentum,
                                     nesterov=nesterov)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
