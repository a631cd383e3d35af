"""The main invariant: kill channels in the original, slim, outputs match."""

import numpy as np
import pytest

import keras_slim
from tests import zoo


def _slim_and_compare(model, seed, kill, kill_beta=True):
    rng = np.random.default_rng(seed)
    zoo.randomize_batchnorms(model, rng)
    kill(model, rng, kill_beta=kill_beta)
    inputs = zoo.random_inputs(model, rng)
    before = zoo.outputs(model, inputs)
    original_weights = [w.copy() for w in model.get_weights()]
    plan = keras_slim.plan_zero_gamma(model)
    slim = keras_slim.slim_model(model, plan)
    zoo.assert_close(before, zoo.outputs(slim, inputs))
    # The original model is untouched.
    for a, b in zip(original_weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    zoo.assert_close(before, zoo.outputs(model, inputs), rtol=0)
    return plan, slim


@pytest.mark.parametrize("name", sorted(zoo.FACTORIES))
def test_random_half_dead_slims_exactly(name):
    model = zoo.FACTORIES[name]()
    plan, slim = _slim_and_compare(model, 0, zoo.kill_random_half)
    if plan.kept:
        assert slim.count_params() < model.count_params()
    assert [l.name for l in slim.layers] == [l.name for l in model.layers]


@pytest.mark.parametrize("name", sorted(zoo.FACTORIES))
def test_coherently_dead_channels_are_removed(name):
    model = zoo.FACTORIES[name]()
    prunable = [g for g in keras_slim.channel_groups(model)
                if g.prunable and g.batchnorms]
    plan, slim = _slim_and_compare(model, 1, zoo.kill_coherently)
    if prunable:
        assert plan.kept, "every group lost half its channels in all BNs"
        assert slim.count_params() < model.count_params()
    for group in prunable:
        if group.name in plan.kept:
            assert plan.kept[group.name].size == group.width - group.width // 2


VALID = {
    "valid_padding": zoo.valid_padding,
    "chain_valid": lambda: zoo.chain(padding="valid"),
    "flatten_valid": lambda: zoo.flatten_dense(padding="valid"),
}


@pytest.mark.parametrize("name", sorted(VALID))
@pytest.mark.parametrize("kill", ["coherent", "random_half"])
def test_constant_outputs_fold_exactly_with_valid_padding(name, kill):
    """Gamma zero, beta not: the cut channels output the constant act(beta),
    folded into the next bias or BN mean; exact without padding."""
    model = VALID[name]()
    killer = {"coherent": zoo.kill_coherently,
              "random_half": zoo.kill_random_half}[kill]
    plan, slim = _slim_and_compare(model, 2, killer, kill_beta=False)
    if kill == "coherent":
        assert plan.kept
        assert slim.count_params() < model.count_params()


def test_folding_creates_a_bias_or_moves_the_bn_mean():
    model = zoo.valid_padding()
    plan, slim = _slim_and_compare(model, 3, zoo.kill_coherently,
                                   kill_beta=False)
    # v3_nobias has no bias and feeds a ReLU, not a BN: a bias is created.
    assert slim.get_layer("v3_nobias").use_bias
    # v4_conv has no bias but feeds v4_bn only: the BN mean absorbs it.
    assert not slim.get_layer("v4_conv").use_bias
    assert not slim.get_layer("v0_conv").use_bias


def test_without_folding_the_constants_are_lost():
    model = zoo.valid_padding()
    rng = np.random.default_rng(4)
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_coherently(model, rng, kill_beta=False)
    inputs = zoo.random_inputs(model, rng)
    plan = keras_slim.plan_zero_gamma(model)
    slim = keras_slim.slim_model(model, plan, fold_constants=False)
    before, after = zoo.outputs(model, inputs), zoo.outputs(slim, inputs)
    assert not np.allclose(before[0], after[0], rtol=1e-3)
