"""The main invariant over every constructor in `keras.applications`.

Each model is built with `weights=None` at a small input size; BN statistics
are randomized and gamma and beta of a random half of the channels of every
BN are zeroed. `plan_zero_gamma` + `slim_model` must reproduce the outputs
within 1e-4 relative; models without BN must slim exactly with an empty plan.
"""

import keras
import numpy as np
import pytest

import keras_slim
from tests import zoo

NAMES = sorted(n for n in dir(keras.applications) if n[:1].isupper())
SIZES = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}


def test_all_constructors_are_covered():
    assert len(NAMES) >= 40


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.filterwarnings("ignore:keras_slim does not know")
def test_application_slims_exactly(name):
    size = SIZES.get(name, 32)
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classes=10
    )
    rng = np.random.default_rng(0)
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_random_half(model, rng)
    inputs = rng.normal(size=(2, size, size, 3)).astype("float32")
    before = zoo.outputs(model, inputs)
    plan = keras_slim.plan_zero_gamma(model)
    scaled = any(bn.scale for bn in zoo.batchnorms(model))
    slim = keras_slim.slim_model(model, plan, fold="exact")
    zoo.assert_close(before, zoo.outputs(slim, inputs))
    if scaled:
        assert plan.kept, f"{name}: half of every BN is dead, nothing cut"
        assert keras_slim.count_params(slim) < keras_slim.count_params(model)
    else:
        assert not plan.kept
        assert keras_slim.count_params(slim) == keras_slim.count_params(model)
    assert len(slim.layers) == len(model.layers)
