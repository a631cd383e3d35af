"""The main invariant: kill channels in the original, slim, outputs match."""

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.core import graph as graph_lib
from tests import zoo


def _slim_and_compare(model, seed, kill, kill_beta=True):
    rng = np.random.default_rng(seed)
    zoo.randomize_batchnorms(model, rng)
    kill(model, rng, kill_beta=kill_beta)
    inputs = zoo.random_inputs(model, rng)
    before = zoo.outputs(model, inputs)
    original_weights = [w.copy() for w in model.get_weights()]
    plan = keras_slim.plan_zero_gamma(model)
    slim = keras_slim.slim_model(model, plan, fold="exact")
    zoo.assert_close(before, zoo.outputs(slim, inputs))
    # The original model is untouched.
    for a, b in zip(original_weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    zoo.assert_close(before, zoo.outputs(model, inputs), rtol=0)
    return plan, slim


def _has_prunable_scaled_bn(model):
    layers = {l.name: l for l in graph_lib.leaf_layers(model)}
    return any(
        g.prunable and g.batchnorms
        and all(layers[b].scale for b in g.batchnorms)
        for g in keras_slim.channel_groups(model)
    )


def _input_width(model, name):
    layer = {l.name: l for l in graph_lib.leaf_layers(model)}[name]
    return layer._inbound_nodes[0].input_tensors[0].shape[-1]


def test_every_zoo_model_has_a_prunable_scaled_group():
    """So that the shrink assertions below hold for every zoo model."""
    assert all(_has_prunable_scaled_bn(f()) for f in zoo.FACTORIES.values())


def _dead_everywhere(model):
    """Group name -> channels whose gamma is zero in every BN of the group
    (what `plan_zero_gamma` must cut), computed from the weights alone."""
    layers = {l.name: l for l in graph_lib.leaf_layers(model)}
    dead = {}
    for group in keras_slim.channel_groups(model):
        if not group.prunable or not group.batchnorms:
            continue
        zero = np.ones(group.width, bool)
        for bn, matrix in group.bn_positions.items():
            gamma = keras.ops.convert_to_numpy(layers[bn].gamma)
            zero &= np.all(gamma[matrix] == 0, axis=1)
        if zero.any():
            dead[group.name] = np.flatnonzero(zero)
    return dead


@pytest.mark.parametrize("name", sorted(zoo.FACTORIES))
def test_random_half_dead_slims_exactly(name):
    """Half of every BN zeroed at random: a channel goes when it is dead in
    every BN of its group; a model shrinks whenever one is."""
    model = zoo.FACTORIES[name]()
    plan, slim = _slim_and_compare(model, 0, zoo.kill_random_half)
    dead = _dead_everywhere(model)
    assert set(plan.kept) == set(dead)
    for group_name, channels in dead.items():
        assert not set(plan.kept[group_name]) & set(channels)
    if dead:
        assert keras_slim.count_params(slim) < keras_slim.count_params(model)
    assert [l.name for l in slim.layers] == [l.name for l in model.layers]


def test_random_half_kills_whole_channels_in_most_zoo_models():
    """So that the test above is not vacuous: only models whose every
    prunable group spans several BNs may keep all their channels."""
    spared = []
    for name, factory in sorted(zoo.FACTORIES.items()):
        model = factory()
        rng = np.random.default_rng(0)
        zoo.randomize_batchnorms(model, rng)
        zoo.kill_random_half(model, rng)
        if not _dead_everywhere(model):
            spared.append(name)
    assert spared == ["depthwise"]


@pytest.mark.parametrize("name", sorted(zoo.FACTORIES))
def test_coherently_dead_channels_are_removed(name):
    """Every group scaled by a BN loses exactly its dead half, and every
    layer on its way (BNs, pass-through layers, readers) is sliced."""
    model = zoo.FACTORIES[name]()
    prunable = [g for g in keras_slim.channel_groups(model)
                if g.prunable and g.batchnorms]
    plan, slim = _slim_and_compare(model, 1, zoo.kill_coherently)
    assert prunable, f"{name} has no prunable group with a BN"
    assert keras_slim.count_params(slim) < keras_slim.count_params(model)
    names = {l.name for l in graph_lib.leaf_layers(slim)}
    for group in prunable:
        assert group.name in plan.kept
        assert plan.kept[group.name].size == group.width - group.width // 2
        for layer in group.batchnorms + group.members + group.consumers:
            if layer not in names:
                continue  # a stateless op (`x + 3.0`) has no input shape
            assert _input_width(slim, layer) < _input_width(model, layer), (
                f"`{layer}` was not sliced")


def test_pass_through_layers_are_all_sliced():
    model = zoo.pass_through()
    plan, slim = _slim_and_compare(model, 5, zoo.kill_coherently,
                                   kill_beta=False)
    group = keras_slim.channel_groups(model)[1]
    assert group.name == "p0_conv" and len(group.members) == 11
    # Half the channels cut, plus the carrier of the exact fold.
    width = len(keras_slim.applied_plan(model, plan, "exact").kept["p0_conv"])
    assert width == 5
    for layer in group.members:
        assert _input_width(slim, layer) == width < _input_width(model, layer)
    prelu = next(n for n in group.members if n.startswith("p_re_lu"))
    assert slim.get_layer(prelu).alpha.shape[-1] == width


def test_softmax_over_space_is_sliced():
    """Its constants are not followed, so an L1 plan cuts through it; the
    cut channels are dropped and verify compares with them zeroed."""
    model = zoo.softmax_over_space()
    rng = np.random.default_rng(6)
    zoo.randomize_batchnorms(model, rng)
    plan = keras_slim.plan_l1_norm(model, 0.5)
    assert "sm0_conv" in plan.kept
    slim = keras_slim.slim_model(model, plan, fold="none", verify=True)
    assert _input_width(slim, "row_softmax") == 4
    assert _input_width(model, "row_softmax") == 8


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
    assert plan.kept
    assert keras_slim.count_params(slim) < keras_slim.count_params(model)


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
    slim = keras_slim.slim_model(model, plan, fold="none")
    before, after = zoo.outputs(model, inputs), zoo.outputs(slim, inputs)
    assert not np.allclose(before[0], after[0], rtol=1e-3)


def _quantized_chain(*quantized):
    x = inputs = keras.Input((6,))
    x = keras.layers.Dense(6, name="d0")(x)
    x = keras.layers.Dense(8, name="d1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    bn = model.get_layer("bn1")
    bn.gamma.assign(np.float32([0, 1] * 4))
    bn.beta.assign(np.full(8, 0.5, "float32"))  # a constant to fold
    for name in quantized:
        model.get_layer(name).quantize("int8")
    return model


@pytest.mark.parametrize("name", ["d1", "head"])
def test_a_quantized_layer_whose_channels_are_cut_is_refused(name):
    """int8 kernels and their scales are not what the rules slice and fold
    (a quantized head took the fold unscaled: wrong by 83)."""
    model = _quantized_chain(name)
    plan = keras_slim.plan_zero_gamma(model)
    with pytest.raises(ValueError, match=f"`{name}` \\(Dense\\) is quantized "
                       "\\(int8\\).*Prune before quantizing"):
        keras_slim.slim_model(model, plan)


def test_a_quantized_layer_outside_the_cut_is_kept():
    model = _quantized_chain("d0")
    plan = keras_slim.plan_zero_gamma(model)
    slim = keras_slim.slim_model(model, plan, verify=True)
    assert slim.get_layer("d1").units == 4
    assert slim.get_layer("d0").quantization_mode == "int8"
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(slim(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
        rtol=1e-5, atol=1e-5)
