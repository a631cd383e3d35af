"""The importance protocol: the built-in importances through the registry,
"magnitude" checked against the weights the surgery removes, and bad
weights or arguments refused by name."""

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.core.graph import ChannelGraph
from keras_slim.planners import importance as importance_lib
from keras_slim.planners import scores as scores_lib

import zoo

L = keras.layers


def _kernel_mass(model):
    """sum of w^2 over every kernel of the model."""
    return sum(float(np.sum(np.asarray(v.numpy(), "float64") ** 2))
               for v in model.weights if "kernel" in v.name)


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for v in model.trainable_weights:
        v.assign(rng.normal(size=v.shape).astype("float32"))
    return model


@pytest.mark.backend("tensorflow")  # NumPy over weights: one backend will do
@pytest.mark.parametrize("name", ["residual", "depthwise", "flatten",
                                  "transpose", "concat"])
def test_magnitude_is_the_norm_of_the_weights_a_cut_removes(name):
    # Independent of the rules' axes: the kernel mass that slim_model
    # removes when one unit goes is that unit's squared group norm.
    model = _randomize(zoo.FACTORIES[name]())
    graph = ChannelGraph(model)
    groups = [g for g in graph.groups if g.prunable]
    scores = scores_lib.score_groups(graph, groups, "magnitude")
    assert set(scores) == {g.name for g in groups}
    total = _kernel_mass(model)
    for i, group in enumerate(groups[:2]):
        for unit in (0 if i == 0 else group.width - 1,):
            keep = np.delete(np.arange(group.width), unit)
            plan = keras_slim.PruningPlan({group.name: keep},
                                          {group.name: group.width})
            slim = keras_slim.slim_model(model, plan, fold="none")
            removed = total - _kernel_mass(slim)
            assert scores[group.name][unit] ** 2 == pytest.approx(
                removed, rel=1e-5), (group.name, unit)


def test_magnitude_by_hand_on_a_chain():
    model = _randomize(zoo.chain())
    graph = ChannelGraph(model)
    group = graph.group_by_name["a_conv"]
    got = scores_lib.score_groups(graph, [group], "magnitude")["a_conv"]
    a = model.get_layer("a_conv").kernel.numpy()
    b = model.get_layer("b_conv").kernel.numpy()
    expected = np.sqrt((a ** 2).sum(axis=(0, 1, 2))
                       + (b ** 2).sum(axis=(0, 1, 3)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # "max" of the two kernels' masses, and the L1 power.
    got = scores_lib.score_groups(graph, [group], "magnitude",
                                  reduction="max")["a_conv"]
    np.testing.assert_allclose(got, np.sqrt(np.maximum(
        (a ** 2).sum(axis=(0, 1, 2)), (b ** 2).sum(axis=(0, 1, 3)))),
        rtol=1e-5)
    l1 = scores_lib.MagnitudeImportance(p=1)
    got = scores_lib.score_groups(graph, [group], l1)["a_conv"]
    np.testing.assert_allclose(got, np.abs(a).sum(axis=(0, 1, 2))
                               + np.abs(b).sum(axis=(0, 1, 3)), rtol=1e-5)


def test_every_planner_ranks_by_magnitude():
    model = _randomize(zoo.chain(padding="valid"))
    graph = ChannelGraph(model)
    groups = [g for g in graph.groups if g.prunable]
    scores = scores_lib.score_groups(graph, groups, "magnitude")
    expected = {name: np.sort(np.argsort(-s, kind="stable")[:len(s) // 2])
                for name, s in scores.items()}
    plans = [keras_slim.plan_uniform(model, 0.5, score="magnitude"),
             keras_slim.plan_l1_norm(model, 0.5, score="magnitude"),
             keras_slim.prune(model, "uniform", ratio=0.5, score="magnitude",
                              return_plan=True)[1]]
    for plan in plans:
        assert {k: list(v) for k, v in plan.kept.items()} == \
            {k: list(v) for k, v in expected.items()}
    ranked = keras_slim.plan_global_gamma(model, 0.5, score="magnitude")
    flat = np.concatenate([scores[n] for n in scores])
    threshold = np.sort(flat)[flat.size // 2 - 1]
    for name, kept in ranked.kept.items():
        assert np.all(scores[name][kept] > threshold)


def test_the_built_in_importances_are_registered_objects():
    assert {"gamma", "l1", "magnitude", "random"} <= set(keras_slim.IMPORTANCES)
    for name, entry in keras_slim.IMPORTANCES.items():
        assert isinstance(entry, keras_slim.Importance)
        assert entry.name == name and entry.summary
        assert importance_lib.importance_name(entry) == name
        assert importance_lib.get_importance(name) is entry
    assert keras_slim.IMPORTANCES["gamma"].reduction == "max"
    assert keras_slim.IMPORTANCES["l1"].reduction == "sum"
    assert keras_slim.IMPORTANCES["random"].get_config() == {
        "name": "random", "reduction": None}
    # Called directly, as Torch-Pruning's importances are.
    model = zoo.chain()
    zoo.randomize_batchnorms(model, np.random.default_rng(0))
    graph = ChannelGraph(model)
    group = graph.group_by_name["a_conv"]
    np.testing.assert_allclose(
        keras_slim.IMPORTANCES["gamma"](graph, group),
        np.abs(model.get_layer("a_bn").gamma.numpy()))


def test_an_object_goes_where_its_name_does():
    model = zoo.chain()
    zoo.randomize_batchnorms(model, np.random.default_rng(1))
    by_object = keras_slim.plan_uniform(
        model, 0.5, score=scores_lib.GammaImportance())
    assert by_object == keras_slim.plan_uniform(model, 0.5, score="gamma")
    seeded = keras_slim.plan_uniform(model, 0.5, score="random", seed=3)
    assert seeded == keras_slim.plan_uniform(
        model, 0.5, score=keras_slim.IMPORTANCES["random"], seed=3)


# -- bad weights and arguments (issue 32, item 10) ------------------------------


def test_an_inf_gamma_is_refused_like_nan():
    model = zoo.chain()
    zoo.randomize_batchnorms(model, np.random.default_rng(0))
    gamma = model.get_layer("b_bn").gamma.numpy()
    gamma[5] = np.inf
    model.get_layer("b_bn").gamma.assign(gamma)
    for plan in (lambda: keras_slim.plan_global_gamma(model, 0.5),
                 lambda: keras_slim.plan_uniform(model, 0.5)):
        with pytest.raises(ValueError, match=r"group `b_conv` contain inf "
                           r"\(layer `b_bn`, channel 5\)"):
            plan()


def test_nan_kernels_are_refused_by_l1_and_magnitude():
    model = zoo.chain()
    kernel = model.get_layer("b_conv").kernel.numpy()
    kernel[0, 0, 0, 3] = np.nan
    model.get_layer("b_conv").kernel.assign(kernel)
    with pytest.raises(ValueError, match="layer `b_conv` contain NaN"):
        keras_slim.plan_l1_norm(model, 0.5)
    with pytest.raises(ValueError, match="`kernel` of layer `b_conv` "
                       "contains NaN"):
        keras_slim.plan_uniform(model, 0.5, score="magnitude")


def test_uniform_without_batchnorm_says_why_its_plan_is_empty():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, activation="relu", name="p0")(inputs)
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    with pytest.warns(UserWarning, match="plan_uniform keeps every group "
                      "whole: no prunable group is scaled by a "
                      "BatchNormalization"):
        assert keras_slim.plan_uniform(model, 0.5).kept == {}


@pytest.mark.parametrize("seed", ["abc", -1, 1.5, True])
def test_a_bad_seed_is_refused_by_name(seed):
    with pytest.raises(ValueError, match=r"Expected `seed` to be None or a "
                       r"non-negative integer. Received: seed="):
        keras_slim.plan_uniform(zoo.chain(), 0.5, score="random", seed=seed)


def test_bad_importances_are_refused_by_name():
    with pytest.raises(ValueError, match="`score` to be one of gamma, l1, .*"
                       "magnitude, random.*Received: score='taylor'"):
        keras_slim.plan_global_gamma(zoo.chain(), 0.5, score="taylor")
    with pytest.raises(ValueError, match="Conflicting arguments: "
                       "`reduction`.*importance `random`"):
        keras_slim.plan_uniform(zoo.chain(), 0.5, score="random",
                                reduction="max")
    with pytest.raises(ValueError, match="Expected `p` to be a positive"):
        scores_lib.MagnitudeImportance(p=0)
    with pytest.raises(ValueError, match="Expected `name`"):
        keras_slim.register_importance("two words", scores_lib.L1Importance)
    with pytest.raises(TypeError, match="Expected `importance`"):
        keras_slim.register_importance("number", 3)


def _attention_block():
    x = keras.Input((5, 12))
    a = L.MultiHeadAttention(4, 3, value_dim=5, name="mha")(x, x)
    h = L.Dense(16, activation="relu", name="up")(L.Add()([x, a]))
    return keras.Model(x, L.Dense(12, name="down")(h))


@pytest.mark.backend("tensorflow")  # NumPy over weights: one backend will do
def test_head_magnitude_is_the_norm_of_the_weights_a_cut_removes():
    # As for channels: the kernel mass slim_model removes with one head is
    # that head's squared magnitude, and its L1 the |w| removed.
    model = _randomize(_attention_block(), seed=3)
    graph = ChannelGraph(model)
    group = graph.group_by_name["mha:heads"]
    assert group.unit == "heads" and group.width == 4
    l2 = scores_lib.score_groups(graph, [group], "magnitude")["mha:heads"]
    l1 = scores_lib.score_groups(graph, [group], "l1")["mha:heads"]
    total = _kernel_mass(model)
    absolute = sum(float(np.sum(np.abs(v.numpy()))) for v in model.weights
                   if "kernel" in v.name)
    for head in range(4):
        keep = np.delete(np.arange(4), head)
        plan = keras_slim.PruningPlan({"mha:heads": keep}, {"mha:heads": 4})
        slim = keras_slim.slim_model(model, plan, fold="none")
        assert slim.get_layer("mha").num_heads == 3
        assert l2[head] ** 2 == pytest.approx(
            total - _kernel_mass(slim), rel=1e-5)
        assert l1[head] == pytest.approx(absolute - sum(
            float(np.sum(np.abs(v.numpy()))) for v in slim.weights
            if "kernel" in v.name), rel=1e-5)


def test_l1_and_magnitude_keep_the_heavy_heads():
    model = _randomize(_attention_block(), seed=4)
    layer = model.get_layer("mha")
    scale = np.array([0.1, 3.0, 0.2, 2.0], "float32")  # heads 1 and 3 heavy
    for sub in (layer._query_dense, layer._key_dense, layer._value_dense):
        sub.kernel.assign(sub.kernel.numpy() * scale[None, :, None])
    out = layer._output_dense
    out.kernel.assign(out.kernel.numpy() * scale[:, None, None])
    for score in ("l1", "magnitude"):
        plan = keras_slim.plan_l1_norm(model, 0.5, score=score)
        assert list(plan.kept["mha:heads"]) == [1, 3], score
