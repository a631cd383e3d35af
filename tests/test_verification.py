"""`slim_model(..., verify=True)`: catches a wrong rule, passes right ones."""

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.core import rule_registry
from tests import zoo

L = keras.layers


@keras.saving.register_keras_serializable(package="keras_slim_tests")
class ChannelRoll(L.Layer):
    """Mixes channels: channel c takes the value of channel c - 1."""

    def call(self, x):
        return keras.ops.roll(x, 1, axis=-1)


class _WrongRule(rule_registry.Rule):
    """Claims the roll keeps channels apart: a wrong rule."""

    constants = "identity"

    def role(self, layer, call):
        return rule_registry.Role(rule_registry.CHANNELWISE)


@pytest.fixture
def wrong_rule():
    with keras_slim.rules.registered(ChannelRoll, _WrongRule):
        yield


def rolled():
    x = inputs = keras.Input((8, 8, 3))
    x = zoo.conv_bn(x, 8, "r0")
    x = ChannelRoll(name="roll")(x)
    x = zoo.conv_bn(x, 6, "r1")
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x))


def test_verify_names_the_layer_of_a_wrong_rule(wrong_rule):
    model = rolled()
    rng = np.random.default_rng(0)
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_coherently(model, rng)
    plan = keras_slim.plan_zero_gamma(model)
    assert "r0_conv" in plan.kept  # the wrong rule lets the group be cut
    keras_slim.slim_model(model, plan)  # silently wrong without verify
    with pytest.raises(ValueError, match="layer `roll` \\(ChannelRoll\\)"):
        keras_slim.slim_model(model, plan, verify=True)


@pytest.mark.filterwarnings("ignore:keras_slim does not know")
def test_without_a_rule_the_layer_is_a_barrier_and_verify_passes():
    model = rolled()
    rng = np.random.default_rng(0)
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_coherently(model, rng)
    plan = keras_slim.plan_zero_gamma(model)
    assert "r0_conv" not in plan.kept and "r1_conv" in plan.kept
    keras_slim.slim_model(model, plan, verify=True)


@pytest.mark.parametrize("name", sorted(zoo.FACTORIES))
@pytest.mark.filterwarnings("ignore:keras_slim does not know")
@pytest.mark.filterwarnings("ignore:fold='exact'")
def test_verify_passes_on_correct_models(name):
    """Dead channels (any constant they still output is folded) and an L1
    plan whose cut channels are dropped."""
    model = zoo.FACTORIES[name]()
    rng = np.random.default_rng(1)
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_coherently(model, rng)
    keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model),
                          fold="exact", verify=True)
    keras_slim.slim_model(model, keras_slim.plan_l1_norm(model, 0.3),
                          fold="none", verify=True)


def test_verify_reports_the_bias_fold_at_the_borders():
    model = zoo.chain()
    rng = np.random.default_rng(2)
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_coherently(model, rng, kill_beta=False)
    plan = keras_slim.plan_zero_gamma(model)
    with pytest.raises(ValueError, match="layer `b_bn`"):
        keras_slim.slim_model(model, plan, fold="bias", verify=True)
    keras_slim.slim_model(model, plan, fold="bias", verify=True,
                          verify_tolerance=1.0)
    with pytest.raises(ValueError, match="verify_tolerance"):
        keras_slim.slim_model(model, plan, verify=True, verify_tolerance=-1)
