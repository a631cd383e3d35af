"""The rule registry: lookup by class hierarchy, and adding a layer type."""

import math
import warnings

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.core import rule_registry
from tests import zoo

L = keras.layers


class WideConv(L.Conv2D):
    """A user's subclass: cut like its parent."""


@keras.saving.register_keras_serializable(package="keras_slim_tests")
class ChannelScale(L.Layer):
    """A custom per-channel scale keras_slim does not know by default."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],),
                                     initializer="ones")

    def call(self, x):
        return x * self.scale


def _model():
    x = inputs = keras.Input((8, 8, 3))
    x = WideConv(8, 3, padding="same", use_bias=False, name="wide")(x)
    x = L.BatchNormalization(name="wide_bn")(x)
    x = ChannelScale(name="scale")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(4, 3, name="next")(x)
    return keras.Model(inputs, L.GlobalAveragePooling2D()(x))


def test_subclass_uses_parent_rule():
    rule_for = rule_registry.rule_for
    assert rule_for(WideConv(2, 1)) is rule_for(L.Conv2D(2, 1))


class _ScaleRule(rule_registry.Rule):
    axes = {"scale": {0: "in"}}

    def role(self, layer, call):
        return rule_registry.Role(rule_registry.CHANNELWISE)


def test_registering_one_rule_lets_pruning_through(recwarn):
    model = _model()
    groups = {g.name: g for g in keras_slim.channel_groups(model)}
    assert groups["wide"].frozen  # unknown layer: a barrier
    with keras_slim.rules.registered(ChannelScale, _ScaleRule):
        groups = {g.name: g for g in keras_slim.channel_groups(model)}
        assert groups["wide"].prunable
        model.get_layer("scale").scale.assign(np.arange(1, 9, dtype="float32"))
        rng = np.random.default_rng(0)
        zoo.randomize_batchnorms(model, rng)
        zoo.kill_coherently(model, rng)
        inputs = zoo.random_inputs(model, rng)
        slim = keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model))
        zoo.assert_close(zoo.outputs(model, inputs), zoo.outputs(slim, inputs))
        kept = keras.ops.convert_to_numpy(slim.get_layer("scale").scale)
        assert kept.shape == (4,) and np.all(np.isin(kept, np.arange(1, 9)))
    # Out of the block the layer is unknown again.
    groups = {g.name: g for g in keras_slim.channel_groups(model)}
    assert groups["wide"].frozen


def test_registered_restores_the_rule_it_replaced():
    dense_rule = rule_registry.rule_for(L.Dense(1))
    with keras_slim.rules.registered(L.Dense, _ScaleRule()) as rule:
        assert rule_registry.rule_for(L.Dense(1)) is rule
        assert isinstance(rule, _ScaleRule)
    assert rule_registry.rule_for(L.Dense(1)) is dense_rule
    with pytest.raises(TypeError, match="`rule`"):
        with keras_slim.rules.registered(L.Dense, object()):
            pass
    with pytest.raises(TypeError, match="`cls`"):
        with keras_slim.rules.registered("Dense", _ScaleRule):
            pass


def test_registering_a_class_twice_warns():
    with keras_slim.rules.registered(ChannelScale, _ScaleRule):
        with pytest.warns(UserWarning, match="ChannelScale already has a rule"):
            keras_slim.register_rule(ChannelScale)(_ScaleRule)
    # The block restores the state before it: no rule for ChannelScale.
    assert type(rule_registry.rule_for(ChannelScale())) is rule_registry.Rule


def test_extension_surface_is_one_namespace():
    for name in ("Rule", "Role", "CHANNELWISE", "register_rule", "registered"):
        assert getattr(keras_slim.rules, name) is getattr(rule_registry, name)
    assert keras_slim.register_rule is keras_slim.rules.register_rule


@keras.saving.register_keras_serializable(package="keras_slim_tests")
class BorderCrop(L.Layer):
    """Drops a one-pixel border: the one-pixel evaluation of constants
    cannot run it, so only its rule can say what constants do."""

    def call(self, x):
        return x[:, 1:-1, 1:-1, :]

    def compute_output_shape(self, shape):
        return (shape[0], shape[1] - 2, shape[2] - 2, shape[3])


class _BorderCropRule(rule_registry.Rule):
    def role(self, layer, call):
        return rule_registry.Role(rule_registry.CHANNELWISE)

    def pass_constants(self, layer, call, values, weights, dead):
        return values[0]

    def maps(self, layer):
        return rule_registry.MAPS_MOVED

    def passes_scale(self, layer, count):
        return count == 1


def _cropped():
    x = inputs = keras.Input((10, 10, 3))
    x = zoo.conv_bn(x, 8, "k0", padding="valid")
    x = BorderCrop(name="crop")(x)
    x = zoo.conv_bn(x, 6, "k1", padding="valid")
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x))


def test_folding_and_rescaling_ask_the_rule():
    """One rule is all a new layer type needs: constant propagation (a dead
    channel's beta crosses the crop and is folded into `k1_conv`) and
    rescaling (the scale of `k0_bn` passes the crop) ask it."""
    from keras_slim.sparsity.rescaling import rescale_gammas

    with keras_slim.rules.registered(BorderCrop, _BorderCropRule):
        model = _cropped()
        rng = np.random.default_rng(0)
        zoo.randomize_batchnorms(model, rng)
        zoo.kill_coherently(model, rng, kill_beta=False)
        inputs = zoo.random_inputs(model, rng)
        plan = keras_slim.plan_zero_gamma(model)
        assert "k0_conv" in plan.kept  # beta is known to reach k1_conv
        slim = keras_slim.slim_model(model, plan, fold="exact", verify=True)
        zoo.assert_close(zoo.outputs(model, inputs), zoo.outputs(slim, inputs))
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            scaled = rescale_gammas(model, 0.5, layers=["k0_bn"])
        gamma = keras.ops.convert_to_numpy(scaled.get_layer("k0_bn").gamma)
        np.testing.assert_allclose(
            gamma, 0.5 * keras.ops.convert_to_numpy(
                model.get_layer("k0_bn").gamma), rtol=1e-6)
        zoo.assert_close(zoo.outputs(model, inputs),
                         zoo.outputs(scaled, inputs))


class Mix(L.Layer):
    """A user's 1x1 channel mixer: a producer."""

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel",
                                      shape=(input_shape[-1], 6))

    def call(self, x):
        return keras.ops.matmul(x, self.kernel)


class _MixRule(rule_registry.Rule):
    axes = {"kernel": {0: "in", 1: "out"}}

    def role(self, layer, call):
        return rule_registry.Role(rule_registry.PRODUCER)


class _MixRuleWithMacs(_MixRule):
    def macs(self, layer, in_shape, out_shape):
        return math.prod(in_shape[1:]) * out_shape[-1]


def test_a_producer_rule_without_macs_is_warned_of_once():
    """Counted as 0 multiply-accumulates, a MAC budget would see it free."""
    x = inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="c1")(x)
    x = Mix(name="mix_a")(x)
    model = keras.Model(inputs, Mix(name="mix_b")(L.ReLU()(x)))
    convs = 4 * 4 * 3 * 8
    with keras_slim.rules.registered(Mix, _MixRule):
        with pytest.warns(UserWarning, match="for Mix defines no `macs`.*"
                          "`mix_a`") as caught:
            assert keras_slim.count_macs(model) == convs
        assert sum("no `macs`" in str(w.message) for w in caught) == 1
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert keras_slim.count_macs(model) == convs  # warned once
    with keras_slim.rules.registered(Mix, _MixRuleWithMacs):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            macs = keras_slim.count_macs(model)
    assert macs == convs + 16 * 8 * 6 + 16 * 6 * 6
