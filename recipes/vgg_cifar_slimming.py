r"""Network Slimming (Liu et al., ICCV 2017) on VGG-19, CIFAR-10 or CIFAR-100,
with the Scratch-E / Scratch-B comparison of "Rethinking the Value of
Network Pruning" (Liu et al., ICLR 2019).

Stages (folders of --model_dir): baseline (optional, no sparsity),
sparse-train (L1 on every gamma, s = 1e-4), slim (70% of the channels with
the smallest |gamma| network-wide), fine-tune, scratch-e / scratch-b (with
--scratch=E,B: the slim architecture from random initialization for the
same epochs, or for the same computation), export.

Defaults are the papers': SGD with momentum 0.9, lr 0.1 divided by 10 at
50% and 75% of training, batch 64, weight decay 1e-4, 160 epochs for every
training stage.

    python recipes/vgg_cifar_slimming.py --dataset=cifar10 \
        --data_dir=~/tensorflow_datasets --model_dir=/tmp/vgg19 --scratch=E,B
"""

if not __package__:  # run as a file: import from the repository root
    import _bootstrap  # noqa: F401

from absl import app, flags

from keras_slim.planners.selection import plan_global_gamma
from keras_slim.protocols.rethinking import reinitialize, scratch_budget
from keras_slim.sparsity.regularizers import GammaL1, add_gamma_regularizer
from recipes import common, inputs, models

NAME = "vgg_cifar_slimming"


def define_flags(flag_values=flags.FLAGS):
    fv = flag_values
    common.define_flags(
        {"dataset": "cifar10", "datasets": ["cifar10", "cifar100"],
         "model_dir": f"/tmp/keras_slim/{NAME}", "epochs": 160,
         "finetune_epochs": 160, "batch_size": 64}, fv)
    flags.DEFINE_enum("real_dataset", None, ["cifar10", "cifar100"],
                      "Shape and classes of --dataset=synthetic (default "
                      "cifar10).", flag_values=fv)
    flags.DEFINE_integer("depth", 19, "VGG depth (11, 13, 16, 19).",
                         flag_values=fv)
    flags.DEFINE_float("sparsity", 1e-4, "s, the L1 penalty on gammas.",
                       flag_values=fv)
    flags.DEFINE_float("ratio", 0.7, "Share of the channels pruned "
                       "network-wide.", flag_values=fv)
    flags.DEFINE_float("learning_rate", 0.1, "Initial learning rate.",
                       flag_values=fv)
    flags.DEFINE_float("momentum", 0.9, "SGD momentum.", flag_values=fv)
    flags.DEFINE_float("weight_decay", 1e-4, "Weight decay on kernels.",
                       flag_values=fv)
    flags.DEFINE_list("scratch", [], "Train the slim architecture from "
                      "scratch: E (same epochs), B (same computation).",
                      flag_values=fv)
    flags.DEFINE_bool("baseline", False, "Also train the unpruned network "
                      "without sparsity.", flag_values=fv)


def run(flags_obj, datasets_override=None, strategy_override=None,
        hooks=None):
    """Run every stage not done yet; returns the summary dict."""
    unknown = set(flags_obj.scratch) - {"E", "B"}
    if unknown:
        raise ValueError(
            f"Expected --scratch to list E and/or B. Received: {flags_obj.scratch}"
        )
    name = flags_obj.dataset
    if name == "synthetic":
        name = flags_obj.real_dataset or "cifar10"
    info = inputs.DATASETS[name]
    run_ = common.setup(
        flags_obj, info,
        preprocess=lambda training: inputs.cifar_preprocess(name, training),
        datasets_override=datasets_override,
        strategy_override=strategy_override, hooks=hooks)
    stages = run_.stages

    def make_model():
        return models.vgg(flags_obj.depth, classes=run_.classes,
                          input_shape=run_.image_shape,
                          weight_decay=flags_obj.weight_decay)

    def fit(stage, model, epochs):
        schedule = common.step_decay(run_, flags_obj.learning_rate, epochs)
        return lambda d: common.train(run_, stage, model, d, epochs, schedule,
                                      momentum=flags_obj.momentum)

    if flags_obj.baseline:
        stages.run("baseline", fit("baseline", make_model(), flags_obj.epochs))
    sparse_start = add_gamma_regularizer(make_model(),
                                         GammaL1(flags_obj.sparsity))
    sparse, _ = stages.run("sparse-train", fit("sparse-train", sparse_start,
                                               flags_obj.epochs))
    slim, _ = stages.run("slim", lambda d: common.slim(
        run_, sparse, lambda m: plan_global_gamma(m, flags_obj.ratio)))
    tuned, record = stages.run("fine-tune", fit("fine-tune", slim,
                                           flags_obj.finetune_epochs))
    if "E" in flags_obj.scratch:
        stages.run("scratch-e", fit("scratch-e",
                                    reinitialize(slim, flags_obj.seed),
                                    flags_obj.epochs))
    if "B" in flags_obj.scratch:
        epochs = scratch_budget(sparse, slim, flags_obj.epochs)
        stages.run("scratch-b", fit("scratch-b",
                                    reinitialize(slim, flags_obj.seed),
                                    epochs))
    stages.run("export", lambda d: common.export(run_, tuned, d,
                                                    record["accuracy"]))
    return stages.summary


def main(_):
    common.run_main(run, flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    app.run(main)
