"""End to end on real data (scikit-learn's bundled digits, no download):
train a small BN ConvNet, run ISTA from it at several `rho`, slim the
channels whose gamma is exactly zero, fine-tune (Ye et al., 2018)."""

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_slim.core.counting import count_params
from keras_slim.core.surgery import slim_model
from keras_slim.planners.criteria import plan_zero_gamma
from keras_slim.sparsity.ista_callback import ISTAGamma

L = keras.layers
RHOS = (0.5, 1.0, 1.5)
BATCH = 64


def make_model():
    x = inputs = keras.Input((8, 8, 1))
    for i, width in enumerate((16, 32, 32)):
        # "valid" padding: the constants of zeroed channels fold exactly.
        x = L.Conv2D(width, 3, use_bias=False, name=f"conv{i}")(x)
        x = L.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(10, name="head")(x))


def compile_model(model, learning_rate, epochs, examples):
    steps = epochs * -(-examples // BATCH)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(
        keras.optimizers.SGD(schedule, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def accuracy(model, x, y):
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    return 100.0 * float(np.mean(np.argmax(logits, axis=1) == y))


@pytest.fixture(scope="module")
def runs():
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    n = len(x_train)
    keras.utils.set_random_seed(0)
    dense = make_model()
    compile_model(dense, 0.05, 15, n)
    dense.fit(x_train, y_train, batch_size=BATCH, epochs=15, verbose=0)
    result = {"dense": accuracy(dense, x_test, y_test),
              "dense_params": count_params(dense), "rho": {}}
    for rho in RHOS:
        keras.utils.set_random_seed(1)
        model = keras.models.clone_model(dense)
        model.set_weights(dense.get_weights())
        compile_model(model, 0.02, 10, n)
        history = model.fit(x_train, y_train, batch_size=BATCH, epochs=10,
                            verbose=0, callbacks=[ISTAGamma(rho)])
        slim = slim_model(model, plan_zero_gamma(model))
        run = {
            "zero_fraction": history.history["gamma_zero_fraction"][-1],
            "l1": history.history["gamma_l1"],
            "ista": accuracy(model, x_test, y_test),
            "slim": accuracy(slim, x_test, y_test),
            "params": count_params(slim),
        }
        compile_model(slim, 0.005, 5, n)
        slim.fit(x_train, y_train, batch_size=BATCH, epochs=5, verbose=0)
        run["fine_tuned"] = accuracy(slim, x_test, y_test)
        result["rho"][rho] = run
    return result


def test_dense_model_learns_digits(runs):
    assert runs["dense"] > 95.0


def test_exact_zero_fraction_grows_with_rho(runs):
    fractions = [runs["rho"][rho]["zero_fraction"] for rho in RHOS]
    assert fractions[0] > 0
    assert all(a < b for a, b in zip(fractions, fractions[1:]))
    assert fractions[-1] < 1


def test_lasso_term_falls_during_ista(runs):
    for rho in RHOS:
        l1 = runs["rho"][rho]["l1"]
        assert l1[-1] < l1[0]


def test_slimming_zero_gammas_keeps_accuracy_and_shrinks(runs):
    for rho in RHOS:
        run = runs["rho"][rho]
        assert abs(run["slim"] - run["ista"]) <= 1.0
        assert run["params"] < runs["dense_params"]
    biggest = runs["rho"][RHOS[-1]]
    assert biggest["params"] < 0.85 * runs["dense_params"]


def test_fine_tuned_slim_model_is_within_a_point_of_dense(runs):
    for rho in RHOS:
        assert runs["rho"][rho]["fine_tuned"] >= runs["dense"] - 1.0
