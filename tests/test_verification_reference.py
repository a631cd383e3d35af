"""`verify=True` checks against the user's own model (cut gammas at zero),
changes neither model, and measures its error as promised."""

import importlib

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.core import propagation, verification
from tests import zoo

L = keras.layers
surgery = importlib.import_module("keras_slim.core.surgery")


def snapshot(model):
    return {id(v): np.array(keras.ops.convert_to_numpy(v))
            for v in model.variables}


def assert_unchanged(model, before):
    after = snapshot(model)
    assert after.keys() == before.keys()
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value)


def gamma_zeroed_outputs(model, plan, x):
    """The reference, built by hand: a copy of `model` with the gammas of
    the channels `plan` cuts at zero, predicted in inference mode."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for group in keras_slim.channel_groups(model):
        if group.name not in plan.kept:
            continue
        cut = np.setdiff1d(np.arange(group.width), plan.kept[group.name])
        for name, matrix in group.bn_positions.items():
            bn = copy.get_layer(name)
            gamma = keras.ops.convert_to_numpy(bn.gamma).copy()
            gamma[matrix[cut].ravel()] = 0
            bn.gamma.assign(gamma)
    return keras.ops.convert_to_numpy(copy(x, training=False))


def stochastic():
    """BN called with training=True, MC dropout, random augmentation."""
    x = inputs = keras.Input((12, 12, 3))
    x = L.RandomFlip(seed=1, name="flip")(x)
    x = L.RandomContrast(0.5, seed=2, name="contrast")(x)
    x = L.Conv2D(8, 3, use_bias=False, name="a_conv")(x)
    x = L.BatchNormalization(name="a_bn")(x, training=True)
    x = L.ReLU(name="a_act")(x)
    x = L.Dropout(0.5, seed=3, name="mc")(x, training=True)
    x = zoo.conv_bn(x, 6, "b", padding="valid")
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x))


@pytest.mark.filterwarnings("ignore:keras_slim does not know")
def test_verify_and_training_the_slim_model_leave_the_original_alone():
    model = stochastic()
    rng = np.random.default_rng(0)
    zoo.randomize_batchnorms(model, rng)
    plan = keras_slim.plan_l1_norm(model, 0.5)
    assert plan.kept  # something is cut
    before = snapshot(model)
    plain = keras_slim.slim_model(model, plan)
    slim = keras_slim.slim_model(model, plan, verify=True)  # no false alarm
    assert keras_slim.count_params(slim) < keras_slim.count_params(model)
    assert_unchanged(model, before)
    # verify changed nothing in the slim model either: same as without it
    assert len(slim.variables) == len(plain.variables)
    for mine, theirs in zip(slim.variables, plain.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine),
                                      keras.ops.convert_to_numpy(theirs))
    slim_before = snapshot(slim)
    slim.compile(optimizer="sgd", loss="mse")
    x = rng.normal(size=(4, 12, 12, 3)).astype("float32")
    slim.fit(x, np.ones((4, 3), "float32"), epochs=1, batch_size=4, verbose=0)
    changed = [key for key, value in slim_before.items()
               if not np.array_equal(value, snapshot(slim)[key])]
    assert changed  # the fit step did train the slim model
    assert_unchanged(model, before)


def dense_chain(head_kernel=None, head_bias=None):
    x = inputs = keras.Input((6,))
    x = L.Dense(8, name="d1")(x)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="act1")(x)
    head = L.Dense(2, name="head")
    outputs = head(x)
    model = keras.Model(inputs, outputs)
    if head_kernel is not None:
        head.set_weights([head_kernel, head_bias])
    return model


def cut_half_of_bn1(model):
    bn = model.get_layer("bn1")
    bn.beta.assign(np.linspace(0.5, 1.5, 8).astype("float32"))  # relu(beta) > 0
    return keras_slim.PruningPlan({"d1": np.arange(0, 8, 2)})


def test_verify_catches_a_fold_the_old_masker_shared(monkeypatch):
    """The constants of the cut channels are lost on the way to `head`: the
    surgery drops them, and a masker zeroing the channels the surgery
    dropped would agree. The user's own model, gammas zeroed, does not."""
    model = dense_chain()
    zoo.randomize_batchnorms(model, np.random.default_rng(0))
    plan = cut_half_of_bn1(model)
    keras_slim.slim_model(model, plan, verify=True)  # correct: passes
    real = propagation.propagate

    def lose_head_input(graph, *args, **kwargs):
        values = real(graph, *args, **kwargs)
        for call in graph.calls:
            if call.layer.name == "head":
                values[call.inputs[0]] = np.full_like(
                    values[call.inputs[0]], np.nan)
        return values

    monkeypatch.setattr(propagation, "propagate", lose_head_input)
    wrong = keras_slim.slim_model(model, plan)
    x = np.random.default_rng(1).normal(size=(5, 6)).astype("float32")
    expected = gamma_zeroed_outputs(model, plan, x)
    got = keras.ops.convert_to_numpy(wrong(x, training=False))
    assert np.max(np.abs(expected - got)) > 1e-2  # the slim model is wrong
    with pytest.raises(ValueError, match="layer `head` \\(Dense\\)"):
        keras_slim.slim_model(model, plan, verify=True)


def test_verify_checks_cut_gammas_at_zero_not_the_masked_original():
    """A plan cutting live channels (gammas not zero) folds their betas; the
    slim model equals the user's model with those gammas at zero."""
    model = dense_chain()
    zoo.randomize_batchnorms(model, np.random.default_rng(0))
    plan = cut_half_of_bn1(model)
    slim = keras_slim.slim_model(model, plan, verify=True)
    x = np.random.default_rng(2).normal(size=(5, 6)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(slim(x, training=False)),
        gamma_zeroed_outputs(model, plan, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tolerance", [None, 1e-2])
def test_verify_tolerance_boundary(monkeypatch, tolerance):
    """The head outputs exactly its bias [2, 0]; the slim head's is shifted
    by `delta` at the second output, an error of delta / 2 relative to the
    largest magnitude (not to the sum of the outputs, which is 8)."""
    model = dense_chain(np.zeros((8, 2), "float32"),
                        np.array([2.0, 0.0], "float32"))
    zoo.randomize_batchnorms(model, np.random.default_rng(0))
    plan = cut_half_of_bn1(model)
    limit = 1e-4 if tolerance is None else tolerance
    real_assign = surgery.assign

    def verify_with_error(relative):
        def shifted_head(new_layer, layer, weights):
            real_assign(new_layer, layer, weights)
            if new_layer.name == "head":
                new_layer.bias.assign([2.0, 2.0 * relative])

        monkeypatch.setattr(surgery, "assign", shifted_head)
        return keras_slim.slim_model(model, plan, verify=True,
                                     verify_tolerance=tolerance)

    verify_with_error(0.99 * limit)
    with pytest.raises(ValueError, match="layer `head` \\(Dense\\)"):
        verify_with_error(1.01 * limit)


def test_relative_error_is_against_the_largest_magnitude():
    expected = np.array([[1.0, -4.0], [0.5, 2.0]])
    actual = expected + np.array([[0.0, 0.0], [0.04, 0.0]])
    assert verification.relative_error(expected, actual) == pytest.approx(0.01)


def test_relative_error_understands_infinities():
    inf, nan = np.inf, np.nan
    assert verification.relative_error([-inf, 1.0, inf], [-inf, 1.0, inf]) == 0
    assert verification.relative_error([nan, 2.0], [nan, 2.0]) == 0
    assert verification.relative_error([-inf, 2.0], [-inf, 2.01]) == \
        pytest.approx(0.005)  # scaled by the largest finite magnitude
    assert verification.relative_error([1.0, 2.0], [nan, 2.0]) == inf
    assert verification.relative_error([nan, 2.0], [1.0, 2.0]) == inf
    assert verification.relative_error([-inf, 2.0], [inf, 2.0]) == inf
    assert verification.relative_error([1.0, 2.0], [inf, 2.0]) == inf


@keras.saving.register_keras_serializable(package="keras_slim_tests")
class NegativeInfinityPadding(L.Layer):
    """Pads height and width with -inf, as keras-hub's ResNet v2 does
    before max pooling."""

    def call(self, x):
        return keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]],
                             constant_values=-np.inf)


@pytest.mark.filterwarnings("ignore:keras_slim does not know")
def test_verify_passes_through_negative_infinity_padding():
    x = inputs = keras.Input((8, 8, 3))
    x = zoo.conv_bn(x, 8, "a")
    x = NegativeInfinityPadding(name="pad")(x)
    x = L.MaxPooling2D(3, strides=1, name="pool")(x)
    x = zoo.conv_bn(x, 6, "b")
    outputs = L.Dense(2, name="head")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_coherently(model, rng)
    plan = keras_slim.plan_zero_gamma(model)
    assert "b_conv" in plan.kept
    keras_slim.slim_model(model, plan, verify=True)


def test_default_tolerance_depends_on_the_dtype():
    assert verification.default_tolerance(zoo.chain()) == 1e-4
    try:
        for policy, expected in [("mixed_float16", 1e-2), ("float16", 1e-2),
                                 ("mixed_bfloat16", 8e-2)]:
            keras.mixed_precision.set_global_policy(policy)
            assert verification.default_tolerance(zoo.chain()) == expected
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mixed_float16_model_passes_with_the_default_tolerance():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = zoo.residual()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(3)
    zoo.randomize_batchnorms(model, rng)
    plan = keras_slim.plan_global_gamma(model, 0.4)
    assert plan.kept
    keras_slim.slim_model(model, plan, fold="exact", verify=True)
    with pytest.raises(ValueError, match="tolerance 1e-07"):
        keras_slim.slim_model(model, plan, fold="exact", verify=True,
                              verify_tolerance=1e-7)


def test_fold_of_a_model_output_read_by_a_batchnorm_is_in_its_bias():
    """`d2` (no bias) is a model output and read by `bn2`: its fold cannot
    go into `bn2`'s moving mean, which the output `d2` does not see. Found
    by verify's comparison of the model outputs."""
    x = inputs = keras.Input((6,))
    x = L.Dense(8, name="d1")(x)
    x = L.ReLU(name="act1")(L.BatchNormalization(name="bn1")(x))
    y = L.Dense(4, use_bias=False, name="d2")(x)
    model = keras.Model(inputs, [y, L.BatchNormalization(name="bn2")(y)])
    zoo.randomize_batchnorms(model, np.random.default_rng(0))
    plan = cut_half_of_bn1(model)
    slim = keras_slim.slim_model(model, plan, verify=True)
    x = np.random.default_rng(4).normal(size=(5, 6)).astype("float32")
    expected = gamma_zeroed_outputs(model, plan, x)
    for want, got in zip(expected, slim(x, training=False)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want,
                                   rtol=1e-5, atol=1e-5)


def test_a_constant_channel_may_differ_by_rounding_between_samples():
    """A mean may sum the samples in different orders: a cut constant
    channel equal up to rounding is kept, a live one is removed."""
    constant = np.float32([[0.883], [0.883]])
    constant[1] = np.nextafter(constant[1], np.float32(1))  # one ulp
    live = np.float32([[0.221], [0.213]])
    same = verification._same_in_every_sample(
        np.concatenate([constant, live, [[-np.inf], [-np.inf]]],
                       axis=1).astype("float32"))
    np.testing.assert_array_equal(same, [True, False, True])


def pooled_head(width, size):
    """conv-BN-ReLU, averaged over a `size` x `size` map, into a head; the
    even channels dead: gamma 0, beta > 0, as ISTA leaves them."""
    x = inputs = keras.Input((size, size, 3))
    x = L.Conv2D(width, 3, padding="same", name="conv")(x)
    x = L.ReLU(name="act")(L.BatchNormalization(name="bn")(x))
    x = L.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, L.Dense(3, name="head")(x))
    rng = np.random.default_rng(width)
    bn = model.get_layer("bn")
    gamma = rng.uniform(0.5, 1.5, width).astype("float32")
    gamma[::2] = 0
    bn.gamma.assign(gamma)
    bn.beta.assign(rng.uniform(0.1, 1.0, width).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, width).astype("float32"))
    return model


@pytest.mark.parametrize("width, size", [(10, 32), (12, 32), (14, 32),
                                         (12, 64)])
def test_verify_accepts_dead_channels_averaged_over_a_large_map(width, size):
    """A dead channel's beta, averaged over 32 x 32 positions, may differ
    between the samples by more than 16 ulps (TensorFlow sums each sample
    in another order): it is still constant, and the slim model exact."""
    model = pooled_head(width, size)
    plan = keras_slim.plan_zero_gamma(model)
    assert len(plan.kept["conv"]) == width // 2
    slim = keras_slim.slim_model(model, plan, fold="exact", verify=True)
    x = np.random.default_rng(1).normal(size=(2, size, size, 3))
    zoo.assert_close(zoo.outputs(model, x.astype("float32")),
                     zoo.outputs(slim, x.astype("float32")), rtol=1e-5)


def test_a_constant_channel_may_differ_by_the_rounding_of_its_reduction():
    """The allowance grows with the reduction's size; a channel that
    depends on the input (10% apart) is live whatever the size."""
    eps = np.finfo(np.float32).eps
    constant = np.float32([[0.7], [0.7 * (1 + 300 * eps)]])
    live = np.float32([[0.7], [0.77]])
    array = np.concatenate([constant, live], axis=1)
    same = verification._same_in_every_sample
    np.testing.assert_array_equal(same(array), [False, False])
    np.testing.assert_array_equal(same(array, 1024), [True, False])
    np.testing.assert_array_equal(same(array, 64 * 64), [True, False])
    half = array.astype("float16")  # half reductions accumulate in float32
    np.testing.assert_array_equal(same(half, 64 * 64), [True, False])
    assert verification._positions(np.zeros((2, 32, 32, 5))) == 1024
    assert verification._positions(np.zeros((2, 5))) == 1


def test_verify_compares_every_model_output(monkeypatch):
    """A fold that went into `bn2`'s moving mean though `d2`'s output is a
    model output: the layer `d2` is not compared (its fold moved on), so
    only the model output `d2` catches it, here listed second."""
    from keras_slim.core import folding

    x = inputs = keras.Input((6,))
    x = L.Dense(8, name="d1")(x)
    x = L.ReLU(name="act1")(L.BatchNormalization(name="bn1")(x))
    y = L.Dense(4, use_bias=False, name="d2")(x)
    model = keras.Model(inputs, [L.BatchNormalization(name="bn2")(y), y])
    zoo.randomize_batchnorms(model, np.random.default_rng(0))
    plan = cut_half_of_bn1(model)
    keras_slim.slim_model(model, plan, verify=True)  # correct: passes
    real = folding._absorb

    def into_the_next_bn(graph, *args, **kwargs):
        keys = graph.output_keys
        graph.output_keys = []  # the bug: forget that d2 is an output
        try:
            return real(graph, *args, **kwargs)
        finally:
            graph.output_keys = keys

    monkeypatch.setattr(folding, "_absorb", into_the_next_bn)
    wrong = keras_slim.slim_model(model, plan)
    x = np.random.default_rng(4).normal(size=(5, 6)).astype("float32")
    expected = gamma_zeroed_outputs(model, plan, x)
    got = [keras.ops.convert_to_numpy(o) for o in wrong(x, training=False)]
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(got[1] - expected[1])) > 1e-2  # only output 2
    with pytest.raises(ValueError, match="`d2` .*Its output is a model"):
        keras_slim.slim_model(model, plan, verify=True)
