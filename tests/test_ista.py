import csv
import math

import keras
import numpy as np
import pytest

from keras_slim.sparsity.ista import GammaProx, attach_ista
from keras_slim.sparsity.ista_callback import ISTAGamma
from keras_slim.sparsity.penalties import penalty_weights

L = keras.layers
LR = 0.1


def small_model(name="small"):
    spread = keras.initializers.RandomUniform(0.05, 1.5)
    x = inputs = keras.Input((8, 8, 2))
    x = L.Conv2D(6, 3, use_bias=False, name="c1")(x)
    x = L.BatchNormalization(momentum=0.9, gamma_initializer=spread, name="bn1")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(8, 3, use_bias=False, name="c2")(x)
    x = L.BatchNormalization(momentum=0.9, gamma_initializer=spread, name="bn2")(x)
    x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x), name=name)


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 2)).astype("float32")
    return x, rng.integers(0, 3, n)


def built(optimizer=None, seed=7):
    keras.utils.set_random_seed(seed)
    model = small_model()
    model.compile(optimizer or keras.optimizers.SGD(LR),
                  "sparse_categorical_crossentropy")
    return model


def gammas(model):
    return {
        name: keras.ops.convert_to_numpy(model.get_layer(name).gamma + 0)
        for name in ("bn1", "bn2")
    }


def soft_threshold(w, t):
    return np.sign(w) * np.maximum(np.abs(w) - t, 0)


def test_gamma_prox_config_and_registration():
    prox = GammaProx([0.5, 1.5], previous=keras.constraints.NonNeg())
    config = prox.get_config()
    assert set(config) == {"weight", "previous"}
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(prox)
    )
    assert isinstance(restored, GammaProx)
    assert restored.weight == [0.5, 1.5]
    assert isinstance(restored.previous, keras.constraints.NonNeg)
    # Unbound, only the previous constraint acts.
    w = keras.ops.convert_to_tensor([-1.0, 2.0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored(w)), [0, 2])
    with pytest.raises(ValueError, match="`weight`"):
        GammaProx(-1.0)


@pytest.mark.parametrize("penalty", ["uniform", "memory"])
def test_one_step_is_the_proximal_step_of_plain_sgd(penalty):
    x, y = data(16)
    plain, ista = built(), built()
    plain.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    weights = penalty_weights(ista, [ista.get_layer("bn1"), ista.get_layer("bn2")],
                              penalty)
    expected = gammas(plain)
    # Each backend draws other initial gammas: rho just above the smallest
    # |gamma| / (lr * lambda) kills at least one channel on every backend.
    rho = 1.01 * min(float(np.min(np.abs(expected[n]) / (LR * weights[n])))
                     for n in expected)
    callback = ISTAGamma(rho, penalty=penalty)
    ista.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False,
             callbacks=[callback])
    got = gammas(ista)
    for name in expected:
        np.testing.assert_allclose(
            got[name], soft_threshold(expected[name], LR * rho * weights[name]),
            atol=1e-6,
        )
    assert sum(np.sum(g == 0) for g in got.values()) > 0
    # Everything but the gammas took the same step.
    for a, b in zip(plain.get_weights(), ista.get_weights()):
        if a.shape not in ((6,), (8,)):
            np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.tensorflow
def test_custom_loop_with_schedules_matches_a_manual_reference():
    import tensorflow as tf

    x, y = data(32)
    lr = keras.optimizers.schedules.ExponentialDecay(0.2, 1, 0.7)
    rho = keras.optimizers.schedules.PiecewiseConstantDecay([2], [1.0, 4.0])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step(model, optimizer, xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    keras.utils.set_random_seed(5)
    reference, ref_opt = small_model(), keras.optimizers.SGD(lr)
    keras.utils.set_random_seed(5)
    model, optimizer = small_model(), keras.optimizers.SGD(lr)
    optimizer.build(model.trainable_variables)
    ista = attach_ista(model, rho, penalty="uniform", optimizer=optimizer)
    traced = tf.function(step)
    for i in range(4):
        xb, yb = x[8 * i: 8 * i + 8], y[8 * i: 8 * i + 8]
        step(reference, ref_opt, xb, yb)
        t = float(lr(i)) * float(rho(i))
        for name in ("bn1", "bn2"):
            gamma = reference.get_layer(name).gamma
            gamma.assign(soft_threshold(keras.ops.convert_to_numpy(gamma + 0), t))
        traced(model, optimizer, xb, yb)
    for name in ("bn1", "bn2"):
        np.testing.assert_allclose(gammas(model)[name], gammas(reference)[name],
                                   atol=1e-5)
    assert ista.zero_fraction() > 0
    ista.detach()
    assert model.get_layer("bn1").gamma.constraint is None


# Keras on PyTorch runs one step per execution only.
@pytest.mark.backend("tensorflow", "jax")
def test_steps_per_execution_gives_the_same_gammas():
    x, y = data(48)
    results = []
    for steps in (1, 3):
        keras.utils.set_random_seed(7)
        model = small_model()
        model.compile(keras.optimizers.SGD(LR), "sparse_categorical_crossentropy",
                      steps_per_execution=steps)
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
                  callbacks=[ISTAGamma(0.5)])
        results.append(gammas(model))
    for name in results[0]:
        np.testing.assert_allclose(results[0][name], results[1][name], atol=1e-6)


def test_logs_sparsity_metrics_and_sparsity_grows(tmp_path):
    x, y = data(48)
    model = built()
    log = tmp_path / "log.csv"
    history = model.fit(
        x, y, batch_size=8, epochs=4, verbose=0,
        callbacks=[ISTAGamma(0.3), keras.callbacks.CSVLogger(str(log))],
    )
    zeros = history.history["gamma_zero_fraction"]
    l1 = history.history["gamma_l1"]
    assert len(zeros) == len(l1) == 4
    assert zeros[-1] > zeros[0] and zeros[-1] > 0.2
    assert l1[-1] < l1[0]
    current = gammas(model)
    total = np.concatenate(list(current.values()))
    assert zeros[-1] == pytest.approx(np.mean(total == 0))
    with open(log) as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["gamma_zero_fraction"]) == pytest.approx(zeros[-1])


def test_constraints_are_removed_after_training():
    x, y = data(48)
    model = built()
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[ISTAGamma(1.0)])
    zero_after_ista = np.mean(np.concatenate(list(gammas(model).values())) == 0)
    assert zero_after_ista > 0.3
    assert model.get_layer("bn1").gamma.constraint is None
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    zero_after_plain = np.mean(np.concatenate(list(gammas(model).values())) == 0)
    assert zero_after_plain < zero_after_ista


def test_mixed_precision_thresholds_float32_gammas():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x, y = data(16)

        def scaled(initial_scale):
            return keras.optimizers.LossScaleOptimizer(
                keras.optimizers.SGD(LR), initial_scale=initial_scale
            )

        plain, ista = built(scaled(8.0)), built(scaled(8.0))
        before = gammas(ista)
        plain.fit(x, y, batch_size=16, epochs=1, verbose=0)
        expected = gammas(plain)
        # Just above the smallest |gamma| / lr, whatever this backend drew.
        rho = 1.01 * min(float(np.min(np.abs(g))) for g in expected.values()) / LR
        ista.fit(x, y, batch_size=16, epochs=1, verbose=0,
                 callbacks=[ISTAGamma(rho, penalty="uniform")])
        assert ista.get_layer("bn1").gamma.dtype == "float32"
        got = gammas(ista)
        for name in expected:
            assert not np.allclose(expected[name], before[name])
            np.testing.assert_allclose(
                got[name], soft_threshold(expected[name], LR * rho), atol=1e-4
            )
        assert sum(np.sum(g == 0) for g in got.values()) > 0
        # A step skipped for overflowing float16 gradients is not thresholded.
        skipped = built(scaled(2.0**40))
        before = gammas(skipped)
        skipped.fit(x, y, batch_size=16, epochs=1, verbose=0,
                    callbacks=[ISTAGamma(2.0, penalty="uniform")])
        for name, value in gammas(skipped).items():
            np.testing.assert_array_equal(value, before[name])
    finally:
        keras.mixed_precision.set_global_policy("float32")


class Interrupt(keras.callbacks.Callback):
    def __init__(self, at_batch):
        super().__init__()
        self.at_batch = at_batch
        self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at_batch:
            raise RuntimeError("interrupted")


# JAX's and PyTorch's draws of the initial gammas leave none under this
# schedule's thresholds, so the zero pattern this test compares is empty.
@pytest.mark.backend("tensorflow")
def test_backup_and_restore_resumes_to_the_same_gammas(tmp_path):
    x, y = data(48)
    rho = keras.optimizers.schedules.PiecewiseConstantDecay([8], [0.1, 0.4])
    lr = keras.optimizers.schedules.ExponentialDecay(0.1, 6, 0.5)
    fit = dict(batch_size=8, epochs=4, verbose=0, shuffle=False)
    whole = built(keras.optimizers.SGD(lr, momentum=0.9))
    whole.fit(x, y, callbacks=[ISTAGamma(rho)], **fit)

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    first = built(keras.optimizers.SGD(lr, momentum=0.9))
    with pytest.raises(RuntimeError, match="interrupted"):
        first.fit(x, y, callbacks=[ISTAGamma(rho), backup, Interrupt(15)], **fit)
    assert first.get_layer("bn1").gamma.constraint is not None  # died mid-run
    resumed = built(keras.optimizers.SGD(lr, momentum=0.9), seed=99)
    history = resumed.fit(x, y, callbacks=[ISTAGamma(rho), backup], **fit)
    assert len(history.history["loss"]) == 2  # epochs 3 and 4 only
    for name, value in gammas(whole).items():
        np.testing.assert_allclose(gammas(resumed)[name], value, atol=1e-5)
        np.testing.assert_array_equal(gammas(resumed)[name] == 0, value == 0)
    assert np.mean(np.concatenate(list(gammas(whole).values())) == 0) > 0


def test_saved_mid_training_model_loads_and_continues(tmp_path):
    x, y = data(48)
    path = str(tmp_path / "mid.keras")
    fit = dict(batch_size=8, verbose=0, shuffle=False)
    whole = built()
    whole.fit(x, y, epochs=4, callbacks=[ISTAGamma(0.2)], **fit)

    first = built()
    first.fit(x, y, epochs=2, callbacks=[
        ISTAGamma(0.2), keras.callbacks.ModelCheckpoint(path)], **fit)
    loaded = keras.models.load_model(path)
    constraint = loaded.get_layer("bn2").gamma.constraint
    assert isinstance(constraint, GammaProx) and constraint.penalty is None
    assert len(constraint.weight) == 8
    loaded.fit(x, y, epochs=4, initial_epoch=2, callbacks=[ISTAGamma(0.2)], **fit)
    for name, value in gammas(whole).items():
        np.testing.assert_allclose(gammas(loaded)[name], value, atol=1e-5)


def test_stop_when_converged_stops_on_a_plateau():
    x, y = data(16)
    model = built(keras.optimizers.SGD(0.0))  # nothing moves: a plateau
    callback = ISTAGamma(0.1, stop_when_converged=True, patience=2)
    history = model.fit(x, y, batch_size=16, epochs=20, verbose=0,
                        shuffle=False, callbacks=[callback])
    assert len(history.history["loss"]) == 3
    assert "plateaued" in callback.stopped_reason


def test_stop_when_converged_waits_while_sparsity_moves():
    x, y = data(48)
    model = built()
    callback = ISTAGamma(0.3, stop_when_converged=True, patience=2, min_delta=1e-3)
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0,
                        callbacks=[callback])
    assert len(history.history["loss"]) == 4
    assert callback.stopped_reason is None


class PoisonGamma(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            gamma = self.model.get_layer("bn2").gamma
            value = keras.ops.convert_to_numpy(gamma + 0)
            value[0] = np.nan
            gamma.assign(value)


def test_nan_gamma_stops_training():
    x, y = data(48)
    model = built()
    callback = ISTAGamma(0.1)
    with pytest.warns(RuntimeWarning, match="bn2"):
        history = model.fit(x, y, batch_size=8, epochs=5, verbose=0,
                            callbacks=[PoisonGamma(), callback])
    assert len(history.history["loss"]) == 1
    assert "bn2" in callback.stopped_reason


def test_gradient_accumulation_thresholds_only_on_update_steps():
    model = built(keras.optimizers.SGD(LR, gradient_accumulation_steps=2))
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    ista = attach_ista(model, 0.5, penalty="uniform")
    values = []
    for _ in range(3):
        values.append(float(keras.ops.convert_to_numpy(ista.threshold())))
        optimizer._iterations.assign_add(1)  # one call, not one update
    assert values == pytest.approx([0.0, LR * 0.5, 0.0])


@pytest.mark.parametrize("rho", [-0.1, math.nan, "big"])
def test_bad_rho(rho):
    with pytest.raises((ValueError, TypeError), match="`rho`"):
        ISTAGamma(rho)
    with pytest.raises((ValueError, TypeError), match="`rho`"):
        attach_ista(built(), rho)


def test_rho_schedule_going_negative_is_caught():
    with pytest.raises(ValueError, match="rho"):
        attach_ista(built(), lambda step: -1.0)


def test_bad_models_and_optimizers():
    x, y = data(16)
    inputs = keras.Input((8, 8, 2))
    plain = keras.Model(inputs, L.Dense(3)(L.Flatten()(inputs)))
    plain.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="no BatchNormalization"):
        plain.fit(x, y, epochs=1, verbose=0, callbacks=[ISTAGamma(0.1)])
    with pytest.raises(ValueError, match="no optimizer"):
        attach_ista(small_model(), 0.1)
    with pytest.raises(TypeError, match="`optimizer`"):
        attach_ista(small_model(), 0.1, optimizer=object())
    with pytest.raises(ValueError, match="`penalty`"):
        attach_ista(built(), 0.1, penalty="energy")
    with pytest.raises(TypeError, match="`model`"):
        attach_ista("model", 0.1)
    with pytest.raises(ValueError, match="`patience`"):
        ISTAGamma(0.1, patience=0)
    if keras.backend.backend() == "torch":
        return  # PyTorch refuses integer variables that require gradients
    int_inputs = keras.Input((4,), dtype="int32")
    int_model = keras.Model(int_inputs, L.BatchNormalization(
        dtype="int32", name="int_bn")(int_inputs))
    with pytest.raises(TypeError, match="int_bn"):
        attach_ista(int_model, 0.1, optimizer=keras.optimizers.SGD())


def test_previous_constraint_is_kept_and_restored():
    model = built()
    gamma = model.get_layer("bn1").gamma
    gamma.constraint = keras.constraints.NonNeg()
    ista = attach_ista(model, 0.1)
    assert isinstance(gamma.constraint, GammaProx)
    assert isinstance(gamma.constraint.previous, keras.constraints.NonNeg)
    ista.detach()
    assert isinstance(gamma.constraint, keras.constraints.NonNeg)


def test_named_layers_that_are_not_batchnorms_warn_and_do_nothing():
    x, y = data(16)
    model = built()
    callback = ISTAGamma(5.0, layers=["c1", "head"])
    with pytest.warns(UserWarning) as record:
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0,
                            callbacks=[callback])
    messages = " ".join(str(w.message) for w in record)
    assert "'c1'" in messages and "ISTA does nothing" in messages
    assert history.history["gamma_zero_fraction"] == [0.0]
    assert model.get_layer("bn1").gamma.constraint is None


def test_only_named_layers_are_thresholded():
    x, y = data(16)
    model = built()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0,
              callbacks=[ISTAGamma(20.0, layers=["bn2"])])
    current = gammas(model)
    assert np.all(current["bn2"] == 0)
    assert np.all(current["bn1"] != 0)
