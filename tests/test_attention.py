"""Heads as prunable units: mask heads and MLP units in the original, cut
them with `plan_dead` + `slim_model`, outputs match (docs/transformers.md)."""

import keras
import numpy as np
import pytest

import keras_slim
from tests import zoo

L = keras.layers
T, D = 5, 8  # tokens, model width
# Keras 3.15's JAX backend fails to run MultiHeadAttention with value_dim
# != key_dim (the original model too: jax.nn.dot_product_attention's
# fallback reshapes values to the key width); there, value_dim = key_dim.
UNEQUAL_DIMS = keras.backend.backend() != "jax"


def _value_dim(value_dim):
    return value_dim if UNEQUAL_DIMS else None


def _mlp(x, name, hidden=12):
    up = L.Dense(hidden, activation="relu", name=f"{name}_up")(x)
    return L.Dense(x.shape[-1], name=f"{name}_down")(up)


def _head(x):
    pooled = L.GlobalAveragePooling1D(name="pool")(x) if len(x.shape) == 3 \
        else L.GlobalAveragePooling2D(name="pool")(x)
    return L.Dense(3, name="logits")(pooled)


def pre_norm(**attention):
    """x + MHA(LN(x)), then x + MLP(LN(x)): the ViT block."""
    inputs = keras.Input((T, 6))
    x = L.Dense(D, name="embed")(inputs)
    n = L.LayerNormalization(name="ln1")(x)
    options = dict(num_heads=4, key_dim=3, value_dim=_value_dim(5))
    options.update(attention)
    x = L.Add(name="res1")([x, L.MultiHeadAttention(**options,
                                                    name="mha")(n, n)])
    n = L.LayerNormalization(name="ln2")(x)
    x = L.Add(name="res2")([x, _mlp(n, "mlp")])
    return keras.Model(inputs, _head(x))


def post_norm():
    """LN(x + MHA(x)), then LN(x + MLP(x)): the BERT block."""
    inputs = keras.Input((T, 6))
    x = L.Dense(D, name="embed")(inputs)
    a = L.MultiHeadAttention(3, 4, name="mha")(x, x)
    x = L.LayerNormalization(name="ln1")(L.Add(name="res1")([x, a]))
    x = L.LayerNormalization(name="ln2")(
        L.Add(name="res2")([x, _mlp(x, "mlp")]))
    return keras.Model(inputs, _head(x))


def image_axes():
    """Attention over the two spatial axes of an image-like tensor."""
    inputs = keras.Input((4, 3, 5))
    x = L.Conv2D(D, 1, name="embed")(inputs)
    n = L.LayerNormalization(name="ln1")(x)
    a = L.MultiHeadAttention(4, 2, value_dim=_value_dim(3),
                             attention_axes=(1, 2),
                             name="mha")(n, n)
    x = L.Add(name="res1")([x, a])
    x = L.Add(name="res2")([x, _mlp(L.LayerNormalization(name="ln2")(x),
                                    "mlp")])
    return keras.Model(inputs, _head(x))


def output_shape():
    """`output_shape` wider than the query, read by a projection: the
    attention output is a group of its own."""
    inputs = keras.Input((T, 6))
    x = L.Dense(D, name="embed")(inputs)
    a = L.MultiHeadAttention(4, 3, output_shape=10, name="mha")(x, x)
    x = L.Add(name="res1")([x, L.Dense(D, name="proj")(L.ReLU()(a))])
    x = L.Add(name="res2")([x, _mlp(L.LayerNormalization(name="ln")(x),
                                    "mlp")])
    return keras.Model(inputs, _head(x))


def cross_attention():
    """Distinct query, value and key inputs, an attention mask, no bias."""
    query = keras.Input((T, 6), name="query")
    memory = keras.Input((7, 4), name="memory")
    mask = keras.Input((T, 7), dtype="bool", name="mask")
    q = L.Dense(D, name="embed")(query)
    value = L.Dense(6, name="value_in")(memory)
    key = L.Dense(5, name="key_in")(memory)
    a = L.MultiHeadAttention(4, 3, value_dim=_value_dim(2), use_bias=False,
                             name="mha")(q, value, key, attention_mask=mask)
    x = L.Add(name="res1")([q, a])
    x = L.Add(name="res2")([x, _mlp(L.LayerNormalization(name="ln")(x),
                                    "mlp")])
    return keras.Model([query, memory, mask], _head(x))


def grouped(heads=6, groups=2):
    inputs = keras.Input((T, 6))
    x = L.Dense(D, name="embed")(inputs)
    n = L.LayerNormalization(name="ln1")(x)
    a = L.GroupQueryAttention(3, heads, groups, name="mha")(n, n)
    x = L.Add(name="res1")([x, a])
    x = L.Add(name="res2")([x, _mlp(L.LayerNormalization(name="ln2")(x),
                                    "mlp")])
    return keras.Model(inputs, _head(x))


MODELS = {
    "pre_norm": pre_norm,
    "post_norm": post_norm,
    "no_bias": lambda: pre_norm(use_bias=False, value_dim=None),
    "image_axes": image_axes,
    "output_shape": output_shape,
    "cross_attention": cross_attention,
}


def _zero_rows(variable, axis, rows):
    value = keras.ops.convert_to_numpy(variable).copy()
    index = [slice(None)] * value.ndim
    index[axis] = rows
    value[tuple(index)] = 0
    variable.assign(value)


def _output_kernel(layer):
    return next(v for v in layer.weights
                if v.path.endswith("attention_output/kernel"))


def _inputs(model, rng):
    feeds = []
    for tensor in model.inputs:
        shape = (3,) + tuple(tensor.shape[1:])
        if "bool" in str(tensor.dtype):
            feeds.append(rng.random(shape) > 0.3)
        else:
            feeds.append(rng.normal(size=shape).astype("float32"))
    return feeds if len(feeds) > 1 else feeds[0]


def _names(layers):
    return [layer.name for layer in layers]


def _mask_slim_check(model, dead_heads, dead_units, tmp_path):
    """Zero the heads' output rows and the units' down rows, plan_dead +
    slim_model: exact, smaller, saved, named, verified, original kept."""
    rng = np.random.default_rng(0)
    attention = model.get_layer("mha")
    _zero_rows(_output_kernel(attention), 0, dead_heads)
    _zero_rows(model.get_layer("mlp_down").kernel, 0, dead_units)
    feeds = _inputs(model, rng)
    before = zoo.outputs(model, feeds)
    weights = [w.copy() for w in model.get_weights()]

    plan = keras_slim.plan_dead(model)
    heads = np.setdiff1d(np.arange(plan.widths["mha:heads"]),
                         plan.kept["mha:heads"])
    np.testing.assert_array_equal(heads, np.sort(dead_heads))
    np.testing.assert_array_equal(plan.removed("mlp_up"), np.sort(dead_units))
    slim = keras_slim.slim_model(model, plan, verify=True)

    zoo.assert_close(before, zoo.outputs(slim, feeds))
    assert keras_slim.count_params(slim) < keras_slim.count_params(model)
    assert keras_slim.count_macs(slim) < keras_slim.count_macs(model)
    new = slim.get_layer("mha")
    config = new.get_config()
    heads_key = "num_heads" if "num_heads" in config else "num_query_heads"
    assert config[heads_key] == attention.get_config()[heads_key] - len(
        dead_heads)
    assert _names(slim.layers) == _names(model.layers)
    inner = _names(attention._flatten_layers(include_self=False))
    assert _names(new._flatten_layers(include_self=False)) == inner
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    path = tmp_path / "slim.keras"
    slim.save(path)
    loaded = keras.saving.load_model(path)
    zoo.assert_close(before, zoo.outputs(loaded, feeds))
    return plan, slim


@pytest.mark.parametrize("name", sorted(MODELS))
def test_mask_then_slim_is_exact(name, tmp_path):
    keras.utils.set_random_seed(1)
    L.Softmax(), L.Dropout(0.1)  # inner ones get numbered names
    model = MODELS[name]()
    heads = model.get_layer("mha").num_heads
    _mask_slim_check(model, np.array([1, heads - 1]), np.array([0, 4, 5]),
                     tmp_path)


def test_output_channels_of_attention_are_cut(tmp_path):
    """Zero rows of the layer reading the attention output: its output
    channels go too (`output_shape` rewritten)."""
    keras.utils.set_random_seed(2)
    model = output_shape()
    _zero_rows(model.get_layer("proj").kernel, 0, [2, 7])
    feeds = _inputs(model, np.random.default_rng(1))
    before = zoo.outputs(model, feeds)
    plan = keras_slim.plan_dead(model)
    np.testing.assert_array_equal(plan.removed("mha"), [2, 7])
    slim = keras_slim.slim_model(model, plan, verify=True)
    assert slim.get_layer("mha").get_config()["output_shape"] == (8,)
    zoo.assert_close(before, zoo.outputs(slim, feeds))


@pytest.mark.parametrize("dead, kept_config", [
    ([3, 4, 5], (3, 1)),  # a whole key-value group (heads 3-5)
    ([0, 4], (4, 2)),  # one query head in every group
])
def test_grouped_query_attention_mask_then_slim(dead, kept_config, tmp_path):
    keras.utils.set_random_seed(3)
    model = grouped()
    _, slim = _mask_slim_check(model, np.array(dead), np.array([1, 2]),
                               tmp_path)
    config = slim.get_layer("mha").get_config()
    assert (config["num_query_heads"],
            config["num_key_value_heads"]) == kept_config


def test_grouped_query_attention_keeps_what_groups_need():
    """A dead head alone in its group stays when the other group keeps
    all its heads: equal heads per group."""
    keras.utils.set_random_seed(4)
    model = grouped()
    _zero_rows(_output_kernel(model.get_layer("mha")), 0, [1])
    assert "mha:heads" not in keras_slim.plan_dead(model).kept


def test_grouped_query_attention_refuses_unequal_groups():
    model = grouped()
    plan = keras_slim.PruningPlan({"mha:heads": [0, 1, 2, 3]})
    with pytest.raises(ValueError, match="GroupQueryAttention layer `mha`"):
        keras_slim.slim_model(model, plan)


def test_heads_are_a_group_and_plans_round_trip():
    model = pre_norm()
    groups = {g.name: g for g in keras_slim.channel_groups(model)}
    heads = groups["mha:heads"]
    assert (heads.width, heads.unit, heads.members, heads.prunable) == (
        4, "heads", ["mha"], True)
    assert groups["mlp_up"].unit == "channel"
    plan = keras_slim.PruningPlan({"mha:heads": [0, 3]}).complete(
        groups.values())
    assert keras_slim.PruningPlan.from_json(plan.to_json()) == plan
    slim = keras_slim.slim_model(model, plan)
    assert slim.get_layer("mha").num_heads == 2
    assert slim.get_layer("mha").query_dense.kernel.shape == (D, 2, 3)


def test_layer_normalization_keeps_its_width_whole():
    """The residual stream is normalized by LayerNormalization: frozen,
    and a plan cutting it is refused."""
    for factory in (pre_norm, post_norm):
        model = factory()
        group = {g.name: g for g in keras_slim.channel_groups(model)}["embed"]
        assert not group.prunable and "LayerNormalization" in group.frozen
        with pytest.raises(ValueError, match="cannot be pruned"):
            keras_slim.slim_model(model, keras_slim.PruningPlan(
                {"embed": range(4)}))


def test_verify_catches_heads_cut_by_a_wrong_rule():
    """verify silences the cut heads in the original, apart from the
    surgery: a rule that slices the wrong heads is caught."""
    from keras_slim.core.rules import attention

    class WrongHeads(attention._MultiHeadAttention):
        def slice(self, layer, weights, pos):
            pos = dict(pos, heads=np.setdiff1d(
                np.arange(layer.num_heads), pos["heads"])[:len(pos["heads"])])
            return super().slice(layer, weights, pos)

    model = pre_norm()
    plan = keras_slim.PruningPlan({"mha:heads": [0, 1]})
    keras_slim.slim_model(model, plan, verify=True)
    with keras_slim.rules.registered(L.MultiHeadAttention, WrongHeads):
        with pytest.raises(ValueError, match="verify: layer `mha`"):
            keras_slim.slim_model(model, plan, verify=True)


def test_attention_macs_follow_heads_and_tokens():
    """Projections plus QK^T and AV, by hand: T=5 queries, S=7 keys."""
    query = keras.Input((5, 8))
    value = keras.Input((7, 6))
    out = L.MultiHeadAttention(3, 4, value_dim=2, name="mha")(query, value)
    model = keras.Model([query, value], out)
    projections = 5 * 8 * 3 * 4 + 7 * 6 * 3 * 4 + 7 * 6 * 3 * 2 + 5 * 6 * 8
    scores = 3 * 5 * 7 * (4 + 2)
    assert keras_slim.count_macs(model) == projections + scores
    # Over two axes of a 4 x 3 map: every position attends to all 12.
    model = image_axes()
    value_dim = model.get_layer("mha").value_dim
    macs = keras_slim.core.counting.macs_by_layer(
        keras_slim.core.graph.ChannelGraph(model))["mha"]
    assert macs == 12 * D * 4 * (2 + 2 + value_dim) + \
        12 * 4 * value_dim * D + 4 * 12 * 12 * (2 + value_dim)


def test_grouped_query_attention_macs():
    model = grouped()
    macs = keras_slim.core.counting.macs_by_layer(
        keras_slim.core.graph.ChannelGraph(model))["mha"]
    projections = 3 * (6 * T * D + 2 * T * (D + D) + 6 * T * D)
    assert macs == projections + 2 * 6 * T * T * 3


def _value_batchnorm_model():
    """Cross-attention whose value input (wider than the query) passes a
    BatchNormalization."""
    query = keras.Input((T, 4))
    memory = keras.Input((6, 3))
    value = L.BatchNormalization(name="bn")(L.Dense(9, name="value_in")(
        memory))
    a = L.MultiHeadAttention(2, 2, name="mha")(query, value)
    model = keras.Model([query, memory], L.Dense(3, name="logits")(
        L.GlobalAveragePooling1D()(a)))
    model.get_layer("bn").gamma.assign(
        np.array([0, 1, 1, 0, 1, 1, 1, 0, 1], "float32"))
    return model


def test_zero_gamma_channels_on_the_value_input():
    """Zero gamma and beta: cut from the value kernel, exact. Beta kept:
    no bias can take it, so plan_zero_gamma keeps them and a plan that
    cuts them is warned about, naming the input."""
    model = _value_batchnorm_model()
    bn = model.get_layer("bn")
    bn.beta.assign(np.where(keras.ops.convert_to_numpy(bn.gamma) == 0, 0.0,
                            0.5).astype("float32"))
    feeds = _inputs(model, np.random.default_rng(2))
    before = zoo.outputs(model, feeds)
    plan = keras_slim.plan_dead(model)
    np.testing.assert_array_equal(plan.removed("value_in"), [0, 3, 7])
    slim = keras_slim.slim_model(model, plan, verify=True)
    assert slim.get_layer("mha").value_dense.kernel.shape[0] == 6
    zoo.assert_close(before, zoo.outputs(slim, feeds))

    bn.beta.assign(np.full(9, 0.5, "float32"))
    assert "value_in" not in keras_slim.plan_zero_gamma(model).kept
    with pytest.warns(UserWarning, match="cut from its input `value`"):
        keras_slim.slim_model(model, plan)


def test_stages_place_heads_with_their_layer():
    stages = keras_slim.stages(pre_norm())
    names = {g.name for groups in stages.values() for g in groups}
    assert {"mha:heads", "mlp_up"} <= names
