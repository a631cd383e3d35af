"""Flags and settings of the Fashion-MNIST study
(`recipes/fashion_mnist_study.py`): every flag's default is the full study;
`--quick` shrinks it to a smoke run."""

import keras
from absl import flags

__all__ = ["EXPERIMENTS", "QUICK", "define_flags", "config_from_flags"]

EXPERIMENTS = ("1_network_slimming", "2_ista", "3_rethinking",
               "4_architecture", "5_lottery_ticket")
QUICK = {"train_examples": 2000, "test_examples": 2000, "epochs": 1,
         "finetune_epochs": 1, "ista_epochs": 1, "seeds": [0],
         "ista_seeds": [0], "lottery_seeds": [0]}


def define_flags(flag_values=flags.FLAGS):
    fv = flag_values
    flags.DEFINE_string("model_dir", None, "Output folder (runs/ and "
                        "results.json).", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "Folder with the four Fashion-MNIST "
                        "IDX files (else Debian's package, the Keras cache).",
                        flag_values=fv)
    flags.DEFINE_bool("quick", False, "Smoke run: " + ", ".join(
        f"{k}={v}" for k, v in QUICK.items()) + ".", flag_values=fv)
    flags.DEFINE_integer("train_examples", 10000, "The first N training "
                         "images are the training set.", flag_values=fv)
    flags.DEFINE_integer("test_examples", 10000, "The first N test images "
                         "are the test set.", flag_values=fv)
    flags.DEFINE_list("widths", ["16", "32", "32", "64"], "Convolution "
                      "widths of the ConvNet.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 128, "Batch size.", flag_values=fv)
    flags.DEFINE_integer("epochs", 5, "Epochs of every training from "
                         "scratch (dense, sparse, Scratch-E).", flag_values=fv)
    flags.DEFINE_float("learning_rate", 0.1, "Initial learning rate "
                       "(cosine decay) of training from scratch.",
                       flag_values=fv)
    flags.DEFINE_integer("finetune_epochs", 3, "Fine-tuning epochs.",
                         flag_values=fv)
    flags.DEFINE_float("finetune_learning_rate", 0.01, "Initial learning "
                       "rate (cosine decay) of fine-tuning.", flag_values=fv)
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of experiments 1, 3 "
                      "and 4.", flag_values=fv)
    flags.DEFINE_float("slimming_s", 0.03, "Network Slimming's L1 weight s "
                       "on gammas.", flag_values=fv)
    flags.DEFINE_list("ratios", ["0.3", "0.5", "0.7"], "Shares of channels "
                      "pruned (experiments 1 and 4).", flag_values=fv)
    flags.DEFINE_float("rethinking_ratio", 0.5, "Share of channels pruned in "
                       "experiment 3.", flag_values=fv)
    flags.DEFINE_float("scratch_b_cap", 2.0, "Scratch-B trains at most this "
                       "many times --epochs.", flag_values=fv)
    flags.DEFINE_list("rho", ["0.5", "1", "2"], "ISTA rho of models A, B, C.",
                      flag_values=fv)
    flags.DEFINE_integer("ista_epochs", 4, "ISTA epochs.", flag_values=fv)
    flags.DEFINE_float("ista_learning_rate", 0.01, "Constant learning rate "
                       "of the ISTA stage.", flag_values=fv)
    flags.DEFINE_list("ista_seeds", ["0"], "Seeds of experiment 2.",
                      flag_values=fv)
    flags.DEFINE_float("lottery_sparsity", 0.8, "Share of convolution "
                       "weights pruned by magnitude (experiment 5).",
                       flag_values=fv)
    flags.DEFINE_list("lottery_learning_rates", ["0.1", "0.01"], "Initial "
                      "learning rates of experiment 5.", flag_values=fv)
    flags.DEFINE_list("lottery_seeds", ["0", "1"], "Seeds of experiment 5.",
                      flag_values=fv)
    flags.DEFINE_list("experiments", list(EXPERIMENTS), "Experiments to run.",
                      flag_values=fv)


def config_from_flags(flags_obj):
    """The study's settings as a plain dict (`--quick` applied)."""
    c = {
        "train_examples": flags_obj.train_examples,
        "test_examples": flags_obj.test_examples,
        "widths": [int(w) for w in flags_obj.widths],
        "batch_size": flags_obj.batch_size,
        "epochs": flags_obj.epochs,
        "learning_rate": flags_obj.learning_rate,
        "finetune_epochs": flags_obj.finetune_epochs,
        "finetune_learning_rate": flags_obj.finetune_learning_rate,
        "seeds": [int(s) for s in flags_obj.seeds],
        "slimming_s": flags_obj.slimming_s,
        "ratios": [float(r) for r in flags_obj.ratios],
        "rethinking_ratio": flags_obj.rethinking_ratio,
        "scratch_b_cap": flags_obj.scratch_b_cap,
        "rho": [float(r) for r in flags_obj.rho],
        "ista_epochs": flags_obj.ista_epochs,
        "ista_learning_rate": flags_obj.ista_learning_rate,
        "ista_seeds": [int(s) for s in flags_obj.ista_seeds],
        "lottery_sparsity": flags_obj.lottery_sparsity,
        "lottery_learning_rates": [float(r) for r in
                                   flags_obj.lottery_learning_rates],
        "lottery_seeds": [int(s) for s in flags_obj.lottery_seeds],
        "experiments": list(flags_obj.experiments),
        "quick": flags_obj.quick,
        "backend": keras.backend.backend(),
    }
    if flags_obj.quick:
        c.update(QUICK)
    unknown = set(c["experiments"]) - set(EXPERIMENTS)
    if unknown:
        raise ValueError(f"Expected `--experiments` among {EXPERIMENTS}. "
                         f"Received: {sorted(unknown)}")
    return c
