import keras
import numpy as np
import pytest

from keras_slim.protocols import magnitude

L = keras.layers


def small_model():
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, padding="same", name="conv0")(inputs)
    x = L.BatchNormalization(momentum=0.9)(x)
    x = L.ReLU()(x)
    x = L.Conv2D(8, 3, padding="same", name="conv1",
                 kernel_constraint=keras.constraints.MaxNorm(100.0))(x)
    x = L.ReLU()(x)
    out = L.Dense(3, name="head")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, out)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 64)
    return x, y


def kernels(model):
    return {p: keras.ops.convert_to_numpy(v)
            for p, v in magnitude.prunable_kernels(model).items()}


def test_magnitude_masks_global_and_layer():
    arrays = {"a": np.array([[0.1, -5.0], [0.3, 2.0]]),
              "b": np.array([-0.2, 4.0, 0.05])}
    masks = magnitude.masks_of_arrays(arrays, 0.3)  # round(2.1) of 7
    assert masks["a"].tolist() == [[False, True], [True, True]]
    assert masks["b"].tolist() == [True, True, False]
    masks = magnitude.masks_of_arrays(arrays, 0.5, scope="layer")
    assert masks["a"].tolist() == [[False, True], [False, True]]
    assert masks["b"].tolist() == [False, True, False]  # round(1.5) = 2
    # Weights pruned before stay pruned, even when large.
    previous = {"a": np.array([[True, False], [True, True]]), "b": np.ones(3, bool)}
    masks = magnitude.masks_of_arrays(arrays, 2 / 7, masks=previous)
    assert not masks["a"][0, 1] and masks["a"].sum() + masks["b"].sum() == 5
    assert magnitude.sparsity_of(masks) == pytest.approx(2 / 7)


def test_one_shot_keeps_pruned_weights_at_zero():
    model = small_model()
    x, y = data()
    # A first fit without the callback traces a train step without masks:
    # the callback must make the next fit use its constraints anyway.
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    before = kernels(model)
    mask = magnitude.MagnitudeMask(0.5)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0,
                        callbacks=[mask])
    after = kernels(model)
    assert set(mask.masks) == {"conv0/kernel", "conv1/kernel"}
    assert magnitude.sparsity_of(mask.masks) == pytest.approx(0.5, abs=1e-3)
    expected = magnitude.masks_of_arrays(before, 0.5)
    for path in after:
        assert np.array_equal(mask.masks[path], expected[path])
        assert np.all(after[path][~mask.masks[path]] == 0)
        kept = mask.masks[path]
        assert not np.allclose(after[path][kept], before[path][kept])
    assert history.history["weight_sparsity"] == pytest.approx([0.5, 0.5])
    # Constraints are restored: the user's MaxNorm is back on conv1.
    assert model.get_layer("conv0").kernel.constraint is None
    assert isinstance(model.get_layer("conv1").kernel.constraint,
                      keras.constraints.MaxNorm)


def test_iterative_rounds_of_twenty_percent():
    model = small_model()
    x, y = data()
    mask = magnitude.MagnitudeMask(0.5, schedule="iterative", rate=0.2,
                                   start_epoch=1)
    history = model.fit(x, y, epochs=5, batch_size=32, verbose=0,
                        callbacks=[mask])
    sparsity = history.history["weight_sparsity"]
    # No mask during the dense epoch 0: no metric logged then.
    assert len(sparsity) == 4
    np.testing.assert_allclose(sparsity, [0.2, 0.36, 0.488, 0.5], atol=2e-3)
    for path, value in kernels(model).items():
        assert np.all(value[~mask.masks[path]] == 0)


def test_iterative_every_other_epoch_layer_scope():
    model = small_model()
    x, y = data()
    mask = magnitude.MagnitudeMask(0.3, schedule="iterative", round_epochs=2,
                                   scope="layer", layers=["conv1", "head"])
    history = model.fit(x, y, epochs=4, batch_size=32, verbose=0,
                        callbacks=[mask])
    np.testing.assert_allclose(history.history["weight_sparsity"],
                               [0.2, 0.2, 0.3, 0.3], atol=0.01)
    assert set(mask.masks) == {"conv1/kernel", "head/kernel"}
    for path in mask.masks:
        assert 1 - mask.masks[path].mean() == pytest.approx(0.3, abs=0.01)


def test_magnitude_masks_of_a_model():
    model = small_model()
    masks = magnitude.magnitude_masks(model, 0.5, scope="layer",
                                      layers=["conv1", "head"])
    assert set(masks) == {"conv1/kernel", "head/kernel"}
    kernel = model.get_layer("head").kernel.numpy()
    threshold = np.median(np.abs(kernel))
    assert np.all(np.abs(kernel[masks["head/kernel"]]) >= threshold)
    assert masks["head/kernel"].sum() == kernel.size // 2
    with pytest.raises(ValueError, match="`sparsity`"):
        magnitude.magnitude_masks(model, 1.2)
    with pytest.raises(ValueError, match="`scope`"):
        magnitude.magnitude_masks(model, 0.2, scope="row")


def test_masks_reapplied_in_a_new_fit_and_on_a_copy():
    model = small_model()
    x, y = data()
    first = magnitude.MagnitudeMask(0.6)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[first])
    # A fresh model, trained with the fixed masks of the first.
    other = small_model()
    fixed = magnitude.MagnitudeMask(masks=first.masks)
    other.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[fixed])
    for path, value in kernels(other).items():
        assert np.all(value[~first.masks[path]] == 0)
        assert np.count_nonzero(value) == first.masks[path].sum()
    dense = small_model()
    masked = magnitude.apply_masks(dense, first.masks)
    for path, value in kernels(masked).items():
        original = kernels(dense)[path]
        assert np.array_equal(value, original * first.masks[path])
    assert np.count_nonzero(kernels(dense)["conv0/kernel"]) == 72  # untouched


def test_bad_arguments():
    for kwargs, match in [
        ({"sparsity": 1.0}, "`sparsity`"),
        ({"sparsity": -0.1}, "`sparsity`"),
        ({}, "`sparsity`"),
        ({"sparsity": 0.5, "schedule": "cubic"}, "`schedule`"),
        ({"sparsity": 0.5, "rate": 0.0}, "`rate`"),
        ({"sparsity": 0.5, "round_epochs": 0}, "`round_epochs`"),
        ({"sparsity": 0.5, "scope": "row"}, "`scope`"),
    ]:
        with pytest.raises(ValueError, match=match):
            magnitude.MagnitudeMask(**kwargs)
    model = small_model()
    with pytest.raises(ValueError, match="`nope`"):
        magnitude.prunable_kernels(model, ["nope"])
    with pytest.raises(ValueError, match="conv9/kernel"):
        magnitude.apply_masks(model, {"conv9/kernel": np.ones(3, bool)})
    mlp = keras.Sequential([keras.Input((4,)), L.Dense(2)])
    with pytest.raises(ValueError, match="no convolution kernel"):
        magnitude.prunable_kernels(mlp)
