import keras
import numpy as np
import pytest

from keras_slim.sparsity.penalties import memory_costs, penalty_weights
from tests import zoo

L = keras.layers


def chain():
    x = inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, name="c1")(x)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(6, 3, name="c2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU()(x)
    x = L.Flatten()(x)
    return keras.Model(inputs, L.Dense(5, name="head")(x))


def bns(model, *names):
    return [model.get_layer(n) for n in names]


def test_memory_cost_by_hand():
    model = chain()
    costs = memory_costs(model, bns(model, "bn1", "bn2"))
    # bn1: own filter 3*3*1, slice of c2 3*3*6, feature map 6*6.
    np.testing.assert_allclose(costs["bn1"], np.full(4, 9 + 54 + 36))
    # bn2: own filter 3*3*4, 16 positions * 5 units of the Dense after
    # Flatten, feature map 4*4.
    np.testing.assert_allclose(costs["bn2"], np.full(6, 36 + 80 + 16))


def test_memory_weights_have_mean_one():
    model = chain()
    weights = penalty_weights(model, bns(model, "bn1", "bn2"), "memory")
    mean = (4 * 99 + 6 * 132) / 10
    np.testing.assert_allclose(weights["bn1"], 99 / mean)
    np.testing.assert_allclose(weights["bn2"], 132 / mean)
    assert np.mean(np.concatenate(list(weights.values()))) == pytest.approx(1.0)


def test_residual_group_counts_every_producer_and_consumer():
    model = zoo.residual()
    costs = memory_costs(model, zoo.batchnorms(model))
    # stem, r1b share one group (added): producers stem_conv and r1b_conv
    # (3*3*3 + 3*3*8), consumers r1a_conv, r2s_conv, r2a_conv
    # (3*3*8 + 1*1*16 + 3*3*16), feature map 16*16.
    expected = 27 + 72 + 72 + 16 + 144 + 256
    np.testing.assert_allclose(costs["stem_bn"], expected)
    np.testing.assert_allclose(costs["r1b_bn"], expected)
    # r1a: 3*3*8 in, 3*3*8 out, 16*16.
    np.testing.assert_allclose(costs["r1a_bn"], 72 + 72 + 256)


def test_uniform_and_dict_penalties():
    model = chain()
    layers = bns(model, "bn1", "bn2")
    uniform = penalty_weights(model, layers, "uniform")
    assert all(np.all(w == 1) for w in uniform.values())
    custom = penalty_weights(model, layers, {"bn1": 2.0, "bn2": [0, 1, 2, 3, 4, 5]})
    np.testing.assert_array_equal(custom["bn1"], np.full(4, 2.0))
    np.testing.assert_array_equal(custom["bn2"], np.arange(6))
    with pytest.raises(ValueError, match="unknown names"):
        penalty_weights(model, layers, {"c1": 1.0})
    with pytest.raises(ValueError, match="penalty\\['bn1'\\]"):
        penalty_weights(model, layers, {"bn1": -1.0})
    with pytest.raises(ValueError, match="penalty\\['bn2'\\]"):
        penalty_weights(model, layers, {"bn2": [1.0, 2.0]})
    with pytest.raises(TypeError, match="`penalty`"):
        penalty_weights(model, layers, 3)


@pytest.mark.filterwarnings("ignore:keras_slim does not know")
@pytest.mark.parametrize("name", sorted(zoo.FACTORIES))
def test_memory_weights_on_the_zoo(name):
    model = zoo.FACTORIES[name]()
    layers = [bn for bn in zoo.batchnorms(model) if bn.scale]
    weights = penalty_weights(model, layers, "memory")
    assert set(weights) == {bn.name for bn in layers}
    for bn in layers:
        assert weights[bn.name].shape == (bn.gamma.shape[0],)
        assert np.all(weights[bn.name] > 0)


def test_depthwise_kernels_count_for_the_channels_they_carry():
    x = inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name="c")(x)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU()(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(6, 1, name="pw")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2)(x))
    costs = memory_costs(model, bns(model, "bn1", "bn2"))
    # Group of c: its filter 3*3*3, the depthwise 3*3*2 per channel, the
    # two positions of each channel in pw, 2*6 weights.
    kernels = 27 + 18 + 12
    np.testing.assert_allclose(costs["bn1"], kernels + 36)
    np.testing.assert_allclose(costs["bn2"], kernels + 16)
    assert costs["bn2"].shape == (8,)
