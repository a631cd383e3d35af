"""Silent-wrong models of issue 10, one named test each.

Each test builds a small model, zeroes the gamma (and, where said, the beta)
of some BatchNormalization channels, slims it with `plan_zero_gamma` and
checks that the slim model computes what the original computes, and that
something was actually cut (or that the channels that cannot be cut exactly
were kept, with the layer named).
"""

import warnings

import keras
import numpy as np
import pytest

import keras_slim
from tests import zoo

L = keras.layers


def _prepare(model, seed=0):
    rng = np.random.default_rng(seed)
    zoo.randomize_batchnorms(model, rng)
    return rng


def _slim_matches(model, rng, expect_cut=True):
    inputs = zoo.random_inputs(model, rng)
    before = zoo.outputs(model, inputs)
    plan = keras_slim.plan_zero_gamma(model)
    slim = keras_slim.slim_model(model, plan)
    zoo.assert_close(before, zoo.outputs(slim, inputs))
    if expect_cut:
        assert slim.count_params() < model.count_params()
    return plan, slim


# -- built-in activations -----------------------------------------------------


def test_conv_relu_without_bias_before_batchnorm_folds_through_activation():
    inputs = keras.Input((9, 9, 3))
    x = L.Conv2D(8, 3, padding="valid", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Conv2D(6, 3, padding="valid", use_bias=False, activation="relu",
                 name="c2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    rng = _prepare(model)
    zoo.kill(model.get_layer("bn1"), [0, 2, 5])
    _slim_matches(model, rng)


def test_dense_tanh_without_bias_before_batchnorm_folds_through_activation():
    inputs = keras.Input((6,))
    x = L.Dense(8, name="d1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Dense(5, use_bias=False, activation="tanh", name="d2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    rng = _prepare(model)
    zoo.kill(model.get_layer("bn1"), [1, 3, 4])
    _slim_matches(model, rng)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_depthwise_activation_is_applied_to_propagated_constants(activation):
    inputs = keras.Input((9, 9, 3))
    x = L.Conv2D(6, 3, padding="valid", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.DepthwiseConv2D(3, padding="valid", activation=activation,
                          name="dw")(x)
    x = L.Conv2D(4, 1, name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    rng = _prepare(model)
    bn = model.get_layer("bn1")
    beta = keras.ops.convert_to_numpy(bn.beta).copy()
    beta[[0, 4]] = [-1.5, 2.0]  # a constant whose sign matters to relu
    bn.beta.assign(beta)
    zoo.kill(bn, [0, 4])
    _slim_matches(model, rng)


def test_separable_conv_activation_without_bias_before_batchnorm():
    inputs = keras.Input((9, 9, 3))
    x = L.Conv2D(6, 3, padding="valid", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.SeparableConv2D(5, 3, padding="valid", use_bias=False,
                          activation="elu", name="sep")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    rng = _prepare(model)
    zoo.kill(model.get_layer("bn1"), [0, 3])
    _slim_matches(model, rng)


# -- softmax-family activations -----------------------------------------------


@pytest.mark.parametrize("activation", ["softmax", "log_softmax"])
def test_softmax_activation_layer_is_a_barrier(activation):
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Activation(activation, name="act")(x)
    x = L.Conv2D(4, 3, padding="same", name="c2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    group = {g.name: g for g in keras_slim.channel_groups(model)}["c1"]
    assert not group.prunable and "act" in group.frozen
    rng = _prepare(model)
    zoo.kill(model.get_layer("bn1"), [0, 2], kill_beta=True)
    zoo.kill(model.get_layer("bn2"), [1], kill_beta=True)
    plan, _ = _slim_matches(model, rng)
    assert "c1" not in plan.kept and "c2" in plan.kept


def test_dense_softmax_as_hidden_producer_keeps_its_units():
    inputs = keras.Input((6,))
    x = L.Dense(8, activation="softmax", name="d1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Dense(5, name="d2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    groups = {g.name: g for g in keras_slim.channel_groups(model)}
    assert not groups["d1"].prunable and "softmax" in groups["d1"].frozen
    rng = _prepare(model)
    zoo.kill(model.get_layer("bn1"), [0, 2], kill_beta=True)
    zoo.kill(model.get_layer("bn2"), [1, 3], kill_beta=True)
    plan, _ = _slim_matches(model, rng)
    assert set(plan.kept) == {"d2"}


def test_depthwise_softmax_is_a_barrier():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="softmax", name="dw")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    group = {g.name: g for g in keras_slim.channel_groups(model)}["c1"]
    assert not group.prunable


def test_custom_activation_function_is_a_barrier_with_a_warning():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Activation(lambda t: t / keras.ops.sum(t, axis=-1, keepdims=True),
                     name="share")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    with pytest.warns(UserWarning, match="`share`"):
        groups = {g.name: g for g in keras_slim.channel_groups(model)}
    assert not groups["c1"].prunable


# -- state outside the config -------------------------------------------------


def _adapted_normalization(shape, rng, name):
    layer = L.Normalization(axis=-1, name=name)
    layer.adapt(rng.normal(3.0, 2.0, (16,) + shape).astype("float32"))
    return layer


def test_adapted_normalization_keeps_its_statistics_through_slim_model():
    rng = np.random.default_rng(0)
    inputs = keras.Input((8, 8, 3))
    x = _adapted_normalization((8, 8, 3), rng, "norm")(inputs)
    x = L.Conv2D(6, 3, padding="valid", name="c1")(x)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Conv2D(4, 3, padding="valid", name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    rng = _prepare(model)
    zoo.kill(model.get_layer("bn1"), [0, 2])
    _slim_matches(model, rng)


def test_adapted_normalization_between_layers_is_sliced_by_its_variables():
    rng = np.random.default_rng(1)
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="valid", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = _adapted_normalization((6, 6, 6), rng, "norm")(x)
    x = L.Conv2D(4, 3, padding="valid", name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    rng = _prepare(model)
    zoo.kill(model.get_layer("bn1"), [0, 2, 3])
    _, slim = _slim_matches(model, rng)
    assert slim.get_layer("norm").adapt_mean.shape == (3,)


def _normalization_model():
    rng = np.random.default_rng(2)
    inputs = keras.Input((8, 8, 3))
    x = _adapted_normalization((8, 8, 3), rng, "norm")(inputs)
    x = L.Conv2D(4, 3, name="c1")(x)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x))


def _same_outputs(model, copy):
    inputs = zoo.random_inputs(model, np.random.default_rng(3))
    zoo.assert_close(zoo.outputs(model, inputs), zoo.outputs(copy, inputs))


def test_add_gamma_regularizer_copy_keeps_normalization_state():
    model = _normalization_model()
    _same_outputs(model, keras_slim.add_gamma_regularizer(model, 1e-4))


def test_rescale_gammas_copy_keeps_normalization_state():
    model = _normalization_model()
    _same_outputs(model, keras_slim.rescale_gammas(model, 1.0))


def test_apply_masks_copy_keeps_normalization_state():
    model = _normalization_model()
    kernel = model.get_layer("head").kernel
    masks = {kernel.path: np.ones(kernel.shape, bool)}
    _same_outputs(model, keras_slim.apply_masks(model, masks))


def test_weight_snapshot_copy_keeps_normalization_state():
    model = _normalization_model()
    _same_outputs(model, keras_slim.snapshot_weights(model).model)


def test_reinitialize_keeps_normalization_state():
    model = _normalization_model()
    fresh = keras_slim.reinitialize(model, seed=0)
    inputs = zoo.random_inputs(model, np.random.default_rng(3))
    expected = model.get_layer("norm")(inputs)
    got = fresh.get_layer("norm")(inputs)
    zoo.assert_close([keras.ops.convert_to_numpy(expected)],
                     [keras.ops.convert_to_numpy(got)])


# -- subclasses that compute differently --------------------------------------


class WeightStandardizedConv2D(L.Conv2D):
    """A Conv2D whose kernel is standardised per output channel."""

    def convolution_op(self, inputs, kernel):
        mean = keras.ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
        std = keras.ops.std(kernel, axis=(0, 1, 2), keepdims=True)
        return super().convolution_op(inputs, (kernel - mean) / (std + 1e-5))


class ScaledDense(L.Dense):
    """A Dense that divides by its input width: mixes channels differently."""

    def call(self, inputs):
        width = keras.ops.cast(keras.ops.shape(inputs)[-1], inputs.dtype)
        return super().call(inputs) / width


class RenamedConv2D(L.Conv2D):
    """A subclass that changes nothing of the computation."""


def test_weight_standardized_conv_is_a_barrier_with_a_warning():
    inputs = keras.Input((9, 9, 3))
    x = L.Conv2D(6, 3, padding="valid", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = WeightStandardizedConv2D(5, 3, padding="valid", name="ws")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    rng = _prepare(model)
    zoo.kill(model.get_layer("bn1"), [0, 2], kill_beta=True)
    zoo.kill(model.get_layer("bn2"), [1], kill_beta=True)
    with pytest.warns(UserWarning, match="WeightStandardizedConv2D.*`ws`"):
        groups = {g.name: g for g in keras_slim.channel_groups(model)}
    assert not groups["c1"].prunable
    _slim_matches(model, rng, expect_cut=False)


def test_subclass_overriding_call_is_a_barrier_with_a_warning():
    inputs = keras.Input((6,))
    x = L.Dense(8, name="d1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = ScaledDense(5, name="scaled")(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    rng = _prepare(model)
    zoo.kill(model.get_layer("bn1"), [0, 2], kill_beta=True)
    with pytest.warns(UserWarning, match="ScaledDense"):
        plan, _ = _slim_matches(model, rng, expect_cut=False)
    assert not plan.kept


def test_registering_a_rule_for_the_exact_subclass_lifts_the_barrier():
    dense_rule = keras_slim.rules.rule_for(L.Dense(1))
    with keras_slim.rules.registered(ScaledDense, type(dense_rule)):
        inputs = keras.Input((6,))
        x = L.Dense(8, name="d1")(inputs)
        x = ScaledDense(5, name="scaled")(x)
        model = keras.Model(inputs, x)
        groups = {g.name: g for g in keras_slim.channel_groups(model)}
        assert groups["d1"].prunable


def test_subclass_that_keeps_the_computation_is_cut_like_its_parent():
    inputs = keras.Input((9, 9, 3))
    x = L.Conv2D(6, 3, padding="valid", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = RenamedConv2D(5, 3, padding="valid", name="plain")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    rng = _prepare(model)
    zoo.kill(model.get_layer("bn1"), [0, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _slim_matches(model, rng)


# -- nested models with the same inner layer names ----------------------------


def _twin_backbones():
    def backbone(name):
        inputs = keras.Input((8, 8, 3))
        x = L.Conv2D(6, 3, padding="valid", name="conv")(inputs)
        x = L.BatchNormalization(name="bn")(x)
        x = L.Conv2D(4, 3, padding="valid", name="conv_out")(x)
        return keras.Model(inputs, x, name=name)

    inputs = keras.Input((8, 8, 3))
    a = backbone("left")(inputs)
    b = backbone("right")(inputs)
    x = L.Concatenate()([a, b])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x))


@pytest.mark.parametrize("entry", ["attach_ista", "attach_ista_uniform"])
def test_twin_nested_models_with_same_layer_names_are_refused(entry):
    # The graph names them `left/bn` and `right/bn` (slimmed exactly in
    # test_exactness_round3.py); ISTA's penalties are keyed by layer name.
    model = _twin_backbones()
    penalty = "uniform" if entry == "attach_ista_uniform" else "memory"
    with pytest.raises(ValueError, match="Two different .*named `bn`"):
        keras_slim.attach_ista(model, 1e-3, penalty=penalty,
                               optimizer=keras.optimizers.SGD())


# -- folds that are only approximate ------------------------------------------


def _zero_padding_stem(kill_beta):
    inputs = keras.Input((9, 9, 3))
    x = L.Conv2D(6, 3, padding="valid", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ZeroPadding2D(1, name="pad")(x)
    x = L.Conv2D(4, 3, padding="valid", name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    rng = _prepare(model)
    zoo.kill(model.get_layer("bn1"), [0, 2], kill_beta=kill_beta)
    return model, rng


def test_zero_padding_fold_of_a_nonzero_constant_warns_naming_the_layer():
    model, _ = _zero_padding_stem(kill_beta=False)
    plan = keras_slim.plan_zero_gamma(model)
    with pytest.warns(UserWarning, match="approximate.*`pad`"):
        keras_slim.slim_model(model, plan)


def test_zero_padding_with_zero_constants_is_exact_and_silent():
    model, rng = _zero_padding_stem(kill_beta=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _slim_matches(model, rng)


def test_same_padding_fold_warns_naming_the_consumer():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Conv2D(4, 3, padding="same", name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    _prepare(model)
    zoo.kill(model.get_layer("bn1"), [0, 2])
    plan = keras_slim.plan_zero_gamma(model)
    with pytest.warns(UserWarning, match="approximate.*`c2`"):
        keras_slim.slim_model(model, plan)


def test_same_padding_one_by_one_fold_is_exact_and_silent():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Conv2D(4, 1, padding="same", name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    rng = _prepare(model)
    zoo.kill(model.get_layer("bn1"), [0, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _slim_matches(model, rng)


# -- found by the fuzzer (tests/test_fuzz.py) ---------------------------------


def _shared_consumer_model():
    """Fuzzer find: a shared convolution reads a channel that is constant in
    both calls but with different values (beta and beta * beta'); its one
    bias cannot absorb both."""
    inputs = keras.Input((9, 9, 3))
    inner_in = keras.Input((9, 9, 3))
    y = L.Conv2D(5, 3, padding="valid", name="c_in")(inner_in)
    y = L.BatchNormalization(name="bn_in")(y)
    y = L.Activation("sigmoid", name="act_in")(y)
    a = keras.Model(inner_in, y, name="inner")(inputs)
    b = L.Conv2D(5, 1, name="branch")(a)
    b = L.BatchNormalization(name="bn_branch")(b)
    merged = L.Multiply(name="mul")([a, b])
    shared = L.Conv2D(4, 3, padding="valid", name="shared")
    x = L.Add(name="add")([shared(merged), shared(a)])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x))


def test_shared_consumer_seeing_different_constants_keeps_the_channels():
    model = _shared_consumer_model()
    rng = _prepare(model)
    dead = [0, 3]
    zoo.kill(model.get_layer("inner").get_layer("bn_in"), dead, kill_beta=True)
    zoo.kill(model.get_layer("bn_branch"), dead, kill_beta=True)
    plan, _ = _slim_matches(model, rng, expect_cut=False)
    assert "c_in" not in plan.kept


def test_slim_model_warns_when_a_shared_consumer_cannot_absorb():
    model = _shared_consumer_model()
    _prepare(model)
    plan = keras_slim.PruningPlan({"c_in": [1, 2, 4]},
                                  widths={"c_in": 5})
    with pytest.warns(UserWarning, match="`shared` is called several times"):
        keras_slim.slim_model(model, plan)


def _offset_into(padding):
    """Fuzzer find: gamma and beta zero, yet `x * 1.5 + 0.25` makes the cut
    channel a nonzero constant before a strided, padded SeparableConv2D."""
    inputs = keras.Input((7, 7, 3))
    x = L.Dense(2, name="fc")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = x * 1.5 + 0.25
    x = L.SeparableConv2D(5, 3, strides=2, padding=padding, name="sep")(x)
    x = L.BatchNormalization(name="bn_sep")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    rng = _prepare(model)
    zoo.kill(model.get_layer("bn"), [1], kill_beta=True)
    return model, rng


def test_zero_channel_made_nonzero_by_an_offset_folds_exactly_when_valid():
    model, rng = _offset_into("valid")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _slim_matches(model, rng)


def test_zero_channel_made_nonzero_by_an_offset_warns_when_same_padded():
    model, _ = _offset_into("same")
    plan = keras_slim.plan_zero_gamma(model)
    assert "fc" in plan.kept
    with pytest.warns(UserWarning, match="approximate fold.*`sep`"):
        keras_slim.slim_model(model, plan)


def test_fuzz_carrier_taken_by_a_later_consumer_is_not_also_folded():
    """Fuzzer find (invariant c): the channels of a group are constant
    before a Minimum merge (bn4's betas) and after it (min with bn6's 0).
    `conv5` reads them before the merge and folded cut channel 3 into
    carrier 2; `conv8` reads them after, where channel 2 is 0, and took
    channel 3 as its own carrier, keeping it: conv5 then counted channel 3
    twice (0.24 relative at conv5, silently). Carriers are now settled for
    every consumer before any fold."""
    inputs = keras.Input((5, 2))
    x = L.SeparableConv1D(6, 1, name="sep")(inputs)
    x = L.BatchNormalization(name="bn4")(x)
    y = L.Conv1D(6, 2, padding="same", dilation_rate=2, name="conv5")(x)
    y = L.BatchNormalization(center=False, name="bn6")(y)
    x = L.Minimum(name="merge")([x, y])
    x = L.Conv1D(2, 2, padding="causal", dilation_rate=2, name="conv8")(x)
    x = L.BatchNormalization(name="bn9")(x)
    model = keras.Model(inputs, L.Dense(2, name="out")(L.Flatten()(x)))
    rng = _prepare(model)
    bn4 = model.get_layer("bn4")
    beta = keras.ops.convert_to_numpy(bn4.beta).copy()
    beta[[0, 2, 3]] = [0.167, 0.48, -0.452]
    bn4.beta.assign(beta)
    zoo.kill(bn4, [0, 2, 3])
    zoo.kill(model.get_layer("bn6"), [0, 2, 3, 5])
    plan = keras_slim.plan_zero_gamma(model)
    assert sorted(plan.kept["sep"]) == [1, 4, 5]
    inputs = zoo.random_inputs(model, rng)
    before = zoo.outputs(model, inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        slim = keras_slim.slim_model(model, plan, fold="exact", verify=True)
    zoo.assert_close(before, zoo.outputs(slim, inputs))
    # Both consumers' carriers stay; channel 0 is folded into one of them.
    kept = keras_slim.applied_plan(model, plan, fold="exact").kept["sep"]
    assert sorted(kept) == [1, 2, 3, 4, 5]


# -- issue 19: user plans that cut live channels ----------------------------
#
# With fold="exact" the slim model computes what the original computes with
# the cut channels' gammas set to zero. A cut channel then outputs beta, a
# per-channel constant; past a per-sample gate, a FiLM block, a softmax
# over space or a concatenation along space it is no longer one constant at
# the layer that reads it, so it cannot be folded: slim_model must say so,
# naming the layer. Each test compares with a copy of the original whose
# cut gammas are zeroed, run through its own layers.


def _zeroed_copy(model, plan):
    """A copy of `model` whose gammas are zero on every channel `plan` cuts."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    zoo.zero_cut_gammas(copy, plan)
    return copy


def _slim_live_plan(model, producer, seed=0, verify=False):
    """plan_global_gamma(ratio=0.5) then fold="exact": the zeroed copy's
    and the slim model's outputs and the warnings."""
    rng = _prepare(model, seed)
    plan = keras_slim.plan_global_gamma(model, ratio=0.5)
    group, = [g.name for g in keras_slim.channel_groups(model)
              if producer in g.producers]
    assert group in plan.kept  # live channels of `producer` are cut
    inputs = zoo.random_inputs(model, rng)
    expected = zoo.outputs(_zeroed_copy(model, plan), inputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        slim = keras_slim.slim_model(model, plan, fold="exact", verify=verify)
    assert slim.count_params() < model.count_params()
    return expected, zoo.outputs(slim, inputs), [str(w.message) for w in caught]


def _verify_catches(model, consumer):
    """verify=True compares with the zeroed original itself, so the warned
    drop of a value that varies over space fails it, naming the consumer
    (the value is the same in every sample: only the reference shows it)."""
    plan = keras_slim.plan_global_gamma(model, ratio=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=f"`{consumer}`"):
            keras_slim.slim_model(model, plan, fold="exact", verify=True)


def _assert_dropped_with_warning(expected, actual, messages, culprit):
    """The slim model differs from the zeroed copy, and a warning says so,
    naming the layer where the cut channels stop being constant."""
    named = [m for m in messages if "not one constant" in m
             and f"`{culprit}`" in m]
    assert named, messages
    with pytest.raises(AssertionError):  # the warning is not spurious
        zoo.assert_close(expected, actual)


def test_live_cut_through_a_squeeze_excite_gate_warns():
    """The gate `x * sigmoid(...)` makes the cut channel's beta vary per
    sample (7.4e-2 relative, silently, before)."""
    expected, actual, messages = _slim_live_plan(zoo.squeeze_excite(),
                                                 "se_in_conv", verify=True)
    _assert_dropped_with_warning(expected, actual, messages, "se_mul")


def film():
    """FiLM: `x * g(c) + b(c)`, g and b computed from a second input."""
    image = keras.Input((8, 8, 3), name="image")
    condition = keras.Input((4,), name="condition")
    x = zoo.conv_bn(image, 8, "film_in")
    g = L.Reshape((1, 1, 8))(L.Dense(8, name="film_gamma")(condition))
    b = L.Reshape((1, 1, 8))(L.Dense(8, name="film_beta")(condition))
    x = L.Multiply(name="film_mul")([x, g])
    x = L.Add(name="film_add")([x, b])
    x = zoo.conv_bn(x, 6, "film_out")
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model([image, condition], L.Dense(2, name="head")(x))


def test_live_cut_through_a_film_block_warns():
    expected, actual, messages = _slim_live_plan(film(), "film_in_conv",
                                                 verify=True)
    _assert_dropped_with_warning(expected, actual, messages, "film_mul")


def test_live_cut_through_a_softmax_over_space_warns():
    x = inputs = keras.Input((8, 8, 3))
    x = zoo.conv_bn(x, 8, "sm_in")
    x = L.Softmax(axis=(1, 2), name="space_softmax")(x)
    x = zoo.conv_bn(x, 6, "sm_out")
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    expected, actual, messages = _slim_live_plan(model, "sm_in_conv")
    _assert_dropped_with_warning(expected, actual, messages, "space_softmax")
    _verify_catches(model, "sm_out_conv")


def test_live_cut_through_a_concatenation_along_space_warns():
    x = inputs = keras.Input((8, 8, 3))
    a = zoo.conv_bn(x, 8, "rows_a")
    b = zoo.conv_bn(x, 8, "rows_b")
    x = L.Concatenate(axis=1, name="rows_concat")([a, b])
    x = zoo.conv_bn(x, 6, "rows_out")
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    expected, actual, messages = _slim_live_plan(model, "rows_a_conv")
    _assert_dropped_with_warning(expected, actual, messages, "rows_concat")
    _verify_catches(model, "rows_out_conv")


def test_live_cut_of_constant_channels_stays_exact():
    """The counterpart: where the cut channels stay constant up to their
    consumers (a plain conv-BN chain), fold="exact" equals the zeroed copy
    and warns of nothing."""
    expected, actual, messages = _slim_live_plan(zoo.chain(), "a_conv",
                                                 verify=True)
    assert not [m for m in messages if "not one constant" in m], messages
    zoo.assert_close(expected, actual)


def test_op_with_a_per_channel_constant_freezes_its_group():
    """Issue 19, 6a: `x * vec + vec2` with NumPy vectors over the channels
    was taken as channelwise; a cut then failed inside Keras' broadcasting
    when the slim model was rebuilt. The op is a barrier, named."""
    x = inputs = keras.Input((8, 8, 3))
    x = zoo.conv_bn(x, 8, "vec_in")
    x = x * np.linspace(0.5, 1.5, 8).astype("float32") + np.arange(
        8, dtype="float32")
    x = zoo.conv_bn(x, 6, "vec_out")
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    with pytest.warns(UserWarning, match="per-channel constant"):
        groups = {g.name: g for g in keras_slim.channel_groups(model)}
    assert not groups["vec_in_conv"].prunable
    assert "per-channel constant" in groups["vec_in_conv"].frozen
    expected, actual, messages = _slim_live_plan(model, "vec_out_conv",
                                                 verify=True)
    zoo.assert_close(expected, actual)


def test_gamma_planners_keep_a_group_read_raw_beside_its_batchnorm():
    """Found by the fuzzer: a layer shared by a raw convolution output and
    a BatchNormalization output ties the two into one group. Zeroing the
    BN's gammas leaves the raw side live, so gamma does not measure the
    group: the gamma planners keep it whole (cutting it dropped live
    channels silently), and cut the plain conv-BN group beside it, exactly."""
    x = inputs = keras.Input((8, 8, 3))
    raw = L.Conv2D(4, 3, padding="same", activation="tanh", name="raw")(x)
    side = L.BatchNormalization(name="side_bn")(
        L.Conv2D(4, 1, name="side")(raw))
    shared = L.Conv2D(6, 1, name="shared")
    x = L.Add(name="sum")([shared(raw), shared(side)])
    x = zoo.conv_bn(x, 8, "plain")
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    groups = {g.name: g for g in keras_slim.channel_groups(model)}
    tied, = [g for g in groups.values() if "raw" in g.producers]
    assert "side" in tied.producers and tied.batchnorms == ["side_bn"]
    _prepare(model)
    for plan in (keras_slim.plan_global_gamma(model, ratio=0.5),
                 keras_slim.plan_uniform(model, ratio=0.5, score="gamma")):
        assert tied.name not in plan.kept
    expected, actual, messages = _slim_live_plan(model, "plain_conv",
                                                 verify=True)
    assert not [m for m in messages if "`" in m], messages  # none of ours
    zoo.assert_close(expected, actual)
