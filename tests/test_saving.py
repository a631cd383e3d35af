"""A slimmed model saves to `.keras` and loads back with identical outputs."""

import keras
import numpy as np
import pytest

import keras_slim
from tests import zoo


@pytest.mark.parametrize("name", ["residual", "nested", "sequential", "valid"])
def test_slim_model_round_trips_through_keras_file(name, tmp_path):
    factory = zoo.FACTORIES.get(name, zoo.valid_padding)
    model = factory()
    rng = np.random.default_rng(0)
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_coherently(model, rng, kill_beta=(name != "valid"))
    slim = keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model))
    assert slim.count_params() < model.count_params()
    path = tmp_path / "slim.keras"
    slim.save(path)
    loaded = keras.saving.load_model(path)
    inputs = zoo.random_inputs(model, rng)
    zoo.assert_close(zoo.outputs(slim, inputs), zoo.outputs(loaded, inputs), rtol=0)
    assert type(loaded) is type(slim)
    assert [l.name for l in loaded.layers] == [l.name for l in slim.layers]


def test_slim_model_trains():
    model = zoo.chain()
    rng = np.random.default_rng(1)
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_coherently(model, rng)
    slim = keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model))
    slim.compile("adam", "mse")
    x = rng.normal(size=(16, 12, 12, 3)).astype("float32")
    y = rng.normal(size=(16, 5)).astype("float32")
    # The training loss (inference-mode loss also moves with the BN moving
    # statistics, which 5 epochs barely update).
    losses = slim.fit(x, y, epochs=5, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
