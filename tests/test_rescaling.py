import math
import warnings

import keras
import numpy as np
import pytest

from keras_slim.sparsity.rescaling import rescale_gammas
from tests import zoo

L = keras.layers


def quiet_rescale(model, alpha, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rescale_gammas(model, alpha, **kwargs)


def gamma_ratio(original, copy, name):
    a = keras.ops.convert_to_numpy(original.get_layer(name).gamma + 0)
    b = keras.ops.convert_to_numpy(copy.get_layer(name).gamma + 0)
    return b / a


@pytest.mark.filterwarnings("ignore:keras_slim does not know")
@pytest.mark.parametrize("name", sorted(zoo.FACTORIES))
def test_rescaling_preserves_the_function_and_undoes(name):
    model = zoo.FACTORIES[name]()
    rng = np.random.default_rng(0)
    zoo.randomize_batchnorms(model, rng)
    before = [w.copy() for w in model.get_weights()]
    inputs = zoo.random_inputs(model, rng)
    expected = zoo.outputs(model, inputs)
    scaled = quiet_rescale(model, 0.01)
    zoo.assert_close(expected, zoo.outputs(scaled, inputs), rtol=1e-3)
    for a, b in zip(before, model.get_weights()):  # original untouched
        np.testing.assert_array_equal(a, b)
    restored = quiet_rescale(scaled, 100.0)
    for a, b in zip(before, restored.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_chain_is_rescaled_everywhere():
    model = zoo.chain()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left alone
        # Keras on PyTorch warns about NumPy 2's `__array__(copy=)`.
        warnings.simplefilter("ignore", DeprecationWarning)
        scaled = rescale_gammas(model, 0.1)
    np.testing.assert_allclose(gamma_ratio(model, scaled, "a_bn"), 0.1, rtol=1e-6)
    np.testing.assert_allclose(gamma_ratio(model, scaled, "b_bn"), 0.1, rtol=1e-6)
    def kernel(model, name):
        return keras.ops.convert_to_numpy(model.get_layer(name).kernel + 0)

    np.testing.assert_allclose(kernel(scaled, "b_conv"), kernel(model, "b_conv") * 10,
                               rtol=1e-6)
    np.testing.assert_allclose(kernel(scaled, "head"), kernel(model, "head") * 10,
                               rtol=1e-6)
    np.testing.assert_array_equal(kernel(scaled, "a_conv"), kernel(model, "a_conv"))


def test_relu6_identity_shortcut_and_output_are_left_alone():
    x = inputs = keras.Input((8, 8, 3))
    x = zoo.conv_bn(x, 8, "six", act=None)
    x = L.ReLU(6.0)(x)
    y = zoo.conv_bn(x, 8, "branch", act=None)
    x = L.Add(name="identity_add")([x, y])  # x is not scaled
    x = zoo.conv_bn(x, 8, "ok")
    x = zoo.conv_bn(x, 4, "last", act=None)  # a model output
    model = keras.Model(inputs, x)
    with pytest.warns(UserWarning) as record:
        scaled = rescale_gammas(model, 0.5)
    record = [w for w in record if issubclass(w.category, UserWarning)]
    assert len(record) == 1
    message = str(record[0].message)
    for name in ("six_bn", "branch_bn", "last_bn"):
        assert f"`{name}`" in message
    assert "`ok_bn`" not in message
    np.testing.assert_allclose(gamma_ratio(model, scaled, "ok_bn"), 0.5, rtol=1e-6)
    np.testing.assert_allclose(gamma_ratio(model, scaled, "six_bn"), 1.0)
    np.testing.assert_allclose(gamma_ratio(model, scaled, "branch_bn"), 1.0)


def test_sums_of_scaled_branches_and_shared_layers_are_rescaled():
    model = zoo.residual()
    scaled = quiet_rescale(model, 0.1)
    # Both branches of the second block are scaled, so their sum is too.
    for name in ("r2s_bn", "r2b_bn", "r2a_bn", "r1a_bn"):
        np.testing.assert_allclose(gamma_ratio(model, scaled, name), 0.1, rtol=1e-6)
    shared = zoo.shared()
    scaled = quiet_rescale(shared, 0.1)
    np.testing.assert_allclose(gamma_ratio(shared, scaled, "shared_bn"), 0.1,
                               rtol=1e-6)


def test_named_layers_only():
    model = zoo.chain()
    scaled = rescale_gammas(model, 0.1, layers=["b_bn"])
    np.testing.assert_allclose(gamma_ratio(model, scaled, "a_bn"), 1.0)
    np.testing.assert_allclose(gamma_ratio(model, scaled, "b_bn"), 0.1, rtol=1e-6)


@pytest.mark.parametrize(
    "alpha, error",
    [(0.0, ValueError), (-0.1, ValueError), (math.nan, ValueError),
     (math.inf, ValueError), ("0.1", TypeError)],
)
def test_bad_alpha(alpha, error):
    with pytest.raises(error, match="`alpha`"):
        rescale_gammas(zoo.chain(), alpha)


def test_model_without_batchnorm():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(2)(inputs))
    with pytest.raises(ValueError, match="no BatchNormalization"):
        rescale_gammas(model, 0.1)


def test_rescale_slim_and_undo_keeps_the_function():
    from keras_slim.core.surgery import slim_model
    from keras_slim.planners.criteria import plan_zero_gamma

    model = zoo.chain(padding="valid")
    rng = np.random.default_rng(2)
    zoo.randomize_batchnorms(model, rng)
    scaled = rescale_gammas(model, 0.05)
    zoo.kill_coherently(scaled, rng, kill_beta=False)  # ISTA's zeros
    inputs = zoo.random_inputs(model, rng)
    expected = zoo.outputs(scaled, inputs)
    slim = slim_model(scaled, plan_zero_gamma(scaled))
    assert slim.count_params() < scaled.count_params()
    restored = rescale_gammas(slim, 20.0)
    zoo.assert_close(expected, zoo.outputs(restored, inputs), rtol=1e-3)
    np.testing.assert_allclose(
        gamma_ratio(slim, restored, "b_bn"), 20.0, rtol=1e-5
    )


def _penalized_net(kernel_regularizer, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, use_bias=False, name="conv1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(5, 3, kernel_regularizer=kernel_regularizer, name="conv2")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def _penalty(model):
    return float(sum(keras.ops.convert_to_numpy(v) for v in model.losses))


@pytest.mark.parametrize("regularizer", [
    keras.regularizers.L2(0.01), keras.regularizers.L1(0.01),
    keras.regularizers.L1L2(l1=0.01, l2=0.02)])
def test_weight_penalties_keep_their_value(regularizer, tmp_path):
    """`conv2`'s kernel grows by 100: its L1 / L2 coefficient shrinks by 100
    / 10,000, so the objective is the one of the original (also after a
    save and load, and undone by the inverse rescaling)."""
    model = _penalized_net(regularizer)
    before = _penalty(model)
    assert before > 0
    with warnings.catch_warnings():
        warnings.filterwarnings("error", "rescale_gammas")  # none unscaled
        scaled = rescale_gammas(model, 0.01)
    kernel = keras.ops.convert_to_numpy(scaled.get_layer("conv2").kernel)
    original = keras.ops.convert_to_numpy(model.get_layer("conv2").kernel)
    np.testing.assert_allclose(kernel, original * 100, rtol=1e-6)
    assert _penalty(scaled) == pytest.approx(before, rel=1e-4)
    assert _penalty(model) == pytest.approx(before, rel=1e-6)  # untouched
    path = str(tmp_path / "scaled.keras")
    scaled.save(path)
    assert _penalty(keras.saving.load_model(path)) == pytest.approx(
        before, rel=1e-4)
    back = rescale_gammas(scaled, 100.0)
    config = back.get_layer("conv2").get_config()["kernel_regularizer"]
    assert config["config"] == pytest.approx(regularizer.get_config())


@keras.saving.register_keras_serializable(package="keras_slim_tests")
class _Custom(keras.regularizers.Regularizer):
    def __call__(self, x):
        return 0.01 * keras.ops.sum(keras.ops.abs(x) ** 3)

    def get_config(self):
        return {}


def test_an_unknown_weight_penalty_is_named():
    model = _penalized_net(_Custom())
    with pytest.warns(UserWarning, match="could not rescale.*`conv2`"):
        rescale_gammas(model, 0.01)
