"""Flags and settings of the Fashion-MNIST study
(`studies/fashion_mnist/study.py`): every flag's default is the full study;
`--quick` shrinks it to a smoke run."""

import keras
from absl import flags

__all__ = ["EXPERIMENTS", "QUICK", "define_flags", "config_from_flags"]

EXPERIMENTS = ("1_network_slimming", "2_ista", "3_rethinking",
               "4_architecture", "5_lottery_ticket", "6_budget")
QUICK = {"train_examples": 2000, "validation_examples": 500,
         "test_examples": 2000, "epochs": 1, "seeds": [0],
         "ista_seeds": [0], "lottery_seeds": [0], "ista_max_epochs": 1,
         "ista_paper_max_epochs": 2, "ista_warmup_epochs": 1}


def define_flags(flag_values=flags.FLAGS):
    fv = flag_values

    def string(name, default, help_):
        flags.DEFINE_string(name, default, help_, flag_values=fv)

    def integer(name, default, help_):
        flags.DEFINE_integer(name, default, help_, flag_values=fv)

    def number(name, default, help_):
        flags.DEFINE_float(name, default, help_, flag_values=fv)

    def listed(name, default, help_):
        flags.DEFINE_list(name, default, help_, flag_values=fv)

    string("model_dir", None, "Output folder (runs/ and results.json). Two "
           "processes may share it: start the same command twice to run two "
           "trainings at a time.")
    string("data_dir", None, "Folder with the four Fashion-MNIST IDX files "
           "(else Debian's package, the Keras cache).")
    flags.DEFINE_bool("quick", False, "Smoke run: " + ", ".join(
        f"{k}={v}" for k, v in QUICK.items()) + ".", flag_values=fv)
    integer("train_examples", 60000, "The first N training images; "
            "--validation_examples of them are held out.")
    integer("validation_examples", 5000, "Training images held out (a fixed "
            "permutation drawn with --split_seed) for every choice.")
    integer("split_seed", 2026, "Seed of the validation split.")
    integer("test_examples", 10000, "The first N test images are the test "
            "set (used only for the numbers reported).")
    listed("widths", ["16", "32", "32", "64"], "Convolution widths of the "
           "ConvNet.")
    integer("batch_size", 128, "Batch size.")
    number("learning_rate", 0.1, "Initial learning rate of training from "
           "scratch (divided by 10 at 50% and 75% of the epochs).")
    string("schedule", "step", "Learning-rate schedule of training from "
           "scratch: step (the papers'), cosine.")
    integer("epochs", 0, "Epochs of every training from scratch; 0: chosen "
            "on validation from --epoch_grid.")
    listed("epoch_grid", ["10", "20", "40"], "Candidate epochs: the first "
           "whose doubling gains less than --epoch_min_gain validation "
           "accuracy is taken.")
    number("epoch_min_gain", 0.003, "Validation accuracy a doubling of the "
           "epochs must gain to be worth it.")
    number("finetune_fraction", 0.25, "Fine-tuning epochs as a share of the "
           "training epochs, at the schedule's lowest rate (Rethinking).")
    listed("seeds", ["0", "1", "2"], "Seeds of experiments 1, 3 and 4; the "
           "first also makes the choices on validation.")
    number("slimming_s", 0.0, "Network Slimming's L1 weight s; 0: chosen on "
           "validation from --slimming_s_factors times the s whose total L1 "
           "pull matches the paper's (s=1e-4, 160 CIFAR epochs, batch 64).")
    listed("slimming_s_factors", ["0.333", "1", "3"], "The grid of s, as "
           "multiples of the matched s.")
    flags.DEFINE_bool("slimming_full_finetune", True, "Experiment 1 also "
                      "fine-tunes the paper's way (the full training "
                      "schedule from the inherited weights), with its own s "
                      "chosen on validation after that fine-tune.",
                      flag_values=fv)
    number("slimming_choice_ratio", 0.5, "s is chosen by the validation "
           "accuracy of the network pruned at this ratio and fine-tuned.")
    listed("ratios", ["0.3", "0.5", "0.7"], "Shares of channels pruned "
           "(experiments 1 and 4).")
    number("rethinking_ratio", 0.5, "Share of channels pruned in "
           "experiment 3.")
    number("scratch_b_cap", 0.0, "Scratch-B trains at most this many times "
           "the epochs; 0: no cap (the paper's CIFAR rule).")
    number("rho", 0.0, "ISTA's rho of model A; 0: Ye et al.'s rule (the "
           "lasso term equals the task loss at the start).")
    number("ista_alpha", 0.1, "Ye et al.'s gamma-W rescaling before ISTA "
           "(gammas times alpha, the next layers' weights over alpha; undone "
           "before fine-tuning), from the paper's {0.001, 0.01, 0.1, 1}: it "
           "multiplies the gammas' effective learning rate by 1 / alpha**2, "
           "and 0.01 diverged here at lr 0.01 (21% validation after one "
           "epoch); 1: none.")
    listed("rho_multiples", ["1", "2", "4"], "rho of models A, B, C as "
           "multiples of A's; each starts from the one before.")
    integer("ista_max_epochs", 0, "Most epochs of an ISTA stage (it stops at "
            "a plateau); 0: the training epochs.")
    integer("ista_patience", 2, "Epochs over which an ISTA plateau is "
            "judged.")
    number("ista_min_delta", 0.02, "Largest relative change that counts as "
           "a plateau.")
    number("ista_learning_rate", 0.01, "Constant learning rate of ISTA "
           "(the paper's CIFAR ConvNet).")
    string("ista_protocol", "paper", "Experiment 2: paper (Ye et al.'s "
           "CIFAR ConvNet: model A from scratch, rho by the rule at "
           "initialisation with a warm-up, a stage stops when no new channel "
           "reaches zero over ISTAGamma's default patience) or trained (A "
           "from the trained dense network, rescaled by --ista_alpha).")
    number("ista_paper_alpha", 1.0, "alpha of the paper protocol (1: Ye et "
           "al. rescale only pretrained starts).")
    integer("ista_paper_max_epochs", 60, "Most epochs of a stage of the "
            "paper protocol (the paper's warm-up alone is 30k steps, 70 "
            "epochs here).")
    integer("ista_warmup_epochs", 5, "Epochs of model A at "
            "--ista_warmup_factor x rho (paper protocol).")
    number("ista_warmup_factor", 0.2, "rho's share during the warm-up (the "
           "paper: 0.0002 then 0.001).")
    listed("ista_seeds", ["0"], "Seeds of experiment 2 (one, as in the "
           "paper).")
    number("lottery_sparsity", 0.8, "Share of convolution weights pruned by "
           "magnitude (experiment 5).")
    listed("lottery_learning_rates", ["0.1", "0.01"], "Initial learning "
           "rates of experiment 5.")
    listed("lottery_seeds", ["0", "1", "2", "3", "4"], "Seeds of "
           "experiment 5 (Rethinking's five).")
    number("budget_latency", 0.5, "Experiment 6's latency budget, a share "
           "of the dense network's measured LiteRT latency.")
    integer("budget_batch", 64, "Batch at which experiment 6 times models "
            "(batch 1 is too fast to resolve on this network).")
    integer("budget_runs", 50, "Timed invokes per model in experiment 6.")
    string("budget_start", "dense", "Experiment 6 prunes the dense network "
           "(dense: its gammas are not sparse, so the plans differ) or "
           "experiment 1's sparse-trained one (sparse).")
    integer("budget_repeats", 5, "Interleaved timing rounds of experiment "
            "6's final latencies (median and spread recorded).")
    listed("experiments", list(EXPERIMENTS), "Experiments to run, in order.")


def config_from_flags(flags_obj):
    """The study's settings as a plain dict (`--quick` applied)."""
    f = flags_obj
    c = {
        "train_examples": f.train_examples,
        "validation_examples": f.validation_examples,
        "split_seed": f.split_seed,
        "test_examples": f.test_examples,
        "widths": [int(w) for w in f.widths],
        "batch_size": f.batch_size,
        "learning_rate": f.learning_rate,
        "schedule": f.schedule,
        "epochs": f.epochs,
        "epoch_grid": [int(e) for e in f.epoch_grid],
        "epoch_min_gain": f.epoch_min_gain,
        "finetune_fraction": f.finetune_fraction,
        "seeds": [int(s) for s in f.seeds],
        "slimming_s": f.slimming_s,
        "slimming_s_factors": [float(x) for x in f.slimming_s_factors],
        "slimming_choice_ratio": f.slimming_choice_ratio,
        "ratios": [float(r) for r in f.ratios],
        "rethinking_ratio": f.rethinking_ratio,
        "scratch_b_cap": f.scratch_b_cap,
        "rho": f.rho,
        "ista_alpha": f.ista_alpha,
        "rho_multiples": [float(r) for r in f.rho_multiples],
        "ista_max_epochs": f.ista_max_epochs,
        "ista_patience": f.ista_patience,
        "ista_min_delta": f.ista_min_delta,
        "ista_learning_rate": f.ista_learning_rate,
        "ista_seeds": [int(s) for s in f.ista_seeds],
        "ista_protocol": f.ista_protocol,
        "ista_paper_alpha": f.ista_paper_alpha,
        "ista_paper_max_epochs": f.ista_paper_max_epochs,
        "ista_warmup_epochs": f.ista_warmup_epochs,
        "ista_warmup_factor": f.ista_warmup_factor,
        "lottery_sparsity": f.lottery_sparsity,
        "lottery_learning_rates": [float(r) for r in
                                   f.lottery_learning_rates],
        "lottery_seeds": [int(s) for s in f.lottery_seeds],
        "budget_latency": f.budget_latency,
        "budget_batch": f.budget_batch,
        "budget_runs": f.budget_runs,
        "budget_start": f.budget_start,
        "budget_repeats": f.budget_repeats,
        "slimming_full_finetune": f.slimming_full_finetune,
        "experiments": list(f.experiments),
        "quick": f.quick,
        "backend": keras.backend.backend(),
    }
    if f.quick:
        c.update(QUICK)
    unknown = set(c["experiments"]) - set(EXPERIMENTS)
    if unknown:
        raise ValueError(f"Expected `--experiments` among {EXPERIMENTS}. "
                         f"Received: {sorted(unknown)}")
    if c["validation_examples"] >= c["train_examples"]:
        raise ValueError("Expected `--validation_examples` below "
                         "`--train_examples`. Received: "
                         f"{c['validation_examples']} of "
                         f"{c['train_examples']}")
    if c["ista_protocol"] not in ("paper", "trained"):
        raise ValueError("Expected `--ista_protocol` in ('paper', 'trained')."
                         f" Received: {c['ista_protocol']!r}")
    if c["budget_start"] not in ("dense", "sparse"):
        raise ValueError("Expected `--budget_start` in ('dense', 'sparse'). "
                         f"Received: {c['budget_start']!r}")
    if c["schedule"] not in ("step", "cosine"):
        raise ValueError("Expected `--schedule` in ('step', 'cosine'). "
                         f"Received: {c['schedule']!r}")
    return c
