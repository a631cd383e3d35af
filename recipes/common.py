"""Shared pieces of the recipes: flags, strategy, data, training, slimming.

A recipe is a list of stages (sparse-train, slim, fine-tune, scratch,
export). Each stage writes into its own folder `MODEL_DIR/<stage>/`: the
stage's model (`model.keras`), its record (`done.json`, written last) and
its training checkpoints. On a rerun, a stage whose `done.json` exists is
skipped and its model loaded, so a killed run continues where it stopped;
inside a stage, training resumes from its last readable epoch checkpoint
(see `recipes.training`) and reproduces the uninterrupted run bit for bit.
`MODEL_DIR/flags.json` records the flags of the run; a rerun with other
flags is refused (`recipes.stages`). After every stage the chief writes
`MODEL_DIR/summary.json`: `{"stages": [{"name", "params", "macs",
"accuracy", ...}], ...}`, the slim stages with the width of every layer.
With several workers, `MODEL_DIR` must be storage every worker sees (a
shared file system or a bucket), as in TensorFlow Model Garden.
"""

import dataclasses

import keras
from absl import flags

from keras_slim.core.counting import count_params
from recipes import inputs
from recipes.backends import make_backend
from recipes.exporting import describe, export
from recipes.hooks import Hooks
from recipes.stages import StageRunner, check_flags, run_flags
from recipes.strategies import (
    STRATEGIES,
    global_batch_size,
    make_strategy,
    set_precision,
)
from recipes.usage import UsageError, run_main  # noqa: F401 (scripts use them)

__all__ = ["STRATEGIES", "describe", "export", "make_strategy", "set_precision"]


# -- flags --------------------------------------------------------------------


def define_flags(defaults, flag_values=flags.FLAGS):
    """The flags every recipe shares; `defaults` holds the paper's values.

    Args:
        defaults: dict with `dataset`, `datasets` (the real ones allowed),
            `model_dir`, `epochs`, `finetune_epochs`, `batch_size`.
        flag_values: the `absl.flags.FlagValues` to define them in.
    """
    fv = flag_values
    flags.DEFINE_enum("strategy", "default", STRATEGIES,
                      "tf.distribute strategy. multi_worker_mirrored reads "
                      "TF_CONFIG.", flag_values=fv)
    flags.DEFINE_string("tpu", "", "TPU name or grpc:// address for "
                        "--strategy=tpu ('' = local TPU VM).", flag_values=fv)
    flags.DEFINE_enum("dataset", defaults["dataset"],
                      list(defaults["datasets"]) + ["synthetic"],
                      "The real dataset (read with tensorflow-datasets from "
                      "--data_dir) or random images of its shape.",
                      flag_values=fv)
    flags.DEFINE_string("data_dir", None, "TFDS data directory holding the "
                        "prepared dataset (never downloaded).", flag_values=fv)
    flags.DEFINE_string("model_dir", defaults["model_dir"],
                        "Output folder: one subfolder per stage and "
                        "summary.json.", flag_values=fv)
    flags.DEFINE_integer("epochs", defaults["epochs"],
                         "Epochs of each sparse-training stage.", flag_values=fv)
    flags.DEFINE_integer("steps_per_epoch", 0, "Steps in an epoch; 0 = one "
                         "pass over the training set.", flag_values=fv)
    flags.DEFINE_integer("finetune_epochs", defaults["finetune_epochs"],
                         "Epochs of each fine-tuning stage.", flag_values=fv)
    flags.DEFINE_integer("batch_size", defaults["batch_size"],
                         "Global batch size, split over the replicas: a "
                         "multiple of their number (the default is rounded "
                         "to the nearest one, with a log line).",
                         flag_values=fv)
    flags.DEFINE_bool("mixed_precision", False, "mixed_float16 (GPU) or "
                      "mixed_bfloat16 (TPU) compute.", flag_values=fv)
    flags.DEFINE_integer("synthetic_examples", 256, "Examples in each split "
                         "of --dataset=synthetic.", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=fv)


# -- the context of a run -------------------------------------------------------


@dataclasses.dataclass
class Run:
    """Everything the stages of one recipe run share.

    `backend` (from `backends.make_backend`, chosen once) trains,
    evaluates and exports; `train_data` and `eval_data` are in the form it
    reads (`dataset_fn`s under tf.distribute, arrays or NumPy batches under
    keras.distribution).
    """

    flags: object
    backend: object
    classes: int
    image_shape: tuple
    train_data: object
    eval_data: object
    steps_per_epoch: int
    eval_steps: int
    stages: object
    batch_size: int
    log: object = print
    hooks: object = dataclasses.field(default_factory=Hooks)

    @property
    def chief(self):
        return self.backend.chief


def setup(flags_obj, info, preprocess=None, image_size=None,
          datasets_override=None, strategy_override=None, log=print,
          hooks=None):
    """Strategy, precision, global batch, data pipelines and stage runner.

    The flags, the global batch and the data are checked before any model
    is built: a `--model_dir` holding a run made with other flags
    (`stages.check_flags`), a `--batch_size` that does not divide over the
    replicas (see `strategies.global_batch_size`) or a real dataset that is
    not prepared in `--data_dir` stops the run with a clear error.

    Args:
        flags_obj: the parsed flags.
        info: the `inputs.DatasetInfo` of the real dataset.
        preprocess: `preprocess(training)` -> per-image function for the
            real dataset.
        image_size: the side of the (square) input images; default the
            dataset's.
        datasets_override: optional `(train, eval)` pair of unbatched
            `tf.data.Dataset`s of (image, label) used instead.
        strategy_override: optional strategy used instead of `--strategy`.
        log: a callable taking a line of progress.
        hooks: a `recipes.hooks.Hooks` (tests only), or `None`.

    Returns:
        A `Run`.
    """
    hooks = hooks or Hooks()
    recorded = run_flags(flags_obj)
    check_flags(flags_obj.model_dir, recorded)
    keras.utils.set_random_seed(flags_obj.seed)
    backend = make_backend(flags_obj, strategy_override, log)
    size = image_size or info.image_size
    try:
        batch = global_batch_size(flags_obj.batch_size, backend.replicas,
                                  flags_obj["batch_size"].present, log)
    except ValueError as error:
        raise UsageError(str(error)) from None
    train_data, eval_data, (train_count, eval_count), image_shape = \
        backend.datasets(flags_obj, info, preprocess, (size, size, 3), batch,
                         datasets_override, hooks.training_examples)
    steps = flags_obj.steps_per_epoch or max(train_count // batch, 1)
    log(backend.describe(batch, steps))
    stages = StageRunner(flags_obj.model_dir, backend.chief, log, recorded)
    stages.summary.update(dataset=flags_obj.dataset, **backend.summary,
                          global_batch_size=batch, steps_per_epoch=steps,
                          precision=keras.mixed_precision.global_policy().name)
    return Run(flags_obj, backend, info.classes, image_shape, train_data,
               eval_data, steps, inputs.eval_steps(eval_count, batch), stages,
               batch, log, hooks)


# -- models -------------------------------------------------------------------


def layer_widths(model):
    """Output channels of every convolution and Dense layer, by name."""
    widths = {}
    for layer in model.layers:
        width = getattr(layer, "filters", None) or getattr(layer, "units", None)
        if width is not None:
            widths[layer.name] = int(width)
    return widths


def strip_gamma_regularizers(model):
    """Remove regularizers from the BatchNormalization gammas (in place)."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.scale:
            layer.gamma_regularizer = None
            layer.gamma.regularizer = None
    return model


def set_weight_decay(model, weight_decay):
    """Give every convolution and Dense kernel of `model` an L2 penalty of
    `weight_decay` (PyTorch convention: `weight_decay * w` in the gradient),
    in place; returns `model`."""
    regularizer = (keras.regularizers.L2(weight_decay / 2) if weight_decay
                   else None)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and hasattr(layer, "kernel_regularizer"):
            layer.kernel_regularizer = regularizer
            kernel.regularizer = regularizer
    return model


def step_decay(run, learning_rate, epochs, boundaries=(0.5, 0.75),
               factor=0.1):
    """Learning rate divided by `1 / factor` at the given shares of training."""
    steps = [max(int(b * epochs * run.steps_per_epoch), 1) for b in boundaries]
    values = [learning_rate * factor**i for i in range(len(steps) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(steps, values)


def train(run, stage, model, directory, epochs, learning_rate, momentum=0.0,
          nesterov=False, rho=None, ista_layers=None, penalty="memory"):
    """Train `model` (a copy, in the strategy's scope) in stage `stage`.

    After every epoch the chief writes `loss`, `learning_rate` and, with
    ISTA, `rho`, `gamma_zero_fraction` and `gamma_l1` to the stage's
    TensorBoard folder.

    Args:
        run: the `Run`.
        stage: the stage name (passed to `run.hooks`).
        model: the model to start from; not modified.
        directory: the stage folder (checkpoints go in `checkpoints/`).
        epochs: epochs to train.
        learning_rate: a float or a Keras schedule.
        momentum, nesterov: SGD settings.
        rho: ISTA strength (a float or a schedule of the step) or `None`.
        ista_layers: BatchNormalization layers ISTA penalises (None = all
            with a gamma).
        penalty: ISTA penalty weights ("memory" or "uniform").

    Returns:
        `(model, record)`.
    """
    return run.backend.train(run, stage, model, directory, epochs,
                             learning_rate, momentum, nesterov, rho,
                             ista_layers, penalty)


def evaluate(run, model):
    """Accuracy of `model` on the evaluation set, on the run's backend."""
    return run.backend.evaluate(run, model)


def slim(run, model, plan_function, after=None):
    """Plan with `plan_function(model)`, slim, strip gamma regularizers.

    Args:
        run: the `Run`.
        model: the sparse-trained model.
        plan_function: model -> `PruningPlan`.
        after: optional model -> model applied to the slim model (e.g. to
            undo a gamma rescaling).

    Returns:
        `(slim_model, record)` with params, macs, accuracy (before any
        fine-tuning), the plan and the width of every layer.
    """
    from keras_slim.core.surgery import slim_model
    from keras_slim.sparsity.regularizers import remove_gamma_regularizer

    plan = plan_function(model)
    slimmed = remove_gamma_regularizer(slim_model(model, plan))
    if after is not None:
        slimmed = after(slimmed)
    record = {**describe(slimmed), "accuracy": evaluate(run, slimmed),
              "params_before": count_params(model),
              "removed_channels": {
                  name: int(plan.widths.get(name, len(kept)) - len(kept))
                  for name, kept in plan.kept.items()},
              "widths": layer_widths(slimmed)}
    return slimmed, record
