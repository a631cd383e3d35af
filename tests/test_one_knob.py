"""`fold=` and `verify=` reach every entry point that slims: `prune`,
`slim_in_passes`, `rewind` (the CLI's `--fold`/`--verify` are in
test_cli.py).

The model is same-padded with positive betas on the channels the plan cuts:
there the bias fold is off at the borders, the exact fold is not, so each
mode gives other outputs, and `verify=True` refuses the bias fold.
"""

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.protocols import rethinking
from keras_slim.tools import pruning

L = keras.layers
RATIO = {"ratio": 0.5, "score": "l1"}


def same_padded():
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((6, 6, 2))
    for i, width in enumerate((4, 4)):
        x = L.Conv2D(width, 3, padding="same", name=f"conv{i}")(x)
        x = L.BatchNormalization(name=f"bn{i}")(x)
        x = L.ReLU(name=f"relu{i}")(x)
    x = L.Conv2D(3, 3, padding="same", name="last")(x)
    model = keras.Model(inputs, L.GlobalAveragePooling2D()(x))
    rng = np.random.default_rng(0)
    for name in ("bn0", "bn1"):
        layer = model.get_layer(name)
        layer.gamma.assign(rng.uniform(0.5, 1.5, 4).astype("float32"))
        # Positive betas: the cut channels output relu(beta) > 0.
        layer.beta.assign(rng.uniform(0.5, 1.5, 4).astype("float32"))
    return model


INPUTS = np.random.default_rng(1).random((2, 6, 6, 2)).astype("float32")


def outputs(model):
    return keras.ops.convert_to_numpy(model(INPUTS, training=False))


def plan_of(model):
    return keras_slim.plan_uniform(model, **RATIO)


def masked_outputs(model, plan):
    """The outputs of `model` with the gammas of the cut channels zeroed,
    what an exact slim model computes (its own copy; `model` untouched)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for name in ("bn0", "bn1"):
        group = "conv0" if name == "bn0" else "conv1"
        gamma = copy.get_layer(name).gamma.numpy()
        cut = np.setdiff1d(np.arange(gamma.size), plan.kept[group])
        assert cut.size  # the plan cuts here
        gamma[cut] = 0.0
        copy.get_layer(name).gamma.assign(gamma)
    return outputs(copy)


def differ(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


def test_prune_forwards_fold_and_verify():
    model = same_padded()
    reference = masked_outputs(model, plan_of(model))
    exact = pruning.prune(model, "uniform", fold="exact", **RATIO)
    bias = pruning.prune(model, "uniform", fold="bias", **RATIO)
    none = pruning.prune(model, "uniform", fold="none", **RATIO)
    # Each mode is that of slim_model, and they differ from each other.
    np.testing.assert_array_equal(
        outputs(exact),
        outputs(keras_slim.slim_model(model, plan_of(model), fold="exact")))
    assert differ(reference, outputs(exact)) < 1e-5
    assert differ(reference, outputs(bias)) > 1e-3
    assert differ(outputs(bias), outputs(none)) > 1e-3
    pruning.prune(model, "uniform", fold="exact", verify=True, **RATIO)
    with pytest.raises(ValueError, match="layer"):
        pruning.prune(model, "uniform", fold="bias", verify=True, **RATIO)
    with pytest.raises(ValueError, match="Expected `fold`"):
        pruning.prune(model, "uniform", fold="carrier", **RATIO)
    with pytest.raises(TypeError):
        pruning.prune(model, "uniform", fold_constants=False, **RATIO)


def test_slim_in_passes_forwards_fold_and_verify():
    model = same_padded()
    reference = masked_outputs(model, plan_of(model))
    trained = []

    def train(m, index):
        trained.append(index)

    def run(**kwargs):
        slim, plans = keras_slim.slim_in_passes(
            model, 1, train, train, method="uniform", **RATIO, **kwargs)
        return slim

    assert differ(reference, outputs(run(fold="exact", verify=True))) < 1e-5
    assert differ(reference, outputs(run(fold="bias"))) > 1e-3
    with pytest.raises(ValueError, match="layer"):
        run(fold="bias", verify=True)
    count = len(trained)
    with pytest.raises(ValueError, match="Expected `fold`"):
        run(fold="carrier")
    assert len(trained) == count  # refused before training


def test_rewind_forwards_fold_and_verify():
    model = same_padded()
    snapshot = keras_slim.snapshot_weights(model)
    plan = plan_of(model)
    pruned = keras_slim.slim_model(model, plan, fold="none")
    none = rethinking.rewind(pruned, snapshot, plan=plan)
    bias = rethinking.rewind(pruned, snapshot, plan=plan, fold="bias")
    # The default folds nothing: the kept weights are the snapshot's.
    np.testing.assert_array_equal(
        none.get_layer("conv1").bias.numpy(),
        model.get_layer("conv1").bias.numpy()[plan.kept["conv1"]])
    assert differ(outputs(none), outputs(bias)) > 1e-3
    with pytest.raises(ValueError, match="layer"):
        rethinking.rewind(pruned, snapshot, plan=plan, fold="bias",
                          verify=True)
    # A model slimmed with fold="exact" keeps carrier channels: rewinding
    # it needs the same fold.
    exact = keras_slim.slim_model(model, plan, fold="exact")
    ticket = rethinking.rewind(exact, snapshot, plan=plan, fold="exact",
                               verify=True)
    assert ticket.count_params() == exact.count_params()
    with pytest.raises(ValueError, match="shape"):
        rethinking.rewind(exact, snapshot, plan=plan)
