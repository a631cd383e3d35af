"""ISTA under tf.distribute.MirroredStrategy on two logical CPU devices.

Logical devices must be configured before TensorFlow initialises its
devices, so the scenario runs in a fresh Python process.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# Needs TensorFlow: deselected under the JAX and PyTorch backends.
pytestmark = pytest.mark.tensorflow

SCENARIO = textwrap.dedent(
    """
    import json
    import os
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from keras_slim.sparsity.ista import attach_ista
    from keras_slim.sparsity.ista_callback import ISTAGamma

    L = keras.layers
    LR, RHO = 0.1, 1.0
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 2)).astype("float32")
    y = rng.integers(0, 3, 64)

    def make_model():
        keras.utils.set_random_seed(3)
        spread = keras.initializers.RandomUniform(0.05, 1.5)
        x = inputs = keras.Input((8, 8, 2))
        for i, width in enumerate((6, 8)):
            x = L.Conv2D(width, 3, use_bias=False, name=f"c{i}")(x)
            # Synchronized statistics: the two replicas see one batch.
            x = L.BatchNormalization(momentum=0.9, synchronized=True,
                                     gamma_initializer=spread, name=f"bn{i}")(x)
            x = L.ReLU()(x)
        x = L.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, L.Dense(3, name="head")(x))

    def gammas(model):
        return {n: keras.ops.convert_to_numpy(model.get_layer(n).gamma + 0).tolist()
                for n in ("bn0", "bn1")}

    def fit(strategy, ista, epochs=3, examples=64):
        with strategy.scope():
            model = make_model()
            model.compile(keras.optimizers.SGD(LR),
                          keras.losses.SparseCategoricalCrossentropy(
                              from_logits=True))
        callbacks = [ISTAGamma(RHO, penalty="uniform")] if ista else []
        history = model.fit(x[:examples], y[:examples], batch_size=16,
                            epochs=epochs, verbose=0, shuffle=False,
                            callbacks=callbacks)
        return model, history.history

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single = tf.distribute.get_strategy()
    out = {"replicas": mirrored.num_replicas_in_sync}

    # One step, mirrored: the ISTA gammas are the prox of the plain ones.
    plain, _ = fit(mirrored, False, epochs=1, examples=16)
    one, _ = fit(mirrored, True, epochs=1, examples=16)
    out["one_step_plain"], out["one_step_ista"] = gammas(plain), gammas(one)
    out["steps_taken"] = int(keras.ops.convert_to_numpy(one.optimizer.iterations))

    # Several epochs: mirrored and single-device runs agree.
    model, history = fit(mirrored, True)
    out["mirrored"], out["history"] = gammas(model), history
    model, _ = fit(single, True)
    out["single"] = gammas(model)

    # A custom loop under the strategy with attach_ista.
    with mirrored.scope():
        model = make_model()
        optimizer = keras.optimizers.SGD(LR)
        optimizer.build(model.trainable_variables)
        ista = attach_ista(model, RHO, penalty="uniform", optimizer=optimizer)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=None)

    @tf.function
    def train_step(xb, yb):
        def step(xb, yb):
            with tf.GradientTape() as tape:
                per_example = loss_fn(yb, model(xb, training=True))
                loss = tf.nn.compute_average_loss(per_example,
                                                  global_batch_size=16)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
        mirrored.run(step, args=(xb, yb))

    dataset = mirrored.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(16))
    for _ in range(3):
        for xb, yb in dataset:
            train_step(xb, yb)
    out["custom_loop"] = gammas(model)
    out["custom_loop_zero_fraction"] = ista.zero_fraction()
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def result():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run(
        [sys.executable, "-c", SCENARIO], env=env, cwd=root,
        capture_output=True, text=True, timeout=600,
    )
    lines = [s for s in run.stdout.splitlines() if s.startswith("RESULT")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT"):])


def soft_threshold(w, t):
    w = np.asarray(w)
    return np.sign(w) * np.maximum(np.abs(w) - t, 0)


def test_runs_on_two_replicas(result):
    assert result["replicas"] == 2
    assert result["steps_taken"] == 1


def test_mirrored_ista_step_is_the_prox_of_the_mirrored_sgd_step(result):
    zeros = 0
    for name, plain in result["one_step_plain"].items():
        ista = np.asarray(result["one_step_ista"][name])
        np.testing.assert_allclose(ista, soft_threshold(plain, 0.1 * 1.0),
                                   atol=1e-6)
        zeros += int(np.sum(ista == 0))
    assert zeros > 0


def test_mirrored_matches_single_device(result):
    for name, single in result["single"].items():
        np.testing.assert_allclose(result["mirrored"][name], single, atol=1e-4)
    zeros = np.concatenate([np.asarray(v) == 0 for v in result["mirrored"].values()])
    assert 0 < zeros.mean() < 1
    history = result["history"]
    assert len(history["gamma_zero_fraction"]) == 3
    assert history["gamma_zero_fraction"][-1] == pytest.approx(zeros.mean())


def test_custom_loop_under_the_strategy_matches_fit(result):
    for name, single in result["single"].items():
        np.testing.assert_allclose(result["custom_loop"][name], single, atol=1e-4)
    assert result["custom_loop_zero_fraction"] > 0
