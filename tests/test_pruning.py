import keras
import numpy as np
import pytest

from keras_slim.core.surgery import slim_model
from keras_slim.planners import selection
from keras_slim.planners.criteria import plan_zero_gamma
from keras_slim.tools import pruning

L = keras.layers


def bn_model():
    x = inputs = keras.Input((8, 8, 3))
    for i, width in enumerate((16, 24)):
        x = L.Conv2D(width, 3, padding="same", name=f"conv{i}")(x)
        x = L.BatchNormalization(name=f"bn{i}")(x)
        x = L.ReLU()(x)
    out = L.Dense(4, name="head")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, out)
    rng = np.random.default_rng(0)
    for name, width in (("bn0", 16), ("bn1", 24)):
        model.get_layer(name).gamma.assign(rng.random(width).astype("float32"))
    return model


@pytest.mark.parametrize(
    "method,kwargs",
    [
        ("global_gamma", {"ratio": 0.5}),
        ("l1_norm", {"ratio": {"conv0": 0.5}}),
        ("uniform", {"ratio": 0.25, "score": "random", "seed": 0}),
    ],
)
def test_prune_equals_plan_then_slim(method, kwargs):
    model = bn_model()
    slim, plan = pruning.prune(model, method, return_plan=True, **kwargs)
    planner = pruning.METHODS[method].planner
    assert plan == planner(model, **kwargs)
    assert plan.kept
    for name, kept in plan.kept.items():
        assert slim.get_layer(name).filters == len(kept)
    x = np.random.default_rng(1).random((2, 8, 8, 3)).astype("float32")
    assert slim.predict(x, verbose=0).shape == (2, 4)
    assert model.get_layer("conv0").filters == 16  # original untouched


def test_prune_zero_gamma_matches_plan_zero_gamma():
    model = bn_model()
    gamma = model.get_layer("bn0").gamma.numpy()
    gamma[[1, 4, 9]] = 0.0
    model.get_layer("bn0").gamma.assign(gamma)
    slim = pruning.prune(model, "zero_gamma")
    assert slim.get_layer("conv0").filters == 13
    reference = slim_model(model, plan_zero_gamma(model))
    x = np.random.default_rng(1).random((2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(slim.predict(x, verbose=0),
                               reference.predict(x, verbose=0), rtol=1e-6)


def test_prune_fold_none_switch():
    model = bn_model()
    beta = np.full(16, 3.0, "float32")
    model.get_layer("bn0").beta.assign(beta)
    folded = pruning.prune(model, "uniform", ratio=0.5, score="l1")
    dropped = pruning.prune(model, "uniform", ratio=0.5, score="l1",
                            fold="none")
    x = np.zeros((1, 8, 8, 3), "float32")
    assert not np.allclose(folded.predict(x, verbose=0),
                           dropped.predict(x, verbose=0))
    # With nothing folded, conv1's bias is the original one, sliced.
    assert np.array_equal(dropped.get_layer("conv1").bias.numpy(),
                          model.get_layer("conv1").bias.numpy()[
                              selection.plan_uniform(model, 0.5, score="l1")
                              .kept["conv1"]])


def test_prune_bad_arguments():
    model = bn_model()
    with pytest.raises(ValueError, match="`method`"):
        pruning.prune(model, "taylor", ratio=0.5)
    with pytest.raises(TypeError, match="'global_gamma'.*`ratio`"):
        pruning.prune(model, "global_gamma", ratio=0.5, tol=0.1)
    with pytest.raises(TypeError, match="ratio"):
        pruning.prune(model, "global_gamma")
    with pytest.raises(ValueError, match="Expected `ratio` in"):
        pruning.prune(model, "l1_norm", ratio=1.0)
