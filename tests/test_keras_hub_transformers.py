"""keras-hub's transformer backbones and tasks through `slim_model`.

Tiny from-scratch configs (never presets). An empty plan must return an
equal model: the same class, outputs, layer names and weights, a `.keras`
round trip, the original unchanged. keras-hub's layers that own variables
(class tokens, position embeddings) are cloned from a repaired config where
their own does not rebuild them (`core/layer_configs.py`); read-through
blocks the plan leaves whole keep their class (`core/kept_blocks.py`).

ViT's encoder is one layer holding every block; it is read through, so the
MLP units of one block are cut on their own, exactly.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.core import keras_compat
from keras_slim.core.graph import ChannelGraph
from tests import zoo

keras_hub = pytest.importorskip("keras_hub")
KH = keras_hub.models

# One block each (ViT gets two where one block is cut and one is not).
IMAGE = dict(image_shape=(8, 8, 3), patch_size=4, num_heads=2, hidden_dim=16)
TEXT = dict(vocabulary_size=20, num_layers=1, hidden_dim=16,
            intermediate_dim=32)
VISION = dict(patch_size=4, hidden_dim=16, num_layers=1, num_heads=2,
              intermediate_dim=32, image_shape=(8, 8, 3))

BACKBONES = {
    "vit": lambda: KH.ViTBackbone(mlp_dim=32, num_layers=2, **IMAGE),
    "deit": lambda: KH.DeiTBackbone(intermediate_dim=32, num_layers=1,
                                    **IMAGE),
    "dinov2": lambda: KH.DINOV2Backbone(
        position_embedding_shape=(8, 8, 3), **VISION),
    "clip_vision": lambda: KH.CLIPVisionEncoder(**VISION),
    "siglip_vision": lambda: KH.SigLIPVisionEncoder(**VISION),
    "bert": lambda: KH.BertBackbone(num_heads=2, max_sequence_length=8,
                                    **TEXT),
    "distil_bert": lambda: KH.DistilBertBackbone(
        num_heads=2, max_sequence_length=8, **TEXT),
    "gpt2": lambda: KH.GPT2Backbone(num_heads=2, max_sequence_length=8,
                                    **TEXT),
    "llama": lambda: KH.LlamaBackbone(num_query_heads=2,
                                      num_key_value_heads=1, **TEXT),
    "gemma": lambda: KH.GemmaBackbone(num_query_heads=2,
                                      num_key_value_heads=1, head_dim=8,
                                      **TEXT),
}


def _inputs(model, seed=0):
    """Random images, or token ids in the tiny vocabulary (segment ids 0/1,
    padding mask all ones)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for tensor in model.inputs:
        name = tensor.name
        shape = (2,) + tuple(d or 8 for d in tuple(tensor.shape)[1:])
        if "int" not in str(tensor.dtype) and "bool" not in str(tensor.dtype):
            feeds[name] = rng.normal(size=shape).astype("float32")
        elif "mask" in name:
            feeds[name] = np.ones(shape, "int32")
        else:
            high = 2 if "segment" in name else 20
            feeds[name] = rng.integers(0, high, shape).astype("int32")
    return feeds if len(feeds) > 1 else next(iter(feeds.values()))


def _slim(model, plan, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # barrier warnings (attention)
        return keras_slim.slim_model(model, plan, **options)


def _names(model, weighted=False):
    """Every layer's name, nested ones included (model inputs aside: Keras
    lists them in another order once a model is rebuilt); only those of
    layers with weights when `weighted`."""
    return sorted(layer.name for layer in keras_compat.flatten_layers(model)
                  if not isinstance(layer, keras.layers.InputLayer)
                  and (layer.weights or not weighted))


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


def _assert_same_weights(expected, actual):
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        np.testing.assert_array_equal(a, b)


def _round_trip(model, path):
    model.save(path)
    return keras.saving.load_model(path)


# One model per family on every backend, the others on TensorFlow only
# (keeping the JAX and PyTorch runs near a minute).
EVERY_BACKEND = {"vit", "bert", "distil_bert", "llama"}


@pytest.mark.parametrize("name", [
    name if name in EVERY_BACKEND
    else pytest.param(name, marks=pytest.mark.backend("tensorflow"))
    for name in sorted(BACKBONES)])
def test_empty_plan_returns_an_equal_backbone(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = BACKBONES[name]()
    inputs = _inputs(model)
    before, weights = zoo.outputs(model, inputs), _weights(model)
    slim = _slim(model, keras_slim.PruningPlan({}))
    assert type(slim) is type(model)
    assert _names(slim) == _names(model)
    _assert_same_weights(weights, _weights(slim))
    zoo.assert_close(before, zoo.outputs(slim, inputs), rtol=1e-6)
    _assert_same_weights(weights, _weights(model))  # original unchanged
    zoo.assert_close(before, zoo.outputs(model, inputs), rtol=0)
    loaded = _round_trip(slim, tmp_path / f"{name}.keras")
    assert type(loaded) is type(model)
    _assert_same_weights(weights, _weights(loaded))
    zoo.assert_close(before, zoo.outputs(loaded, inputs), rtol=1e-6)
    # keras-hub rebuilds a loaded model from its config, which names some
    # layers anew (Keras' `dropout_7`, CLIP's name prefix): the slim
    # model's file loads with the names the original's file loads with.
    reference = _round_trip(model, tmp_path / f"{name}_original.keras")
    assert _names(loaded, weighted=True) == _names(reference, weighted=True)


def _mlp_unit_plan(model, cuts, prefix=""):
    """Zero the down-projection rows of `cuts[i]` hidden units of block
    `i + 1` of a ViT, and the plan that cuts exactly those units (its
    groups named under `prefix` where the ViT is nested in a task)."""
    encoder = model.get_layer("vit_encoder")
    kept, widths = {}, {}
    for block, cut in zip(encoder.encoder_layers, cuts):
        kernel = keras.ops.convert_to_numpy(block.mlp.dense_2.kernel).copy()
        kernel[cut] = 0.0
        block.mlp.dense_2.kernel.assign(kernel)
        group = f"{prefix}vit_encoder/{block.name}/mlp/dense_1"
        width = kernel.shape[0]
        kept[group] = np.setdiff1d(np.arange(width), cut)
        widths[group] = width
    return keras_slim.PruningPlan(kept, widths=widths)


def _called_names(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = ChannelGraph(model)
    return sorted(graph.name_of(call.layer) for call in graph.calls
                  if isinstance(call.layer, keras.layers.Layer))


def test_vit_mlp_units_slim_exactly_through_the_read_through_encoder(
        tmp_path):
    keras.utils.set_random_seed(0)
    model = BACKBONES["vit"]()
    plan = _mlp_unit_plan(model, [np.array([1, 5, 6, 20, 31]), []])
    inputs = _inputs(model)
    before, weights = zoo.outputs(model, inputs), _weights(model)
    names = _called_names(model)
    slim = _slim(model, plan, verify=True)
    zoo.assert_close(before, zoo.outputs(slim, inputs), rtol=1e-5)
    assert slim.count_params() == model.count_params() - 5 * (16 + 1 + 16)
    assert _called_names(slim) == names
    assert [layer.name for layer in slim.layers] == [
        layer.name for layer in model.layers]
    _assert_same_weights(weights, _weights(model))  # original unchanged
    encoder = slim.get_layer("vit_encoder")
    first, second = encoder.get_layer("transformer_block_1"), \
        encoder.get_layer("transformer_block_2")
    assert first.get_layer("mlp").get_layer("dense_1").units == 27
    # The block the plan leaves whole keeps keras-hub's class.
    assert type(second).__name__ == "ViTEncoderBlock"
    # Its weights file round-trips into a second slim model (`.keras`
    # would rebuild the backbone from its config, at the original widths).
    path = tmp_path / "vit.weights.h5"
    slim.save_weights(path)
    again = _slim(model, plan)
    for variable in again.weights:
        variable.assign(np.zeros(variable.shape, variable.dtype))
    again.load_weights(path)
    zoo.assert_close(before, zoo.outputs(again, inputs), rtol=1e-5)


def _attention_of(block):
    found = [layer for layer in keras_compat.flatten_layers(block)
             if isinstance(layer, keras.layers.MultiHeadAttention)]
    assert len(found) == 1
    return found[0]


def test_vit_heads_and_mlp_units_mask_then_slim_exactly():
    # Heads whose output-projection rows are zero and MLP units whose
    # down-projection rows are zero are found by plan_dead and cut, block
    # by block, through the read-through encoder.
    keras.utils.set_random_seed(0)
    model = KH.ViTBackbone(mlp_dim=32, num_layers=2, **dict(IMAGE,
                                                           num_heads=4))
    blocks = model.get_layer("vit_encoder").encoder_layers
    dead_heads, dead_units = [[1, 3], [0]], [[2, 9], [4, 30, 31]]
    for block, heads, units in zip(blocks, dead_heads, dead_units):
        out = _attention_of(block)._output_dense.kernel
        kernel = keras.ops.convert_to_numpy(out).copy()
        kernel[heads] = 0.0
        out.assign(kernel)
        down = block.mlp.dense_2.kernel
        kernel = keras.ops.convert_to_numpy(down).copy()
        kernel[units] = 0.0
        down.assign(kernel)
    inputs = _inputs(model)
    before, weights = zoo.outputs(model, inputs), _weights(model)
    names = _called_names(model)
    plan = keras_slim.plan_dead(model)
    for block, heads, units in zip(blocks, dead_heads, dead_units):
        prefix = f"vit_encoder/{block.name}"
        assert list(plan.kept[f"{prefix}/mha:heads"]) == [
            h for h in range(4) if h not in heads]
        assert list(plan.kept[f"{prefix}/mlp/dense_1"]) == [
            u for u in range(32) if u not in units]
    slim = _slim(model, plan, verify=True)
    zoo.assert_close(before, zoo.outputs(slim, inputs), rtol=1e-5)
    # A head of 4 (key_dim 4, width 16): q, k, v kernels and biases and its
    # output rows; an MLP unit: its dense_1 column, bias and dense_2 row.
    head, unit = 3 * (16 * 4 + 4) + 4 * 16, 16 + 1 + 16
    assert slim.count_params() == model.count_params() - 3 * head - 5 * unit
    assert keras_slim.count_macs(slim) < keras_slim.count_macs(model)
    encoder = slim.get_layer("vit_encoder")
    for block, heads in zip(blocks, dead_heads):
        new = encoder.get_layer(block.name)
        assert _attention_of(new).num_heads == 4 - len(heads)
    assert _called_names(slim) == names
    _assert_same_weights(weights, _weights(model))  # original unchanged


def _call(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _fit_changes_weights(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))  # the tasks output logits
    start = _weights(model)
    history = model.fit(x, y, batch_size=len(y), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b)
               for a, b in zip(start, _weights(model)))


def _empty_plan_task_works(task, x, y, path):
    """The empty plan's slim task: its class, names, predictions, a
    `.keras` round trip and a step of `fit`."""
    before = _call(task, x)
    slim = _slim(task, keras_slim.PruningPlan({}))
    assert type(slim) is type(task)
    assert _names(slim) == _names(task)
    np.testing.assert_allclose(slim.predict(x, verbose=0), before,
                               rtol=1e-6, atol=1e-7)
    loaded = _round_trip(slim, path)
    assert type(loaded) is type(task)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), before,
                               rtol=1e-6, atol=1e-7)
    _fit_changes_weights(slim, x, y)
    return slim


@pytest.mark.slow  # fits and saves a task: ~15 s on TensorFlow
def test_vit_image_classifier_stays_usable(tmp_path):
    keras.utils.set_random_seed(0)
    task = KH.ViTImageClassifier(backbone=BACKBONES["vit"](), num_classes=3)
    x = _inputs(task.backbone)
    y = np.array([0, 2])
    empty = _empty_plan_task_works(task, x, y, tmp_path / "vit.keras")
    assert type(empty.backbone) is type(task.backbone)

    plan = _mlp_unit_plan(task.backbone, [[0, 3], [7, 8, 9]],
                          prefix=f"{task.backbone.name}/")
    before = _call(task, x)
    cut = _slim(task, plan, verify=True)
    assert type(cut) is type(task)
    assert cut.count_params() < task.count_params()
    np.testing.assert_allclose(cut.predict(x, verbose=0), before,
                               rtol=1e-5, atol=1e-6)
    _fit_changes_weights(cut, x, y)
    np.testing.assert_allclose(_call(task, x), before, rtol=0)


@pytest.mark.slow  # fits and saves a task: ~10 s on TensorFlow
def test_bert_text_classifier_stays_usable(tmp_path):
    keras.utils.set_random_seed(0)
    task = KH.BertTextClassifier(backbone=BACKBONES["bert"](), num_classes=2,
                                 preprocessor=None)
    x = _inputs(task)
    y = np.array([0, 1])
    before = _call(task, x)
    _empty_plan_task_works(task, x, y, tmp_path / "bert.keras")
    np.testing.assert_allclose(_call(task, x), before, rtol=0)
