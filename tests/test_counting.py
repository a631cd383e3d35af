"""Parameter and MAC counts against hand counts and published numbers."""

import keras
import pytest

import keras_slim
from tests import zoo

L = keras.layers


def test_hand_counted_macs():
    x = inputs = keras.Input((10, 10, 3))
    x = L.Conv2D(8, 3, padding="valid", name="c")(x)  # 8*8 * 3*3*3 * 8
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)  # 8*8*16*9
    x = L.SeparableConv2D(4, 3, padding="valid")(x)  # 6*6*16*(9+4)
    x = L.Conv2D(4, 1, groups=2)(x)  # 6*6 * 2 * 4
    x = L.Conv2DTranspose(2, 3, strides=2)(x)  # 6*6 * 9 * 4 * 2
    x = L.Flatten()(x)
    out = L.Dense(5)(x)
    model = keras.Model(inputs, out)
    flat = x.shape[-1]
    expected = (64 * 27 * 8 + 64 * 16 * 9 + 36 * 16 * 13 + 36 * 2 * 4
                + 36 * 9 * 8 + flat * 5)
    assert keras_slim.count_macs(model) == expected
    assert keras_slim.count_params(model) == model.count_params()


def test_shared_layers_count_each_call():
    model = zoo.shared()
    conv_macs = 8 * 8 * 27 * 8 + 8 * 8 * 8 * 6
    assert keras_slim.count_macs(model) == 2 * conv_macs


@pytest.mark.parametrize("name, low, high", [
    ("ResNet50", 3.8e9, 4.2e9),
    ("MobileNetV2", 2.9e8, 3.1e8),
])
def test_published_macs(name, low, high):
    model = getattr(keras.applications, name)(weights=None)
    assert low <= keras_slim.count_macs(model) <= high


def test_macs_need_a_fixed_input_size():
    x = inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, L.Conv2D(4, 3)(x))
    with pytest.raises(ValueError, match="fixed input size"):
        keras_slim.count_macs(model)


def test_slimming_reduces_counts():
    model = zoo.residual()
    import numpy as np
    rng = np.random.default_rng(0)
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_coherently(model, rng)
    slim = keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model))
    assert keras_slim.count_macs(slim) < keras_slim.count_macs(model)
    assert keras_slim.count_params(slim) < keras_slim.count_params(model)
