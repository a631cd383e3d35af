import keras
import numpy as np
import pytest

from keras_slim.core.counting import count_macs
from keras_slim.core.surgery import slim_model
from keras_slim.planners import selection
from keras_slim.protocols import rethinking as protocols
from keras_slim.protocols.magnitude import MagnitudeMask

L = keras.layers


def chain_model(widths=(16, 24), use_bias=True):
    x = inputs = keras.Input((8, 8, 3))
    for i, width in enumerate(widths):
        x = L.Conv2D(width, 3, padding="same", use_bias=use_bias,
                     name=f"conv{i}")(x)
        x = L.BatchNormalization(name=f"bn{i}")(x)
        x = L.ReLU()(x)
    out = L.Dense(4, name="head")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, out)


def perturb(model, seed=0):
    """Stand-in for training: every weight moves."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        value = value + rng.normal(size=value.shape).astype(value.dtype)
        if variable.name == "moving_variance":
            value = np.abs(value) + 0.1
        variable.assign(value)


def arrays(model):
    return {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}


# -- reinitialize -----------------------------------------------------------


def test_reinitialize_same_architecture_fresh_weights():
    inner_in = keras.Input((8, 8, 3))
    norm = L.Normalization(name="norm")
    norm.adapt(np.random.default_rng(0).normal(3.0, 2.0, (32, 8, 8, 3)))
    inner = keras.Model(inner_in, norm(inner_in), name="inner")
    base = chain_model()
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, base(inner(inputs)))
    perturb(base)
    before = arrays(model)
    first = protocols.reinitialize(model, seed=3)
    again = protocols.reinitialize(model, seed=3)
    other = protocols.reinitialize(model, seed=4)
    new = arrays(first)
    assert list(new) == list(before)
    for path, value in new.items():
        assert value.shape == before[path].shape
        assert np.array_equal(value, arrays(again)[path])
        if path.endswith("kernel"):
            assert not np.allclose(value, before[path])
            assert not np.allclose(value, arrays(other)[path])
    assert np.all(new["bn0/moving_mean"] == 0)
    assert np.all(new["bn0/gamma"] == 1)
    assert np.array_equal(new["norm/mean"], before["norm/mean"])  # kept
    assert all(np.array_equal(v, arrays(model)[p]) for p, v in before.items())


def test_reinitialize_seed_none_differs_and_bad_seed():
    model = chain_model()
    a = protocols.reinitialize(model)
    b = protocols.reinitialize(model)
    assert not np.allclose(a.get_layer("conv0").kernel.numpy(),
                           b.get_layer("conv0").kernel.numpy())
    with pytest.raises(TypeError, match="`seed`"):
        protocols.reinitialize(model, seed="zero")


# -- scratch_budget ---------------------------------------------------------


def test_scratch_budget():
    model = chain_model()
    slim = slim_model(model, selection.plan_uniform(model, 0.5, score="l1"))
    base, pruned = count_macs(model), count_macs(slim)
    assert pruned < base
    budget = protocols.scratch_budget(model, slim, 160)
    assert budget == int(160 * base / pruned) and budget > 160
    assert protocols.scratch_budget(model, slim, 90, cap=2) == min(
        int(90 * base / pruned), 180)
    assert protocols.scratch_budget(model, slim, 100, cap=1.5) == 150
    assert protocols.scratch_budget(4_000, 1_000, 10) == 40
    assert protocols.scratch_budget(4_000, 1_000, 10, cap=2) == 20
    for kwargs, match in [({"epochs": 0}, "`epochs`"), ({"epochs": 1.5}, "`epochs`"),
                          ({"epochs": 10, "cap": 0.5}, "`cap`")]:
        with pytest.raises(ValueError, match=match):
            protocols.scratch_budget(model, slim, **kwargs)
    with pytest.raises(ValueError, match="`pruned_model`"):
        protocols.scratch_budget(model, 0, 10)


# -- snapshot and rewind ----------------------------------------------------


def test_rewind_slimmed_model_to_initial_weights():
    model = chain_model()
    initial = protocols.snapshot_weights(model)
    start = arrays(model)
    perturb(model)  # "training"
    plan = selection.plan_uniform(model, 0.5, score="l1")
    slim = slim_model(model, plan)
    trained = arrays(slim)
    ticket = protocols.rewind(slim, initial, plan=plan)
    k0, k1 = plan.kept["conv0"], plan.kept["conv1"]
    got = arrays(ticket)
    assert np.array_equal(got["conv0/kernel"], start["conv0/kernel"][..., k0])
    assert np.array_equal(got["conv1/kernel"],
                          start["conv1/kernel"][:, :, k0][..., k1])
    assert np.array_equal(got["bn1/gamma"], start["bn1/gamma"][k1])
    assert np.array_equal(got["head/kernel"], start["head/kernel"][k1])
    assert np.array_equal(got["head/bias"], start["head/bias"])
    assert all(np.array_equal(v, arrays(slim)[p]) for p, v in trained.items())
    x = np.zeros((1, 8, 8, 3), "float32")
    assert ticket.predict(x, verbose=0).shape == (1, 4)
    with pytest.raises(ValueError, match="Pass the `plan`"):
        protocols.rewind(slim, initial)


def test_rewind_bias_created_by_folding_is_zero():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv0")(inputs)
    x = L.ReLU()(L.BatchNormalization(name="bn0")(x))
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(x)
    x = L.ReLU()(x)
    model = keras.Model(inputs, L.Dense(4, name="head")(
        L.GlobalAveragePooling2D()(x)))
    initial = protocols.snapshot_weights(model)
    perturb(model)
    model.get_layer("bn0").beta.assign(np.full(16, 2.0, "float32"))
    plan = selection.plan_uniform(model, 0.5, score="l1", skip=["conv1"])
    slim = slim_model(model, plan)  # conv0's cut channels fold into a bias
    assert np.any(arrays(slim)["conv1/bias"] != 0)
    ticket = protocols.rewind(slim, initial, plan=plan)
    assert np.all(arrays(ticket)["conv1/bias"] == 0)
    assert np.array_equal(
        arrays(ticket)["conv1/kernel"],
        arrays(initial.model)["conv1/kernel"][:, :, plan.kept["conv0"]])


def test_rewind_masked_model():
    model = chain_model()
    initial = protocols.snapshot_weights(model)
    start = arrays(model)
    perturb(model)
    rng = np.random.default_rng(1)
    masks = {"conv0/kernel": rng.random((3, 3, 3, 16)) > 0.5,
             "conv1/kernel": rng.random((3, 3, 16, 24)) > 0.5}
    ticket = protocols.rewind(model, initial, masks=masks)
    got = arrays(ticket)
    for path, mask in masks.items():
        assert np.array_equal(got[path], start[path] * mask)
    assert np.array_equal(got["head/kernel"], start["head/kernel"])
    from_callback = protocols.rewind(model, initial,
                                     masks=MagnitudeMask(masks=masks))
    assert np.array_equal(arrays(from_callback)["conv1/kernel"],
                          got["conv1/kernel"])
    with pytest.raises(ValueError, match="conv7/kernel"):
        protocols.rewind(model, initial, masks={"conv7/kernel": np.ones(2, bool)})
    with pytest.raises(TypeError, match="`snapshot`"):
        protocols.rewind(model, start)


# -- multi-pass -------------------------------------------------------------


def test_slim_in_passes():
    calls = []

    def train_sparse(model, index):
        calls.append(("sparse", index, model.get_layer("conv0").filters))
        perturb(model, seed=index)

    def fine_tune(model, index):
        calls.append(("tune", index, model.get_layer("conv0").filters))
        return model

    model, plans = protocols.slim_in_passes(
        chain_model(), 2, train_sparse, fine_tune, method="uniform",
        ratio=0.5, score="gamma")
    assert calls == [("sparse", 0, 16), ("tune", 0, 8),
                     ("sparse", 1, 8), ("tune", 1, 4)]
    assert [p.widths["conv1"] for p in plans] == [24, 12]
    assert model.get_layer("conv1").filters == 6
    model, plans = protocols.slim_in_passes(
        chain_model(), 2, lambda m, i: None, lambda m, i: None,
        method="l1_norm", ratio=[0.5, 0.25])
    assert model.get_layer("conv0").filters == 6  # 16 -> 8 -> 6
    with pytest.raises(ValueError, match="2 passes"):
        protocols.slim_in_passes(chain_model(), 2, lambda m, i: None,
                                 lambda m, i: None, method="uniform",
                                 ratio=[0.5])
    with pytest.raises(ValueError, match="`passes`"):
        protocols.slim_in_passes(chain_model(), 0, print, print, ratio=0.5)


# -- the protocols end to end on real data ----------------------------------


def test_rethinking_protocols_on_digits():
    from sklearn.datasets import load_digits

    from keras_slim.tools.pruning import prune

    digits = load_digits()
    x = (digits.images[..., None] / 16.0).astype("float32")
    y = digits.target
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]

    def build():
        inputs = keras.Input((8, 8, 1))
        h = inputs
        for i, width in enumerate((16, 32)):
            h = L.Conv2D(width, 3, padding="same", name=f"conv{i}")(h)
            h = L.BatchNormalization(  # Network Slimming's L1 on gamma
                momentum=0.9, gamma_regularizer=keras.regularizers.L1(1e-3),
                name=f"bn{i}")(h)
            h = L.ReLU()(h)
            h = L.MaxPooling2D()(h)
        return keras.Model(inputs, L.Dense(10, name="head")(
            L.GlobalAveragePooling2D()(h)))

    def train(model, epochs, rate=0.01):
        schedule = keras.optimizers.schedules.CosineDecay(
            rate, decay_steps=epochs * 22)
        model.compile(keras.optimizers.Adam(schedule),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
        return model.evaluate(x_test, y_test, verbose=0)[1]

    model = build()
    initial = protocols.snapshot_weights(model)
    assert train(model, 4) > 0.85
    slim, plan = prune(model, "global_gamma", ratio=0.4, max_ratio=0.5,
                       return_plan=True)
    kept = sum(len(plan.kept.get(n, range(w))) for n, w in
               (("conv0", 16), ("conv1", 32)))
    assert 48 - round(0.4 * 48) <= kept < 48  # max_ratio may keep more
    assert len(plan.kept.get("conv0", range(16))) >= 8
    assert train(slim, 2, rate=0.001) > 0.8  # fine-tuned
    ticket = protocols.rewind(slim, initial, plan=plan)
    assert np.array_equal(ticket.get_layer("conv0").kernel.numpy(),
                          initial.model.get_layer("conv0").kernel.numpy()
                          [..., plan.kept["conv0"]])
    scratch = protocols.reinitialize(slim, seed=0)
    budget = protocols.scratch_budget(model, slim, 4, cap=1.5)
    assert budget == 6
    assert train(ticket, 4) > 0.8  # winning ticket
    assert train(scratch, budget) > 0.8  # Scratch-B
