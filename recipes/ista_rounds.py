"""Ye et al. (ICLR 2018) on CIFAR: rounds of ISTA training, slimming, fine-tuning.

Shared by `convnet_cifar10` (Table 1) and `resnet20_cifar10` (Table 2):

- `base` (optional): the dense network trained without ISTA, the base
  accuracy of the tables.
- For each model (`a`, `b`, ...): `sparse-train-<m>` trains with ISTA on the
  gammas (model a from scratch, that is from a freshly initialized network
  of the base architecture, not from the trained `base`, with a warm-up
  `rho`: "model A is trained from scratch using the base model" (Ye et al.,
  section 5.1); the next ones from the previous fine-tuned model with a
  larger `rho`), `slim-<m>` removes the
  channels whose gamma is exactly zero and folds their constant output
  (ReLU(beta)) into the next layer, `fine-tune-<m>` trains the slim model
  without ISTA.
- `export`: the last fine-tuned model as SavedModel and TFLite.

Defaults follow the paper and its reference code (plain SGD, batch 125,
weight decay 5e-4, 30k warm-up steps): see each recipe.
"""

import keras
import numpy as np
from absl import flags

from keras_slim.planners.criteria import plan_zero_gamma
from keras_slim.sparsity.penalties import memory_costs
from keras_slim.sparsity.regularizers import select_batchnorms
from recipes import common


def define_flags(defaults, flag_values=flags.FLAGS):
    """Flags of the ISTA rounds; `defaults` holds the paper's values."""
    fv = flag_values
    flags.DEFINE_list("models", defaults["models"], "Models to derive in "
                      "turn: the first is trained with ISTA from scratch (a "
                      "new, randomly initialized network of the base "
                      "architecture, as in the paper), each next one from "
                      "the previous fine-tuned model.", flag_values=fv)
    flags.DEFINE_list("rho", defaults["rho"], "ISTA strength of each model, "
                      "in the order of --models.", flag_values=fv)
    flags.DEFINE_float("rho_warmup", defaults["rho_warmup"], "rho of model "
                       "a's first --rho_warmup_steps steps.", flag_values=fv)
    flags.DEFINE_integer("rho_warmup_steps", 30_000, "Warm-up steps of "
                         "model a.", flag_values=fv)
    flags.DEFINE_enum("penalty", "paper", ["paper", "memory", "uniform"],
                      "ISTA weights per channel: the paper's memory cost "
                      "divided by the input image's pixels ('paper', so the "
                      "paper's rho values apply), keras_slim's mean-1 "
                      "normalization ('memory') or 1.", flag_values=fv)
    flags.DEFINE_float("learning_rate", defaults["learning_rate"],
                       "Learning rate of base and sparse training.",
                       flag_values=fv)
    flags.DEFINE_float("finetune_learning_rate", 0.01,
                       "Learning rate of fine-tuning.", flag_values=fv)
    flags.DEFINE_float("weight_decay", 5e-4, "L2 weight decay on kernels.",
                       flag_values=fv)
    flags.DEFINE_integer("refine_epochs", None,
                         "Epochs of the ISTA training of models after the "
                         "first (default: --finetune_epochs, the paper's "
                         "equal step counts).", flag_values=fv)
    flags.DEFINE_integer("base_epochs", None, "Epochs of the dense base "
                         "network (default: --epochs; 0 = skip).",
                         flag_values=fv)


def penalty_weights(model, kind, layers=None):
    """`penalty` argument of `attach_ista` for the `--penalty` flag.

    "paper": the memory cost of Ye et al. divided by the pixels of the
    input image, so that the paper's rho values keep their meaning.
    """
    if kind != "paper":
        return kind
    layers = select_batchnorms(model, layers)
    pixels = float(np.prod(model.input_shape[1:3]))
    return {name: cost / pixels
            for name, cost in memory_costs(model, layers).items()}


def rho_schedule(flags_obj, index):
    """rho of the `index`-th model: a warm-up schedule for the first."""
    rhos = [float(r) for r in flags_obj.rho]
    if len(rhos) != len(flags_obj.models):
        raise ValueError(
            f"Expected one --rho per model in --models={flags_obj.models}. "
            f"Received: --rho={flags_obj.rho}"
        )
    if index == 0 and flags_obj.rho_warmup_steps > 0:
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [flags_obj.rho_warmup_steps], [flags_obj.rho_warmup, rhos[0]])
    return rhos[index]


def base_epochs_of(flags_obj):
    """Epochs of the base (and reference) network: --base_epochs, or
    --epochs when it is not given."""
    if flags_obj.base_epochs is None:
        return flags_obj.epochs
    return flags_obj.base_epochs


def run_rounds(run, make_model, extra_stages=None):
    """Run the stages of the recipe.

    Args:
        run: the `common.Run`.
        make_model: `make_model()` -> a fresh base network.
        extra_stages: optional `extra_stages(run)`, run after the base
            stage (the ConvNet's reference network).

    Returns:
        The summary dict.
    """
    flags_obj, stages = run.flags, run.stages
    if not flags_obj.models:
        raise ValueError("Expected at least one model in --models.")
    base_epochs = base_epochs_of(flags_obj)
    if base_epochs:
        stages.run("base", lambda d: common.train(
            run, "base", make_model(), d, base_epochs,
            flags_obj.learning_rate))
    if extra_stages is not None:
        extra_stages(run)
    refine_epochs = flags_obj.refine_epochs
    if refine_epochs is None:
        refine_epochs = flags_obj.finetune_epochs
    # Model a: from scratch (a new network), not from the trained base.
    model = make_model()
    for index, name in enumerate(flags_obj.models):
        stage = f"sparse-train-{name}"
        epochs = flags_obj.epochs if index == 0 else refine_epochs
        rho = rho_schedule(flags_obj, index)
        start = model
        sparse, _ = stages.run(stage, lambda d, stage=stage, epochs=epochs,
                               rho=rho, start=start: common.train(
            run, stage, start, d, epochs, flags_obj.learning_rate, rho=rho,
            penalty=penalty_weights(start, flags_obj.penalty)))
        slim, _ = stages.run(f"slim-{name}", lambda d, sparse=sparse:
                             common.slim(run, sparse, plan_zero_gamma))
        stage = f"fine-tune-{name}"
        model, record = stages.run(stage, lambda d, stage=stage, slim=slim:
                              common.train(run, stage, slim, d,
                                           flags_obj.finetune_epochs,
                                           flags_obj.finetune_learning_rate))
    stages.run("export", lambda d: common.export(run, model, d,
                                                 record["accuracy"]))
    return stages.summary
