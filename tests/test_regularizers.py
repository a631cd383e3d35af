import math

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.sparsity.regularizers import GammaL1, add_gamma_regularizer
from tests import zoo

L = keras.layers


def _gammas(model):
    return {
        bn.name: keras.ops.convert_to_numpy(bn.gamma + 0)
        for bn in zoo.batchnorms(model)
    }


def test_gamma_l1_value_is_s_times_l1_norm():
    x = np.array([[1.5, -2.0], [0.0, 0.25]], dtype="float32")
    value = keras.ops.convert_to_numpy(GammaL1(0.1)(keras.ops.convert_to_tensor(x)))
    assert value == pytest.approx(0.1 * 3.75)


@pytest.mark.tensorflow
def test_gamma_l1_subgradient_is_s_sign():
    import tensorflow as tf

    gamma = tf.Variable([0.5, -0.25, 2.0])
    with tf.GradientTape() as tape:
        penalty = GammaL1(1e-3)(gamma)
    grad = tape.gradient(penalty, gamma).numpy()
    np.testing.assert_allclose(grad, 1e-3 * np.sign([0.5, -0.25, 2.0]))


def test_gamma_l1_config_and_registration():
    reg = GammaL1(3e-5)
    config = reg.get_config()
    assert set(config) == {"s"}
    assert GammaL1(**config).s == reg.s
    serialized = keras.saving.serialize_keras_object(reg)
    assert serialized["registered_name"] == "keras_slim>GammaL1"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, GammaL1) and restored.s == 3e-5
    assert isinstance(keras.regularizers.get(serialized), GammaL1)


@pytest.mark.parametrize(
    "s, error", [(-1e-4, ValueError), (math.nan, ValueError),
                 (math.inf, ValueError), ("1e-4", TypeError), (True, TypeError)]
)
def test_gamma_l1_rejects_bad_s(s, error):
    with pytest.raises(error, match="`s`"):
        GammaL1(s)


@pytest.mark.parametrize("name", ["chain", "residual", "nested", "sequential"])
def test_add_gamma_regularizer_returns_a_regularized_copy(name):
    model = zoo.FACTORIES[name]()
    rng = np.random.default_rng(0)
    zoo.randomize_batchnorms(model, rng)
    before = [w.copy() for w in model.get_weights()]
    copy = add_gamma_regularizer(model, GammaL1(1e-2))
    assert copy is not model
    # The original is untouched.
    assert not model.losses
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert all(bn.gamma_regularizer is None for bn in zoo.batchnorms(model))
    # Same weights, same function.
    for a, b in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    inputs = zoo.random_inputs(model, rng)
    zoo.assert_close(zoo.outputs(model, inputs), zoo.outputs(copy, inputs))
    # The penalty is s * sum |gamma| over every BN.
    expected = sum(1e-2 * np.abs(g).sum() for g in _gammas(copy).values())
    total = sum(float(keras.ops.convert_to_numpy(x)) for x in copy.losses)
    assert total == pytest.approx(expected, rel=1e-5)


def test_add_gamma_regularizer_named_layers_and_shorthand():
    model = zoo.residual()
    copy = add_gamma_regularizer(model, 1e-3, layers=["r1a_bn", "r2b_bn"])
    regularized = {
        bn.name for bn in zoo.batchnorms(copy) if bn.gamma.regularizer is not None
    }
    assert regularized == {"r1a_bn", "r2b_bn"}
    assert isinstance(copy.get_layer("r1a_bn").gamma_regularizer, GammaL1)
    assert copy.get_layer("r1a_bn").gamma_regularizer.s == 1e-3
    assert len(copy.losses) == 2


def test_add_gamma_regularizer_none_removes_the_penalty():
    # A slimmed or re-initialised model keeps its BN configs, penalty
    # included; `None` gives a copy without it (for fine-tuning, Scratch-E/B).
    model = zoo.chain()
    regularized = add_gamma_regularizer(model, GammaL1(1e-2))
    slim = keras_slim.slim_model(
        regularized, keras_slim.plan_uniform(regularized, 0.5, score="random", seed=0))
    assert slim.losses
    plain = add_gamma_regularizer(slim, None)
    assert not plain.losses
    assert all(bn.gamma_regularizer is None for bn in zoo.batchnorms(plain))
    assert all(bn.gamma_regularizer is None
               for bn in zoo.batchnorms(keras_slim.reinitialize(plain, seed=0)))
    assert slim.losses  # the input is untouched
    for a, b in zip(slim.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_regularized_copy_survives_saving(tmp_path):
    copy = add_gamma_regularizer(zoo.chain(), GammaL1(2e-4))
    path = str(tmp_path / "reg.keras")
    copy.save(path)
    loaded = keras.models.load_model(path)
    reg = loaded.get_layer("a_bn").gamma_regularizer
    assert isinstance(reg, GammaL1) and reg.s == 2e-4
    assert len(loaded.losses) == 2


def test_training_with_gamma_l1_shrinks_gammas_more():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 12, 12, 3)).astype("float32")
    y = rng.integers(0, 5, 64)
    norms = []
    for s in (0.0, 0.5):
        keras.utils.set_random_seed(3)
        model = add_gamma_regularizer(zoo.chain(), GammaL1(s))
        model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=3, batch_size=16, verbose=0, shuffle=False)
        norms.append(sum(np.abs(g).sum() for g in _gammas(model).values()))
    # 12 SGD steps of lr * s * sign(gamma) on 20 gammas: about 3.6 in all.
    assert norms[0] - norms[1] > 0.5 * 12 * 0.05 * 0.5 * 20


def test_add_gamma_regularizer_bad_input():
    inputs = keras.Input((4,))
    plain = keras.Model(inputs, L.Dense(2, name="fc")(inputs))
    with pytest.raises(ValueError, match="no BatchNormalization"):
        add_gamma_regularizer(plain, GammaL1())
    with pytest.warns(UserWarning, match="fc"):
        copy = add_gamma_regularizer(plain, GammaL1(), layers=["fc"])
    assert not copy.losses
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        add_gamma_regularizer(zoo.chain(), GammaL1(), layers=["nope"])
    with pytest.raises(TypeError, match="`layers`"):
        add_gamma_regularizer(zoo.chain(), GammaL1(), layers="a_bn")
    with pytest.raises(TypeError, match="`regularizer`"):
        add_gamma_regularizer(zoo.chain(), object())
    with pytest.raises(ValueError, match="`s`"):
        add_gamma_regularizer(zoo.chain(), -1.0)
    with pytest.raises(TypeError, match="`model`"):
        add_gamma_regularizer("not a model", GammaL1())


# PyTorch refuses integer variables that require gradients: no such model.
@pytest.mark.backend("tensorflow", "jax")
def test_add_gamma_regularizer_rejects_integer_gamma():
    inputs = keras.Input((4,), dtype="int32")
    out = L.BatchNormalization(dtype="int32", name="int_bn")(inputs)
    model = keras.Model(inputs, out)
    with pytest.raises(TypeError, match="int_bn.*floating-point"):
        add_gamma_regularizer(model, GammaL1())
