r"""Ye et al. (ICLR 2018), Table 3: ISTA on a pretrained ResNet-101, ImageNet.

Stages (folders of --model_dir): pretrained (the starting network's
accuracy), sparse-train (gammas of the bottleneck blocks rescaled by alpha,
then ISTA), slim (channels with zero gamma removed, constants folded, the
rescaling undone), fine-tune, export.

Paper: the pretrained TensorFlow ResNet-101 (44.7M parameters, 23.6% top-1
error) with alpha = 0.01, lr 0.001 decayed by 0.86 every 4 epochs, rho 0.1,
global batch 128 (over 4 GPUs) gives pruned models of 23.6M and 17.3M
parameters (from two points of the same run) whose top-5 error is less than
0.5% higher after fine-tuning; "about 5-10 epochs to complete the pruning
and a few more epochs to fine-tune".

Weights: --weights=imagenet reads the keras.applications file already in
the Keras cache (`~/.keras/models/resnet101_weights_tf_dim_ordering_tf_kernels.h5`,
never downloaded here), --weights=/path/file.h5 reads a file, --weights=none
starts from random weights.

    python recipes/resnet101_imagenet.py --data_dir=gs://bucket/tfds \
        --model_dir=gs://bucket/resnet101 --strategy=multi_worker_mirrored
"""

if not __package__:  # run as a file: import from the repository root
    import _bootstrap  # noqa: F401

import os

import keras
from absl import app, flags

from keras_slim.planners.criteria import plan_zero_gamma
from keras_slim.sparsity.rescaling import rescale_gammas
from recipes import common, inputs, ista_rounds, models

NAME = "resnet101_imagenet"
WEIGHTS_FILE = "resnet101_weights_tf_dim_ordering_tf_kernels.h5"


def define_flags(flag_values=flags.FLAGS):
    fv = flag_values
    common.define_flags(
        {"dataset": "imagenet2012", "datasets": ["imagenet2012"],
         "model_dir": f"/tmp/keras_slim/{NAME}", "epochs": 10,
         "finetune_epochs": 10, "batch_size": 128}, fv)
    flags.DEFINE_string("weights", "imagenet", "'imagenet' (the Keras "
                        "cache's file), a weights file, or 'none'.",
                        flag_values=fv)
    flags.DEFINE_integer("image_size", 224, "Input image side.",
                         flag_values=fv)
    flags.DEFINE_list("resnet_blocks", ["3", "4", "23", "3"], "Bottleneck "
                      "blocks per stage (ResNet-101 by default; smaller for "
                      "smoke tests).", flag_values=fv)
    flags.DEFINE_integer("resnet_width", 64, "Bottleneck width of the first "
                         "stage.", flag_values=fv)
    flags.DEFINE_float("alpha", 0.01, "gamma-W rescaling factor.",
                       flag_values=fv)
    flags.DEFINE_float("rho", 0.1, "ISTA strength.", flag_values=fv)
    flags.DEFINE_enum("penalty", "paper", ["paper", "memory", "uniform"],
                      "ISTA weights per channel (see the CIFAR recipes).",
                      flag_values=fv)
    flags.DEFINE_float("learning_rate", 0.001, "Learning rate of sparse "
                       "training.", flag_values=fv)
    flags.DEFINE_float("lr_decay", 0.86, "Learning-rate decay factor.",
                       flag_values=fv)
    flags.DEFINE_integer("lr_decay_epochs", 4, "Epochs between decays.",
                         flag_values=fv)
    flags.DEFINE_float("momentum", 0.0, "SGD momentum of sparse training "
                       "(plain SGD as in the reference code).", flag_values=fv)
    flags.DEFINE_float("finetune_learning_rate", 0.01, "Initial learning "
                       "rate of fine-tuning (divided by 10 at 50% and 75%).",
                       flag_values=fv)
    flags.DEFINE_float("weight_decay", 1e-4, "L2 weight decay on kernels "
                       "while fine-tuning. Sparse training has none: after "
                       "the rescaling the kernels reading the rescaled "
                       "channels are 1 / alpha times larger, and an L2 "
                       "penalty on them 1 / alpha**2 times stronger.",
                       flag_values=fv)


def weights_path(weights):
    """The weights file for --weights, or `None` for random weights."""
    if weights in ("none", "", None):
        return None
    if weights == "imagenet":
        home = os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras"))
        path = os.path.join(home, "models", WEIGHTS_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"--weights=imagenet needs {path}, the keras.applications "
                "ResNet101 weights, which this recipe never downloads: run "
                "`keras.applications.ResNet101(weights='imagenet')` once on "
                "a machine with internet access, or pass --weights=FILE."
            )
        return path
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"--weights={weights!r}: no such file.")
    return weights


def build(flags_obj, classes, image_shape):
    """The starting network, weights loaded when asked."""
    path = weights_path(flags_obj.weights)
    model = models.resnet_v1(
        blocks=[int(b) for b in flags_obj.resnet_blocks],
        width=flags_obj.resnet_width, classes=classes,
        input_shape=image_shape)
    if path is not None:
        model.load_weights(path)
    return model


def run(flags_obj, datasets_override=None, strategy_override=None,
        hooks=None):
    """Run every stage not done yet; returns the summary dict."""
    info = inputs.DATASETS["imagenet2012"]
    run_ = common.setup(
        flags_obj, info, image_size=flags_obj.image_size,
        preprocess=lambda training: inputs.imagenet_preprocess(
            flags_obj.image_size, training),
        datasets_override=datasets_override,
        strategy_override=strategy_override, hooks=hooks)
    stages = run_.stages
    base = build(flags_obj, run_.classes, run_.image_shape)
    layers = models.bottleneck_batchnorms(base)
    alpha = flags_obj.alpha

    stages.run("pretrained", lambda d: (None, {
        **common.describe(base), "accuracy": common.evaluate(run_, base)}))

    def sparse_train(directory):
        start = rescale_gammas(base, alpha, layers=layers)
        schedule = keras.optimizers.schedules.ExponentialDecay(
            flags_obj.learning_rate,
            flags_obj.lr_decay_epochs * run_.steps_per_epoch,
            flags_obj.lr_decay, staircase=True)
        return common.train(
            run_, "sparse-train", start, directory, flags_obj.epochs,
            schedule, momentum=flags_obj.momentum, rho=flags_obj.rho,
            ista_layers=layers,
            penalty=ista_rounds.penalty_weights(start, flags_obj.penalty,
                                                layers))

    sparse, _ = stages.run("sparse-train", sparse_train)

    def undo_rescaling(slim):
        kept = [name for name in layers
                if name in {layer.name for layer in slim.layers}]
        return rescale_gammas(slim, 1.0 / alpha, layers=kept)

    slim, _ = stages.run("slim", lambda d: common.slim(
        run_, sparse, plan_zero_gamma, after=undo_rescaling))
    tuned, record = stages.run("fine-tune", lambda d: common.train(
        run_, "fine-tune",
        common.set_weight_decay(slim, flags_obj.weight_decay), d,
        flags_obj.finetune_epochs,
        common.step_decay(run_, flags_obj.finetune_learning_rate,
                          flags_obj.finetune_epochs), momentum=0.9))
    stages.run("export", lambda d: common.export(run_, tuned, d,
                                                 record["accuracy"]))
    return stages.summary


def main(_):
    common.run_main(run, flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    app.run(main)
