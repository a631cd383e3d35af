"""Exact folding: with "same" padding the carrier reproduces the borders."""

import warnings

import keras
import numpy as np
import pytest

import keras_slim
from tests import zoo

L = keras.layers


def _dead_betas_kept(model, seed):
    """Gamma zero, beta kept (nonzero) on half of every prunable group."""
    rng = np.random.default_rng(seed)
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_coherently(model, rng, kill_beta=False)
    inputs = zoo.random_inputs(model, rng)
    return inputs, zoo.outputs(model, inputs)


def _relative_error(expected, actual):
    return max(float(np.abs(a - b).max() / np.abs(a).max())
               for a, b in zip(expected, actual))


def convnet():
    """The digits ConvNet's shape: same padding, pooling, a ZeroPadding +
    valid-conv stem, Flatten into Dense."""
    x = inputs = keras.Input((12, 12, 3))
    x = zoo.conv_bn(x, 8, "c1")
    x = L.MaxPooling2D(2, padding="same")(x)
    x = zoo.conv_bn(x, 12, "c2")
    x = L.ZeroPadding2D(1)(x)
    x = zoo.conv_bn(x, 10, "c3", padding="valid")
    x = zoo.conv_bn(x, 6, "c4", strides=2, act="tanh")
    x = L.Flatten()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x), name="convnet")


SAME = {
    "convnet": convnet,
    "chain": zoo.chain,
    "residual": zoo.residual,
    "concat": zoo.concat,
    "flatten": zoo.flatten_dense,
    "merges": zoo.merges,
}


@pytest.mark.parametrize("name", sorted(SAME))
def test_exact_fold_reproduces_same_padding_where_bias_fold_drifts(name):
    model = SAME[name]()
    inputs, before = _dead_betas_kept(model, 0)
    plan = keras_slim.plan_zero_gamma(model)
    assert plan.kept
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no approximate fold is warned
        exact = keras_slim.slim_model(model, plan, fold="exact")
    bias = keras_slim.slim_model(model, plan, fold="bias")
    assert _relative_error(before, zoo.outputs(exact, inputs)) < 1e-4
    assert _relative_error(before, zoo.outputs(bias, inputs)) > 1e-3
    assert keras_slim.count_params(exact) < keras_slim.count_params(model)
    # The carriers are the only difference with the bias fold: one channel
    # per group at most here.
    applied = keras_slim.applied_plan(model, plan, fold="exact")
    extra = {n: len(applied.kept[n]) - len(k) for n, k in plan.kept.items()}
    assert set(extra.values()) <= {0, 1} and sum(extra.values()) >= 1
    assert keras_slim.count_params(exact) > keras_slim.count_params(bias)


def test_applied_plan_describes_the_slim_model():
    model = convnet()
    inputs, before = _dead_betas_kept(model, 1)
    plan = keras_slim.plan_zero_gamma(model)
    applied = keras_slim.applied_plan(model, plan)
    slim = keras_slim.slim_model(model, plan)
    for name, kept in applied.kept.items():
        producer = slim.get_layer(name)
        assert producer.get_config().get("filters",
                                          producer.get_config().get("units")) \
            == len(kept)
    # Slimming with the applied plan is the same model (the carriers are
    # kept dead constants, which need no other carrier).
    again = keras_slim.slim_model(model, applied)
    assert keras_slim.count_params(again) == keras_slim.count_params(slim)
    zoo.assert_close(zoo.outputs(slim, inputs), zoo.outputs(again, inputs))
    assert keras_slim.applied_plan(model, plan, fold="bias") == plan.complete(
        keras_slim.channel_groups(model))


def test_exact_fold_after_a_global_gamma_plan_matches_the_masked_model():
    """Cut channels that are not dead are folded at beta; the carrier is
    made dead, so the slim model is the original with those gammas zeroed."""
    model = zoo.chain()
    rng = np.random.default_rng(2)
    zoo.randomize_batchnorms(model, rng)
    plan = keras_slim.plan_global_gamma(model, 0.5)
    slim = keras_slim.slim_model(model, plan, fold="exact", verify=True)
    assert keras_slim.count_params(slim) < keras_slim.count_params(model)
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    for group in keras_slim.channel_groups(model):
        for bn, matrix in group.bn_positions.items():
            removed = (plan.removed(group.name) if group.name in plan.kept
                       else [])  # a group the plan leaves whole
            gamma = masked.get_layer(bn).gamma
            value = keras.ops.convert_to_numpy(gamma)
            value[matrix[removed].ravel()] = 0
            gamma.assign(value)
    inputs = zoo.random_inputs(model, rng)
    zoo.assert_close(zoo.outputs(masked, inputs), zoo.outputs(slim, inputs))


def test_exact_fold_warns_naming_the_layer_that_breaks_the_pattern():
    """A depthwise convolution with "same" padding gives every channel its
    own border: the fold falls back to the bias, and says where."""
    x = inputs = keras.Input((8, 8, 3))
    x = zoo.conv_bn(x, 8, "d0")
    x = L.DepthwiseConv2D(3, padding="same", name="dw_same")(x)
    x = L.Conv2D(4, 1, name="reader")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2)(x))
    _dead_betas_kept(model, 3)
    plan = keras_slim.plan_zero_gamma(model)
    with pytest.warns(UserWarning, match="`reader`.*`dw_same`"):
        keras_slim.slim_model(model, plan, fold="exact")


def test_fold_argument():
    model = zoo.valid_padding()
    inputs, before = _dead_betas_kept(model, 4)
    plan = keras_slim.plan_zero_gamma(model)
    none = keras_slim.slim_model(model, plan, fold="none")
    assert _relative_error(before, zoo.outputs(none, inputs)) > 1e-3
    for bad in ("carrier", False, ["exact"]):
        with pytest.raises(ValueError, match="Expected `fold` in"):
            keras_slim.slim_model(model, plan, fold=bad)
    # The `fold_constants` alias is gone: one knob, `fold`.
    with pytest.raises(TypeError, match="fold_constants"):
        keras_slim.slim_model(model, plan, fold_constants=False)


def test_same_padded_convnet_after_ista_slims_exactly():
    """The issue's case: a same-padded ConvNet trained with ISTA (exact
    zero gammas, betas as training left them, started positive so that
    the dead channels' relu(beta) is not zero)."""
    x = inputs = keras.Input((8, 8, 1))
    for i, width in enumerate((12, 16, 16)):
        x = L.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = L.BatchNormalization(
            beta_initializer=keras.initializers.RandomUniform(0.2, 1.0),
            gamma_initializer=keras.initializers.RandomUniform(0.05, 1.0))(x)
        x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(10, name="logits")(x))
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(7)
    images = rng.normal(size=(128, 8, 8, 1)).astype("float32")
    labels = rng.integers(0, 10, 128)
    callback = keras_slim.ISTAGamma(0.5, penalty="uniform")
    model.fit(images, labels, batch_size=32, epochs=4, verbose=0,
              callbacks=[callback])
    assert callback.history[-1]["gamma_zero_fraction"] > 0.2
    before = zoo.outputs(model, images[:8])
    plan = keras_slim.plan_zero_gamma(model)
    assert plan.kept
    exact = keras_slim.slim_model(model, plan, fold="exact", verify=True)
    bias = keras_slim.slim_model(model, plan, fold="bias")
    assert _relative_error(before, zoo.outputs(exact, images[:8])) < 1e-4
    assert _relative_error(before, zoo.outputs(bias, images[:8])) > 1e-3
    assert keras_slim.count_params(exact) < keras_slim.count_params(model)
