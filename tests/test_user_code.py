"""What the user wrote survives `slim_model`: the metrics and losses a model
subclass' `__init__` created (the "Customizing what happens in fit()"
pattern), and the function of a `Lambda` layer, module-level names and all.
"""

import warnings

import keras
import numpy as np
import pytest
from keras import layers as L
from keras import ops

import keras_slim
from tests import zoo


class TracksItsLoss(keras.Model):
    """Keras' guide pattern: metrics and a loss created in `__init__`,
    used by the model's own training code."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mae_metric = keras.metrics.MeanAbsoluteError(name="mae")
        self.loss_fn = keras.losses.MeanSquaredError()
        self.label = "tracked"

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        return self.loss_fn(y, y_pred)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.loss_tracker.update_state(self.loss_fn(y, y_pred))
        self.mae_metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}

    @property
    def metrics(self):
        return [self.loss_tracker, self.mae_metric]


def _conv_bn_head(inputs, middle=None):
    x = zoo.conv_bn(inputs, 8, "c1")
    if middle is not None:
        x = middle(x)
    x = zoo.conv_bn(x, 8, "c2")
    x = L.GlobalAveragePooling2D()(x)
    return L.Dense(2, name="head")(x)


def _tracking_model():
    inputs = keras.Input((6, 6, 3))
    return TracksItsLoss(inputs, _conv_bn_head(inputs), name="tracks")


def _data():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(8, 6, 6, 3)).astype("float32"),
            rng.normal(size=(8, 2)).astype("float32"))


def _slim_half(model):
    rng = np.random.default_rng(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zoo.randomize_batchnorms(model, rng)
        zoo.kill_coherently(model, rng)
        inputs = zoo.random_inputs(model, rng)
        before = zoo.outputs(model, inputs)
        slim = keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model),
                                     fold="exact", verify=True)
    assert slim.count_params() < model.count_params()
    zoo.assert_close(before, zoo.outputs(slim, inputs))
    return slim, [str(w.message) for w in caught]


def test_a_subclass_keeps_the_metrics_and_loss_its_init_created():
    model = _tracking_model()
    x, y = _data()
    model.loss_tracker.update_state(np.ones(3, "float32"))  # a past fit
    slim, _ = _slim_half(model)
    assert slim.label == "tracked"
    for key in ("loss_tracker", "mae_metric", "loss_fn"):
        held, original = getattr(slim, key), getattr(model, key)
        assert type(held) is type(original) and held is not original
        assert held.get_config() == original.get_config()
    # Fresh state: the slim model starts its own training.
    assert int(ops.convert_to_numpy(slim.loss_tracker.count)) == 0
    slim.compile(optimizer="sgd")
    history = slim.fit(x, y, epochs=1, verbose=0).history
    assert set(history) == {"loss", "mae"}
    assert np.isfinite(history["mae"][0])
    assert int(ops.convert_to_numpy(slim.loss_tracker.count)) > 0
    # The original's metrics were not touched.
    assert int(ops.convert_to_numpy(model.loss_tracker.count)) == 3


class Hits(keras.metrics.Metric):
    """A metric whose config forgets an argument of its `__init__`."""

    def __init__(self, threshold, **kwargs):
        super().__init__(**kwargs)
        self.threshold = threshold
        self.total = self.add_variable((), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total.assign_add(ops.sum(ops.cast(y_pred > self.threshold,
                                               "float32")))

    def result(self):
        return self.total


class HoldsAnUnrebuildableMetric(keras.Model):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hits = Hits(0.5, name="hits")


def test_a_metric_that_cannot_be_recreated_is_refused_by_name():
    inputs = keras.Input((6, 6, 3))
    model = HoldsAnUnrebuildableMetric(inputs, _conv_bn_head(inputs))
    with pytest.raises(ValueError, match="attribute `hits` holds metric "
                                         "`hits` \\(Hits\\)"):
        keras_slim.slim_model(model, keras_slim.PruningPlan({}))


def _double_relu(t):
    return ops.relu(t) * 2.0


@pytest.mark.parametrize("make", [
    # A module-level name (`ops`) in a lambda, no output shape given.
    lambda: L.Lambda(lambda t: ops.relu(t) * 2.0, name="scaled"),
    # `np`, with the output shape Keras' error message asks for.
    lambda: L.Lambda(lambda t: t * np.float32(2.0), output_shape=(6, 6, 8),
                     name="scaled"),
    # A named function, and a callable output shape.
    lambda: L.Lambda(_double_relu, output_shape=lambda s: s, name="scaled"),
], ids=["ops", "np_output_shape", "function"])
def test_a_lambda_keeps_its_function_and_freezes_its_channels(make):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, _conv_bn_head(inputs, make()))
    slim, messages = _slim_half(model)
    lam = slim.get_layer("scaled")
    assert lam is not model.get_layer("scaled")
    assert lam.function is model.get_layer("scaled").function
    # The channels the Lambda touches stay, with a warning naming it (each
    # new model gets its own, though it may reuse a collected one's id) and
    # the group saying why; the others are cut.
    assert any("`scaled`" in m for m in messages), messages
    frozen = [g.frozen for g in keras_slim.channel_groups(model)
              if "c1_bn" in g.batchnorms]
    assert frozen and "scaled" in str(frozen[0]), frozen
    assert slim.get_layer("c1_conv").filters == 8
    assert slim.get_layer("c2_conv").filters < 8
