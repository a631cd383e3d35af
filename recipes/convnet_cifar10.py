r"""Ye et al. (ICLR 2018), Table 1: the 4-layer BN ConvNet on CIFAR-10.

Stages (folders of --model_dir): base (96-192-192-384 without ISTA),
reference (32-64-64-128 from scratch), sparse-train-a, slim-a, fine-tune-a,
then b and c the same way, export.

Paper: a fixed learning rate of 0.01, alpha 1 (no rescaling), batch 125;
model A from scratch with rho 0.0002 for 30k steps then 0.001, model B from
A with rho 0.002, model C from B (the text gives no rho for C; 0.004 here is
our choice); the reference has 224,008 parameters and an accuracy of 86.3%.

    python recipes/convnet_cifar10.py --data_dir=~/tensorflow_datasets \
        --model_dir=/tmp/convnet --strategy=mirrored
"""

if not __package__:  # run as a file: import from the repository root
    import _bootstrap  # noqa: F401

from absl import app, flags

from recipes import common, inputs, ista_rounds, models

NAME = "convnet_cifar10"


def define_flags(flag_values=flags.FLAGS):
    common.define_flags(
        {"dataset": "cifar10", "datasets": ["cifar10"],
         "model_dir": f"/tmp/keras_slim/{NAME}", "epochs": 200,
         "finetune_epochs": 125, "batch_size": 125}, flag_values)
    ista_rounds.define_flags(
        {"models": ["a", "b", "c"], "rho": ["0.001", "0.002", "0.004"],
         "rho_warmup": 0.0002, "learning_rate": 0.01}, flag_values)
    flags.DEFINE_list("widths", [str(w) for w in models.CONVNET_BASE],
                      "Widths of conv1, conv2, conv3, fc1 of the base "
                      "network.", flag_values=flag_values)
    flags.DEFINE_list("reference_widths",
                      [str(w) for w in models.CONVNET_REFERENCE],
                      "Widths of the reference network trained from scratch "
                      "(empty = skip).", flag_values=flag_values)


def run(flags_obj, datasets_override=None, strategy_override=None,
        hooks=None):
    """Run every stage not done yet; returns the summary dict."""
    info = inputs.DATASETS["cifar10"]
    run_ = common.setup(
        flags_obj, info,
        preprocess=lambda training: inputs.cifar_preprocess(
            "cifar10", training, style="ye"),
        datasets_override=datasets_override,
        strategy_override=strategy_override, hooks=hooks)

    def make_model(widths=flags_obj.widths, name="convnet"):
        return models.convnet([int(w) for w in widths], classes=run_.classes,
                              input_shape=run_.image_shape,
                              weight_decay=flags_obj.weight_decay, name=name)

    def reference(run_):
        epochs = ista_rounds.base_epochs_of(flags_obj)
        if not flags_obj.reference_widths or not epochs:
            return
        run_.stages.run("reference", lambda d: common.train(
            run_, "reference",
            make_model(flags_obj.reference_widths, "convnet_reference"), d,
            epochs, flags_obj.learning_rate))

    return ista_rounds.run_rounds(run_, make_model, extra_stages=reference)


def main(_):
    common.run_main(run, flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    app.run(main)
