"""The experimental protocols of "Rethinking the Value of Network Pruning".

- Scratch-E / Scratch-B: `reinitialize` a pruned architecture and train it
  for the same epochs, or for `scratch_budget` epochs (same computation).
- Lottery ticket: `snapshot_weights` before training, then `rewind` the
  pruned (slimmed or masked) model's surviving weights to the snapshot.
- Multi-pass Network Slimming: `slim_in_passes` (train sparse, prune,
  fine-tune, repeat).

Guided pruning (Section 5) lives in `guidance.py`.
"""

import keras
import numpy as np

from keras_slim.core import copying
from keras_slim.core.counting import count_macs
from keras_slim.core.graph import check_model, leaf_layers
from keras_slim.core.plan import PruningPlan
from keras_slim.core.surgery import fold_mode, slim_model
from keras_slim.planners.methods import plan_for
from keras_slim.protocols.magnitude import MagnitudeMask

__all__ = [
    "reinitialize",
    "rewind",
    "scratch_budget",
    "slim_in_passes",
    "snapshot_weights",
    "WeightSnapshot",
]


def _reseed(config, draw):
    """Replace the seed of every initializer in a layer config (in place)."""
    if isinstance(config, dict):
        inner = config.get("config")
        if (config.get("module") == "keras.initializers"
                and isinstance(inner, dict) and "seed" in inner):
            inner["seed"] = draw()
        for value in config.values():
            _reseed(value, draw)
    elif isinstance(config, (list, tuple)):
        for value in config:
            _reseed(value, draw)


def reinitialize(model, seed=None):
    """The same architecture with fresh initial weights (Scratch-E/B start).

    The model is cloned from its config with new initializer seeds, so every
    trainable weight and every BatchNormalization statistic starts anew.
    Layers with only non-trainable weights (an adapted `Normalization`) keep
    theirs: they are preprocessing, not learned.

    Args:
        model: a functional or Sequential `keras.Model`. Not modified.
        seed: int for reproducible weights; `None` draws seeds from Python's
            random generator (reproducible under
            `keras.utils.set_random_seed`).

    Returns:
        A new, uncompiled `keras.Model`.

    Raises:
        TypeError: `model` is not a functional or Sequential model, or
            `seed` is not an int.

    Example:

    >>> scratch = keras_slim.reinitialize(slim, seed=0)
    >>> scratch.compile(...); scratch.fit(..., epochs=budget)

    For an unstructured (masked) model, train the fresh copy with the same
    masks: `scratch.fit(..., callbacks=[keras_slim.MagnitudeMask(masks=m)])`.
    """
    check_model(model)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(
            f"Expected `seed` to be an int or None. Received: seed={seed!r}")
    rng = np.random.default_rng(seed)

    def draw():
        return None if seed is None else int(rng.integers(1, 2**31 - 1))

    def clone(layer):
        config = layer.get_config()
        _reseed(config, draw)
        return layer.__class__.from_config(config)

    new = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for old_layer, new_layer in zip(leaf_layers(model), leaf_layers(new)):
        if (old_layer.weights and not old_layer.trainable_weights
                and not isinstance(old_layer, keras.layers.BatchNormalization)):
            new_layer.set_weights(old_layer.get_weights())
            copying.refresh_state(new_layer)
    return new


def scratch_budget(base_model, pruned_model, epochs, cap=None):
    """Scratch-B's epochs: the base model's training computation.

    `int(epochs * base_macs / pruned_macs)`, as in the Rethinking
    repository, optionally capped at `cap * epochs` (the paper caps ImageNet
    at 2x).

    Args:
        base_model: the large model, or its multiply-accumulates (an int).
        pruned_model: the pruned model, or its multiply-accumulates.
        epochs: epochs of the large model's training.
        cap: `None`, or the largest multiple of `epochs` allowed.

    Returns:
        An int.

    Raises:
        ValueError: `epochs` not a positive int, `cap` below 1, or a model
            without multiply-accumulates.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(
            f"Expected `epochs` to be a positive int. Received: epochs={epochs!r}"
        )
    if cap is not None and (isinstance(cap, bool)
                            or not isinstance(cap, (int, float)) or cap < 1):
        raise ValueError(f"Expected `cap` >= 1 or None. Received: cap={cap!r}")
    macs = []
    for name, value in (("base_model", base_model), ("pruned_model", pruned_model)):
        count = value if isinstance(value, (int, np.integer)) else count_macs(value)
        if isinstance(count, bool) or count <= 0:
            raise ValueError(
                f"`{name}` has {count} multiply-accumulates; expected > 0."
            )
        macs.append(int(count))
    budget = int(epochs * macs[0] / macs[1])
    if cap is not None:
        budget = min(budget, int(cap * epochs))
    return budget


class WeightSnapshot:
    """A model's weights at one moment, with a copy of its architecture.

    Attributes:
        model: an uncompiled copy of the model carrying the snapshot.
    """

    def __init__(self, model):
        check_model(model)
        self.model = copying.clone_model(model)

    @property
    def weights(self):
        """dict variable path -> array."""
        return {v.path: keras.ops.convert_to_numpy(v) for v in self.model.weights}


def snapshot_weights(model):
    """Keep the current (usually initial) weights of `model` for `rewind`.

    Args:
        model: a functional or Sequential `keras.Model`. Not modified.

    Returns:
        A `WeightSnapshot` (a copy of the model and its weights).

    Example:

    >>> model = build(); initial = keras_slim.snapshot_weights(model)
    >>> model.fit(...); slim, plan = keras_slim.prune(model, ..., return_plan=True)
    >>> ticket = keras_slim.rewind(slim, initial, plan=plan)
    """
    return WeightSnapshot(model)


def _by_path(weights, what):
    paths = [v.path for v in weights]
    if len(set(paths)) != len(paths):
        raise ValueError(
            f"The {what} has several weights with the same path; give its "
            "layers unique names."
        )
    return dict(zip(paths, weights))


def rewind(pruned, snapshot, plan=None, masks=None, fold="none",
           verify=False):
    """A copy of `pruned` whose weights are the snapshot's (lottery ticket).

    For a slimmed model, pass the `plan` it was slimmed with: the copy of
    the original model kept in the snapshot is slimmed with the same plan
    (`slim_model(..., fold="none")` by default, so nothing is folded into
    the initial weights) and its weights copied, so each surviving channel gets
    its own initial weights. A bias that `slim_model` created to absorb
    constants did not exist at initialisation and is rewound to zero. For a
    masked model (unstructured pruning), pass the `masks`: the snapshot is
    multiplied by them.

    Args:
        pruned: the pruned `keras.Model`. Not modified.
        snapshot: a `WeightSnapshot` of the model `pruned` comes from.
        plan: the `PruningPlan` `pruned` was slimmed with, or `None` when it
            has the snapshot's architecture.
        masks: dict variable path -> boolean array, or a `MagnitudeMask`.
        fold: passed to the `slim_model` that slims the snapshot's copy:
            "none" (default) folds nothing into the initial weights; give
            "exact" when `pruned` was slimmed with it, so that the carrier
            channels it kept are kept here too.
        verify: passed to that `slim_model`: check the slimmed snapshot
            against the snapshot.

    Returns:
        A new, uncompiled `keras.Model` with `pruned`'s architecture.

    Raises:
        ValueError: a weight whose shape does not match (a missing `plan`),
            a mask for a weight the model does not have, an unknown `fold`,
            or `verify` found a layer whose output differs.
    """
    if not isinstance(snapshot, WeightSnapshot):
        raise TypeError(
            "Expected `snapshot` to come from keras_slim.snapshot_weights. "
            f"Received: snapshot={snapshot!r}"
        )
    if plan is not None and not isinstance(plan, PruningPlan):
        raise TypeError(f"Expected `plan` to be a PruningPlan. Received: {plan!r}")
    if isinstance(masks, MagnitudeMask):
        masks = masks.masks
    source = snapshot.model
    if plan is not None:
        source = slim_model(source, plan, fold=fold, verify=verify)
    values = _by_path(source.weights, "snapshot")
    copy = keras.models.clone_model(pruned)
    for path, variable in _by_path(copy.weights, "pruned model").items():
        value = values.get(path)
        if value is None:
            if variable.name != "bias":
                raise ValueError(
                    f"Weight `{path}` of the pruned model is not in the "
                    "snapshot: is the snapshot of the model it was pruned from?"
                )
            variable.assign(np.zeros(tuple(variable.shape)))
            continue
        if tuple(value.shape) != tuple(variable.shape):
            hint = "" if plan is None else " with this plan"
            raise ValueError(
                f"Weight `{path}` has shape {tuple(variable.shape)} in the "
                f"pruned model but {tuple(value.shape)} in the snapshot"
                f"{hint}. Pass the `plan` the model was slimmed with."
            )
        variable.assign(value)
    if masks:
        variables = _by_path(copy.weights, "pruned model")
        for path, mask in masks.items():
            if path not in variables:
                raise ValueError(f"`masks` names weight `{path}`, not in the model.")
            value = keras.ops.convert_to_numpy(variables[path])
            variables[path].assign(value * np.asarray(mask, bool))
    copying.refresh_model_state(copy)
    return copy


def slim_in_passes(model, passes, train_sparse, fine_tune,
                   method="global_gamma", fold=None, verify=False, **kwargs):
    """Multi-pass Network Slimming (the dotted loop of Liu et al., Fig. 2).

    Each pass: `train_sparse(model, index)` (train with the sparsity
    penalty), plan with `method` and slim, then `fine_tune(slim, index)`.
    The ratio applies to the model of that pass, so `n` passes at ratio `r`
    keep about `(1 - r) ** n` of the channels.

    Args:
        model: a functional or Sequential `keras.Model`.
        passes: number of passes (>= 1).
        train_sparse: callable `(model, index)`; trains the model (it must
            compile a slim one) and returns it, or `None` when it trained
            the model it was given.
        fine_tune: callable `(model, index)`, the same for fine-tuning.
        method: a pruning method name of `prune` ("global_gamma", ...).
        fold: passed to `slim_model` at each pass: "bias" (default),
            "exact" or "none".
        verify: passed to `slim_model` at each pass: check each slim model
            against the model of its pass.
        **kwargs: the planner's arguments; `ratio` may also be a list with
            one ratio per pass.

    Returns:
        `(model, plans)`: the last fine-tuned model and the plan of each
        pass (each for the model of its pass).

    Raises:
        ValueError: `passes` < 1, a `ratio` list of another length, an
            unknown `fold`, or `verify` found a layer whose output differs.
        TypeError: a callable that is not, or a bad planner argument.

    Example:

    >>> def sparse(m, i): m.compile(...); m.fit(...)  # GammaL1 on
    >>> def tune(m, i): m.compile(...); m.fit(...)
    >>> slim, plans = keras_slim.slim_in_passes(model, 3, sparse, tune,
    ...                                         ratio=0.3)
    """
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"Expected `passes` >= 1. Received: passes={passes!r}")
    for name, fn in (("train_sparse", train_sparse), ("fine_tune", fine_tune)):
        if not callable(fn):
            raise TypeError(f"Expected `{name}` to be callable. Received: {fn!r}")
    fold_mode(fold)  # a bad `fold` is refused before any training
    ratios = kwargs.pop("ratio", None)
    if isinstance(ratios, (list, tuple)):
        if len(ratios) != passes:
            raise ValueError(
                f"`ratio` has {len(ratios)} entries for {passes} passes."
            )
    else:
        ratios = [ratios] * passes
    plans = []
    for index in range(passes):
        model = train_sparse(model, index) or model
        if ratios[index] is not None:
            kwargs["ratio"] = ratios[index]
        plan = plan_for(model, method, **kwargs)
        model = slim_model(model, plan, fold=fold, verify=verify)
        model = fine_tune(model, index) or model
        plans.append(plan)
    return model, plans
