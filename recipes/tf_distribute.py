"""The recipes under TensorFlow: a `tf.distribute` strategy and one loop.

`TFDistribute` is the training backend `backends.make_backend` picks under
the TensorFlow backend (`data_parallel.KerasDistribution` is the other):
the model is copied into the strategy's scope and trained by the custom
loop of `recipes.training` (Keras 3's `fit` fails under
`MultiWorkerMirroredStrategy`), with ISTA attached to the optimizer
(`attach_ista`). Input is `tf.data` pipelines, one per replica.
"""

import os

from keras_slim.core import copying
from keras_slim.sparsity.ista import attach_ista
from recipes import inputs, summaries
from recipes.exporting import describe, float32_copy
from recipes.strategies import make_strategy, set_precision
from recipes.training import Trainer, is_chief, make_optimizer


def in_scope(strategy, model):
    """A copy of `model` whose variables belong to `strategy`."""
    with strategy.scope():
        copy = copying.clone_model(model)
    return copy


def tf_data_fns(flags_obj, info, preprocess, image_shape, batch,
                datasets_override=None, observe=None, synthetic=True):
    """`(train_fn, eval_fn, (train_count, eval_count), image_shape)`: the
    `dataset_fn(input_context, epoch)` and `dataset_fn(input_context)` pair
    of `datasets_override`, of `--dataset=synthetic` (when `synthetic`) or
    of the prepared TFDS dataset."""
    seed = flags_obj.seed
    if datasets_override is not None:
        return inputs.override_dataset_fns(datasets_override, batch, seed,
                                           observe)
    if synthetic and flags_obj.dataset == "synthetic":
        count = flags_obj.synthetic_examples
        train_fn, train_count = inputs.synthetic_dataset_fn(
            image_shape, info.classes, count, True, batch, seed, observe)
        eval_fn, eval_count = inputs.synthetic_dataset_fn(
            image_shape, info.classes, count, False, batch, seed)
    else:
        train_fn, train_count = inputs.tfds_dataset_fn(
            info, flags_obj.data_dir, True, batch, preprocess(True),
            image_shape, seed, observe)
        eval_fn, eval_count = inputs.tfds_dataset_fn(
            info, flags_obj.data_dir, False, batch, preprocess(False),
            image_shape, seed)
    return train_fn, eval_fn, (train_count, eval_count), image_shape


class TFDistribute:
    """Training, evaluation and export under one `tf.distribute.Strategy`.

    Args:
        flags_obj: the parsed flags (`--strategy`, `--tpu`,
            `--mixed_precision`).
        strategy_override: a strategy to use instead of `--strategy`.
        log: a callable taking a line.
    """

    def __init__(self, flags_obj, strategy_override=None, log=print):
        set_precision(flags_obj)
        self.strategy = strategy_override or make_strategy(flags_obj.strategy,
                                                           flags_obj.tpu)
        self.replicas = self.strategy.num_replicas_in_sync
        self.chief = is_chief(self.strategy)
        self.summary = {"strategy": flags_obj.strategy,
                        "replicas": self.replicas}
        self.log = log

    def describe(self, batch, steps):
        return (f"strategy={type(self.strategy).__name__} "
                f"replicas={self.replicas} global_batch={batch} "
                f"steps_per_epoch={steps}")

    def datasets(self, flags_obj, info, preprocess, image_shape, batch,
                 datasets_override=None, observe=None):
        """`(train, evaluation, (train_count, eval_count), image_shape)`;
        train is a `dataset_fn(input_context, epoch)`, evaluation a
        `dataset_fn(input_context)`."""
        return tf_data_fns(flags_obj, info, preprocess, image_shape, batch,
                           datasets_override, observe)

    def train(self, run, stage, model, directory, epochs, learning_rate,
              momentum=0.0, nesterov=False, rho=None, ista_layers=None,
              penalty="memory"):
        """See `common.train`."""
        strategy = self.strategy
        model = in_scope(strategy, model)
        with strategy.scope():
            optimizer = make_optimizer(learning_rate, momentum, nesterov)
            optimizer.build(model.trainable_variables)
        trainer = Trainer(strategy, model, optimizer, run.batch_size,
                          log=run.log)
        checkpoint_dir = os.path.join(directory, "checkpoints")
        # Restored before ISTA is attached: ISTA counts the optimizer's
        # steps from there (a stage whose epochs were all done before takes
        # none, and is not warned about).
        trainer.restore(checkpoint_dir)
        ista = None
        if rho is not None:
            with strategy.scope():
                ista = attach_ista(model, rho, penalty=penalty,
                                   optimizer=optimizer, layers=ista_layers)
        writer = summaries.stage_writer(directory, self.chief)

        def on_epoch_end(epoch, logs):
            if ista is not None:
                logs["gamma_zero_fraction"] = ista.zero_fraction()
                logs["gamma_l1"] = ista.lasso()
            summaries.write_epoch(writer, run.steps_per_epoch, epoch, logs,
                                  learning_rate, rho)
            run.hooks.on_epoch_end(stage, epoch, logs)

        try:
            result = trainer.train(run.train_data, epochs, run.steps_per_epoch,
                                   checkpoint_dir, on_epoch_end)
        finally:
            writer.close()
        record = {**describe(model),
                  "accuracy": trainer.evaluate(run.eval_data, run.eval_steps),
                  "loss": result["loss"], "epochs": epochs,
                  "steps": epochs * run.steps_per_epoch,
                  "resumed_from_epoch": result["resumed_from_epoch"]}
        if ista is not None:
            record["gamma_zero_fraction"] = ista.zero_fraction()
            record["gamma_l1"] = ista.lasso()
            ista.detach()
        return model, record

    def evaluate(self, run, model):
        """Top-1 accuracy on the evaluation set, under the strategy."""
        model = in_scope(self.strategy, model)
        trainer = Trainer(self.strategy, model, None, run.batch_size, run.log)
        return trainer.evaluate(run.eval_data, run.eval_steps)

    def export(self, run, model, directory, accuracy=None):
        """A SavedModel and a TFLite file (chief only), each checked against
        Keras by `keras_slim.export` (1e-4 of the output range)."""
        from keras_slim.deploy.export import export as export_model

        record = {**describe(model), "accuracy": accuracy}
        if not self.chief:
            return None, record
        model = float32_copy(model)
        saved = export_model(model, os.path.join(directory, "saved_model"),
                             format="saved_model")
        tflite = export_model(model, os.path.join(directory, "model.tflite"))
        record.update(saved_model="saved_model", tflite="model.tflite",
                      tflite_bytes=tflite.size_bytes,
                      tflite_relative_difference=tflite.relative_difference,
                      saved_model_relative_difference=saved.relative_difference)
        return None, record
