r"""Ye et al. (ICLR 2018), Table 2: ResNet-20 on CIFAR-10 pruned with ISTA.

Stages (folders of --model_dir): base, sparse-train-a, slim-a, fine-tune-a,
sparse-train-b, slim-b, fine-tune-b, export. Only the first convolution of
each residual block has a gamma, so only the channels inside the residual
modules are pruned, as in the paper.

Paper: base 92.0% (281,304 parameters), model A 90.9% (176,596), model B
88.8% (90,504). Defaults follow the paper and its reference code: batch
125, plain SGD at lr 0.1 (fine-tuning 0.01), weight decay 5e-4, model A with
rho 0.001 for 30k steps then 0.005 (80k steps in all), model B from A with
rho 0.01 (50k steps), fine-tuning 50k steps.

    python recipes/resnet20_cifar10.py --data_dir=~/tensorflow_datasets \
        --model_dir=/tmp/resnet20 --strategy=mirrored
"""

if not __package__:  # run as a file: import from the repository root
    import _bootstrap  # noqa: F401

from absl import app, flags

from recipes import common, inputs, ista_rounds, models

NAME = "resnet20_cifar10"


def define_flags(flag_values=flags.FLAGS):
    common.define_flags(
        {"dataset": "cifar10", "datasets": ["cifar10"],
         "model_dir": f"/tmp/keras_slim/{NAME}", "epochs": 200,
         "finetune_epochs": 125, "batch_size": 125}, flag_values)
    ista_rounds.define_flags(
        {"models": ["a", "b"], "rho": ["0.005", "0.01"], "rho_warmup": 0.001,
         "learning_rate": 0.1},
        flag_values)


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

    def make_model():
        return models.resnet20(classes=run_.classes,
                               input_shape=run_.image_shape,
                               weight_decay=flags_obj.weight_decay)

    return ista_rounds.run_rounds(run_, make_model)


def main(_):
    common.run_main(run, flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    app.run(main)
