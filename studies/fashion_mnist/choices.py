"""The study's choices on the validation split, each by a paper's rule.

- Epochs: the dense network is trained for each of `--epoch_grid` (seed
  of the first `--seeds`); the first number of epochs whose doubling
  gains less than `--epoch_min_gain` validation accuracy is taken.
- Network Slimming's `s`: the paper's total L1 pull is `s * sum_t lr_t`
  (the subgradient `s * sign(gamma)` at every step), 1e-4 * 6,600 for VGG
  on CIFAR (160 epochs of 782 steps at 0.1, 0.01, 0.001). The `s` with the
  same pull over this study's schedule is scaled by `--slimming_s_factors`;
  the one whose network, pruned at `--slimming_choice_ratio` and
  fine-tuned, has the best validation accuracy is taken.
- ISTA's `rho` (Ye et al.): model A's makes the lasso term
  `rho * sum_l lambda_l |gamma_l|` equal to the task loss at the start;
  B and C multiply it by `--rho_multiples`. The stages follow one another
  (B starts from A's slim network, C from B's), and each stops when the
  loss, the lasso term and the share of zero gammas plateau on
  consecutive epochs (`ISTAGamma(stop_when_converged=True)`).

Each choice is a dict: `value`, `rule` (one sentence), `candidates` (with
their validation accuracy), and the runs it rests on.
"""

import functools
import inspect
import math

import keras

import keras_slim
from studies.fashion_mnist import runs as lib

# Network Slimming's VGG run on CIFAR-10: s = 1e-4, 160 epochs of
# ceil(50000 / 64) = 782 steps, the learning rate 0.1, then 0.01 at 50%
# and 0.001 at 75% of the epochs.
PAPER_S = 1e-4
PAPER_PULL = PAPER_S * lib.summed_learning_rate(0.1, 160 * 782, "step")


def choose_epochs(study):
    c = study.c
    seed = c["seeds"][0]
    if c["epochs"]:
        return {"value": c["epochs"], "rule": "given by --epochs"}
    grid, gain = sorted(c["epoch_grid"]), c["epoch_min_gain"]
    tried = {}

    def validation(epochs):
        if epochs not in tried:
            job = study.dense_job(seed, epochs=epochs)
            tried[epochs] = study.runs.record(*job)["val_accuracy"]
        return tried[epochs]

    chosen = grid[-1]
    for i in range(len(grid) - 1):
        # the pair trains at once when two study processes share the folder
        study.runs.run_all([study.dense_job(seed, epochs=e)
                            for e in grid[i:i + 2]])
        if validation(grid[i + 1]) - validation(grid[i]) < gain:
            chosen = grid[i]
            break
    if len(grid) == 1:
        validation(grid[0])
    return {
        "value": chosen,
        "rule": f"the first of {grid} whose doubling gains less than "
                f"{gain:.1%} validation accuracy (dense network, seed {seed})",
        "candidates": [{"epochs": e, "val_accuracy": v}
                       for e, v in sorted(tried.items())],
    }


def matched_s(study):
    """The `s` whose total L1 pull over this study's schedule equals the
    paper's."""
    c = study.c
    steps = study.epochs * math.ceil(len(study.train[0]) / c["batch_size"])
    return PAPER_PULL / lib.summed_learning_rate(c["learning_rate"], steps,
                                                 c["schedule"]
                                                 if c["schedule"] == "step"
                                                 else "constant")


def choose_slimming_s(study):
    c = study.c
    seed, ratio = c["seeds"][0], c["slimming_choice_ratio"]
    if c["slimming_s"]:
        return {"value": c["slimming_s"], "rule": "given by --slimming_s"}
    base = matched_s(study)
    grid = [float(f"{base * f:.3g}") for f in c["slimming_s_factors"]]
    study.runs.run_all([study.sparse_job(seed, s) for s in grid])
    study.runs.run_all([study.slimmed_job(seed, ratio, s) for s in grid])
    candidates = []
    for s in grid:
        sparse = study.runs.record(*study.sparse_job(seed, s))
        tuned = study.runs.record(*study.slimmed_job(seed, ratio, s))
        candidates.append({"s": s, "sparse_val_accuracy": sparse["val_accuracy"],
                           "pruned_val_accuracy": tuned["pruned_val_accuracy"],
                           "val_accuracy": tuned["val_accuracy"]})
    best = max(candidates, key=lambda e: e["val_accuracy"])
    return {
        "value": best["s"],
        "matched_s": base,
        "rule": f"grid {c['slimming_s_factors']} x the s matching the "
                f"paper's total L1 pull ({PAPER_PULL:.3g}); best validation "
                f"accuracy pruned at {ratio:.0%} and fine-tuned (seed {seed})",
        "candidates": candidates,
    }


def choose_paper_s(study, extensions=3):
    """Network Slimming's `s` by the validation accuracy after the paper's
    fine-tune (full schedule, inherited weights): the grid of
    `choose_slimming_s`, extended by a factor 3 beyond whichever end wins,
    until the choice is interior (at most `extensions` times)."""
    c = study.c
    seed, ratio = c["seeds"][0], c["slimming_choice_ratio"]
    if c["slimming_s"]:
        return {"value": c["slimming_s"], "rule": "given by --slimming_s"}
    grid = [float(f"{matched_s(study) * f:.3g}")
            for f in sorted(c["slimming_s_factors"])]
    scores = {}
    for _ in range(extensions + 1):
        todo = [s for s in grid if s not in scores]
        study.runs.run_all([study.sparse_job(seed, s) for s in todo])
        study.runs.run_all([study.paper_slimmed_job(seed, ratio, s)
                            for s in todo])
        for s in todo:
            scores[s] = study.runs.record(
                *study.paper_slimmed_job(seed, ratio, s))["val_accuracy"]
        best = max(grid, key=scores.__getitem__)
        if best == grid[0]:
            grid.insert(0, float(f"{grid[0] / 3:.3g}"))
        elif best == grid[-1]:
            grid.append(float(f"{grid[-1] * 3:.3g}"))
        else:
            break
    best = max(scores, key=scores.__getitem__)
    ordered = sorted(scores)
    return {
        "value": best,
        "interior": ordered[0] < best < ordered[-1],
        "rule": f"the grid {c['slimming_s_factors']} x the matched s, "
                "extended by 3x beyond the winning end until it is "
                "interior; best validation accuracy pruned at "
                f"{ratio:.0%} and fine-tuned with the full schedule "
                f"(seed {seed})",
        "candidates": [{"s": s, "val_accuracy": scores[s]} for s in ordered],
    }


def lasso_term(model):
    """`sum_l lambda_l * |gamma_l|` with Ye et al.'s memory-cost weights
    (what `ISTAGamma` logs as `gamma_l1`)."""
    batchnorms = [layer for layer in model.layers
                  if isinstance(layer, keras.layers.BatchNormalization)]
    weights = keras_slim.penalty_weights(model, batchnorms)
    return float(sum(
        (weights[b.name]
         * abs(keras.ops.convert_to_numpy(b.gamma)).ravel()).sum()
        for b in batchnorms))


def _unscaled(study, name, alpha):
    """Run `name`'s model scaled back by `1 / alpha` (the same function; a
    zero gamma stays zero, so the same channels are cut)."""
    model = study.runs.run(name, None, keep_model=True)[1]
    return keras_slim.rescale_gammas(model, 1 / alpha) if alpha != 1 else model


def _slim_of(study, name):
    """Run `name`'s model with its zero-gamma channels cut."""
    model = study.runs.run(name, None, keep_model=True)[1]
    return keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model))


# ISTAGamma's default patience: the epochs without a new zero channel
# after which a stage of the paper's protocol stops.
NEW_ZERO_PATIENCE = inspect.signature(
    keras_slim.ISTAGamma).parameters["patience"].default


class NewZeroChannels(keras.callbacks.Callback):
    """Stops training once no new BatchNormalization gamma has reached
    exactly zero over `patience` epochs, counted after `after` epochs (the
    warm-up). `stopped_reason` says when."""

    def __init__(self, patience, after=0):
        super().__init__()
        self.patience, self.after = patience, after
        self.counts, self.stopped_reason = [], None

    def on_epoch_end(self, epoch, logs=None):
        self.counts.append(sum(
            int((keras.ops.convert_to_numpy(layer.gamma) == 0).sum())
            for layer in self.model.layers
            if isinstance(layer, keras.layers.BatchNormalization)))
        if (epoch + 1 >= self.after + self.patience
                and len(self.counts) > self.patience
                and self.counts[-1] == self.counts[-1 - self.patience]):
            self.stopped_reason = (f"no new zero channel over {self.patience} "
                                   f"epochs ({self.counts[-1]} zero)")
            self.model.stop_training = True


def _ista_callbacks(study, rho, paper, first):
    """The callbacks of one ISTA stage: the ISTAGamma first; the last one
    has `stopped_reason` (the ISTAGamma or the paper protocol's stopper)."""
    c = study.c
    if not paper:
        return [keras_slim.ISTAGamma(rho, stop_when_converged=True,
                                     patience=c["ista_patience"],
                                     min_delta=c["ista_min_delta"])]
    warm = c["ista_warmup_epochs"] if first else 0
    value = rho
    if warm:
        steps = warm * math.ceil(len(study.train[0]) / c["batch_size"])
        value = keras.optimizers.schedules.PiecewiseConstantDecay(
            [steps], [rho * c["ista_warmup_factor"], rho])
    return [keras_slim.ISTAGamma(value),
            NewZeroChannels(NEW_ZERO_PATIENCE, after=warm)]


def ista_chain(study, seed):
    """Models A, B, C in sequence; the rows of experiment 2."""
    c = study.c
    base = study.dense(seed)
    rows = [dict(base[0], label="base")]
    # "paper": Ye et al.'s CIFAR ConvNet protocol, model A from scratch
    # (alpha = 1: the paper rescales only pretrained starts), rho by the
    # rule at initialisation, warmed up. "trained": A from the trained
    # dense network, rescaled by alpha < 1 so that a small rho moves the
    # gammas. The stages train and prune in the rescaled form, and each
    # slim net is scaled back (the same function) to fine-tune.
    paper = c["ista_protocol"] == "paper"
    alpha = c["ista_paper_alpha"] if paper else c["ista_alpha"]
    source = study.initial(seed) if paper else base[1]
    scaled = (keras_slim.rescale_gammas(source, alpha) if alpha != 1
              else source)
    loss = lib.mean_cross_entropy(scaled, study.train)
    lasso = lasso_term(scaled)
    rho_a = c["rho"] or float(f"{loss / lasso:.3g}")
    study.choices["rho"] = {
        "value": rho_a,
        "rule": ("given by --rho" if c["rho"] else
                 "Ye et al.: rho * lasso term = task loss at the start "
                 f"(cross-entropy {loss:.4f}, lasso term {lasso:.2f}"
                 + (" at initialisation" if paper else " after training")
                 + (f", gammas rescaled by alpha = {alpha:g}" if alpha != 1
                    else "") + ")"),
        "alpha": alpha,
        "multiples": c["rho_multiples"],
        "protocol": c["ista_protocol"],
    }
    if paper:
        study.choices["rho"]["warm_up"] = (
            f"model A at {c['ista_warmup_factor']:g} x rho for "
            f"{c['ista_warmup_epochs']} epochs (the paper: 0.0002 then "
            "0.001); every stage stops once no new channel reaches zero "
            f"over {NEW_ZERO_PATIENCE} epochs (ISTAGamma's default patience)")
    max_epochs = ((c["ista_paper_max_epochs"] if paper else c["ista_max_epochs"])
                  or study.epochs)
    tag = ("-paper" if paper else "") + (f"-a{alpha:g}" if alpha != 1 else "")
    start_name, start = None, (lambda: scaled)
    stops = []
    for letter, multiple in zip("ABC", c["rho_multiples"]):
        rho = float(f"{rho_a * multiple:.3g}")
        name = f"ista-{letter}{tag}-rho{rho:g}-e{study.epochs}-s{seed}"

        def train(rho=rho, start=start, name=name, letter=letter):
            source = start()
            model = keras.models.clone_model(source)
            model.set_weights(source.get_weights())
            callbacks = _ista_callbacks(study, rho, paper, letter == "A")
            history = study._fit(model, name, max_epochs,
                                 c["ista_learning_rate"], seed,
                                 schedule="constant", callbacks=callbacks)
            ista = callbacks[-1]
            h = history.history
            return study._record(
                model, seed, history, rho=rho,
                gamma_zero_fraction=float(h["gamma_zero_fraction"][-1]),
                gamma_l1_curve=[float(v) for v in h["gamma_l1"]],
                zero_fraction_curve=[float(v) for v in
                                     h["gamma_zero_fraction"]],
                epochs=len(h["loss"]), max_epochs=max_epochs,
                stopped=ista.stopped_reason, started_from=start_name,
                alpha=alpha), model
        sparse = study.runs.run(name, train, keep_model=True)
        tuned = study.runs.run(*study.fine_tune_job(
            f"{name}-slim", functools.partial(_unscaled, study, name, alpha),
            keras_slim.plan_zero_gamma, seed, rho=rho, alpha=alpha))[0]
        stops.append({"model": letter, "rho": rho,
                      "epochs": sparse[0]["epochs"],
                      "stopped": sparse[0]["stopped"],
                      "val_accuracy": sparse[0]["val_accuracy"],
                      "channels_kept": sum(
                          v for k, v in tuned["widths"].items()
                          if k != "logits")})
        rows.append(dict(sparse[0], label=f"{letter}: after ISTA"))
        rows.append(dict(tuned, label=f"{letter}: slim, no fine-tune",
                         accuracy=tuned["pruned_accuracy"],
                         val_accuracy=tuned["pruned_val_accuracy"]))
        rows.append(dict(tuned, label=f"{letter}: slim + fine-tune"))
        if letter == "B":
            plan, ratio = lib.plan_equal_params(base[1], tuned["params"])
            reference = study.scratch_job(
                f"ista-reference{'-paper' if paper else ''}"
                f"-e{study.epochs}-s{seed}",
                lambda plan=plan: keras_slim.slim_model(base[1], plan), seed,
                study.epochs, uniform_ratio=ratio)
            rows.append(dict(study.runs.run(*reference)[0],
                             label="reference (B's size, uniform, scratch)"))
        # the next stage starts from this stage's slim (not fine-tuned) net
        start_name = name
        start = functools.partial(_slim_of, study, name)
    study.choices["ista_stops"] = stops
    return rows
