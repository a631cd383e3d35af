"""Sparsity training does what it says or says why not: frozen gammas,
traced steps, interrupted fits, taking the penalty off."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_slim
from keras_slim.sparsity.ista import GammaProx, attach_ista
from keras_slim.sparsity.ista_callback import ISTAGamma
from keras_slim.tools import cli
from tests.test_ista import built, data, gammas, small_model

# -- frozen BatchNormalization ---------------------------------------------


def test_ista_on_frozen_batchnorms_warns_naming_them_and_skips_them():
    model = built()
    model.get_layer("bn1").trainable = False
    with pytest.warns(UserWarning, match="`bn1`.*not trainable"):
        ista = attach_ista(model, 0.1)
    assert [layer.name for layer in ista.layers] == ["bn2"]
    assert not isinstance(model.get_layer("bn1").gamma.constraint, GammaProx)
    ista.detach()


def test_ista_on_a_frozen_model_is_an_error():
    model = built()
    model.trainable = False
    with pytest.raises(ValueError, match="`bn1`, `bn2` are not trainable"):
        attach_ista(model, 0.1)
    x, y = data(16)
    with pytest.raises(ValueError, match="not trainable"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[ISTAGamma(0.1)])


def test_gamma_l1_on_frozen_batchnorms_warns_naming_them():
    model = small_model()
    model.get_layer("bn2").trainable = False
    with pytest.warns(UserWarning, match="`bn2` are not trainable"):
        keras_slim.add_gamma_regularizer(model, 1e-3)


# -- traced custom training steps ------------------------------------------


def _zero_loss_step(model, optimizer, x):
    """A step whose gradients are all zero: only the prox moves gammas."""
    with tf.GradientTape() as tape:
        loss = 0.0 * keras.ops.sum(model(x, training=False))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))


def test_detach_stops_a_step_traced_while_attached():
    x, _ = data(8)
    model, optimizer = small_model(), keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    ista = attach_ista(model, 0.5, penalty="uniform", optimizer=optimizer)
    step = tf.function(_zero_loss_step)
    before = gammas(model)
    step(model, optimizer, x)
    shrunk = gammas(model)
    assert all(np.all(np.abs(shrunk[n]) < np.abs(before[n])) for n in before)
    ista.detach()
    step(model, optimizer, x)  # the same traced step
    after = gammas(model)
    for name in before:
        np.testing.assert_array_equal(after[name], shrunk[name])


def test_attaching_after_tracing_is_reported():
    x, _ = data(8)
    model, optimizer = small_model(), keras.optimizers.SGD(0.1)
    step = tf.function(_zero_loss_step)
    step(model, optimizer, x)  # traced without constraints
    ista = attach_ista(model, 0.5, penalty="uniform", optimizer=optimizer)
    before = gammas(model)
    step(model, optimizer, x)
    for name, value in gammas(model).items():
        np.testing.assert_array_equal(value, before[name])  # a no-op...
    with pytest.warns(RuntimeWarning, match="traced before attach_ista"):
        ista.zero_fraction()  # ...that is said
    assert not ista.check_applied()
    ista.detach()


def test_attaching_before_tracing_applies_and_does_not_warn():
    x, _ = data(8)
    model, optimizer = small_model(), keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    ista = attach_ista(model, 0.5, penalty="uniform", optimizer=optimizer)
    tf.function(_zero_loss_step)(model, optimizer, x)
    assert ista.check_applied()
    ista.detach()


# -- interrupted fit ----------------------------------------------------------


class _Interrupt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            raise KeyboardInterrupt("stop")


def test_a_plain_fit_after_an_interrupted_ista_fit_does_not_shrink_gammas():
    x, y = data(64)
    model = built(keras.optimizers.SGD(0.05))
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0,
                  callbacks=[ISTAGamma(50.0, penalty="uniform"), _Interrupt()])
    # The interrupted fit did take ISTA steps; its constraints are still
    # bound (no on_train_end).
    assert isinstance(model.get_layer("bn1").gamma.constraint, GammaProx)
    zeros = {n: np.sum(g == 0) for n, g in gammas(model).items()}
    with pytest.warns(RuntimeWarning, match="interrupted"):
        model.fit(x, y, batch_size=8, epochs=4, verbose=0)
    assert model.get_layer("bn1").gamma.constraint is None
    # rho=50 would zero every gamma within these 32 steps; plain SGD does
    # not add exact zeros.
    for name, value in gammas(model).items():
        assert np.sum(value == 0) <= zeros[name]
        assert np.sum(value != 0) > 0


def test_a_fit_with_ista_after_an_interrupted_one_runs_ista_again():
    x, y = data(64)
    model = built(keras.optimizers.SGD(0.05))
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0,
                  callbacks=[ISTAGamma(1.0), _Interrupt()])
    callback = ISTAGamma(50.0, penalty="uniform")
    with pytest.warns(RuntimeWarning, match="interrupted"):
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0,
                            callbacks=[callback])
    assert history.history["gamma_zero_fraction"][-1] > 0.5
    assert model.get_layer("bn1").gamma.constraint is None
    assert "make_train_function" not in model.__dict__


# -- taking the penalty off ---------------------------------------------------


def test_remove_gamma_regularizer_is_a_copy_without_the_penalty():
    model = small_model()
    sparse = keras_slim.add_gamma_regularizer(model, 1e-2)
    sparse(np.zeros((1, 8, 8, 2), "float32"))
    assert len(sparse.losses) == 2
    free = keras_slim.remove_gamma_regularizer(sparse)
    free(np.zeros((1, 8, 8, 2), "float32"))
    assert free is not sparse and not free.losses
    assert free.get_layer("bn1").gamma_regularizer is None
    assert isinstance(sparse.get_layer("bn1").gamma_regularizer,
                      keras_slim.GammaL1)  # the input is untouched
    for a, b in zip(sparse.get_weights(), free.get_weights()):
        np.testing.assert_array_equal(a, b)
    only = keras_slim.remove_gamma_regularizer(sparse, layers=["bn2"])
    assert only.get_layer("bn1").gamma_regularizer is not None
    assert only.get_layer("bn2").gamma_regularizer is None
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        keras_slim.remove_gamma_regularizer(sparse, layers=["nope"])


def test_the_cli_output_has_no_gamma_penalty(tmp_path):
    model = keras_slim.add_gamma_regularizer(small_model(), 1e-2)
    path = tmp_path / "sparse.keras"
    model.save(path)
    out = tmp_path / "slim.keras"
    assert cli.main(["prune", str(path), "--method", "global_gamma",
                     "--ratio", "0.3", "-o", str(out)]) == 0
    slim = keras.saving.load_model(out)
    for name in ("bn1", "bn2"):
        assert slim.get_layer(name).gamma_regularizer is None
