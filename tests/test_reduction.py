"""Group reductions: how the |gamma| (or filter norm) copies of a tied
channel make its one score, for every global planner.

"max" stays the default of `plan_global_gamma` (the papers' behaviour), and
"sum" that of `plan_l1_norm` (Li et al.); "mean", "sum" and a function of the
user's can be asked for. On a residual stream, "max" keeps a channel while
one branch needs it; "mean" lets its many small copies count against it.
"""

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.core.graph import ChannelGraph
from keras_slim.planners import scores as scores_lib
from tests import zoo

L = keras.layers


def _residual(width=16, blocks=3):
    """A stream of `width` channels, three BNs on it (the stem's and each
    block's last), each block with an interior of `width` channels."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(width, 3, padding="same", name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU()(x)
    for i in range(blocks):
        y = L.Conv2D(width, 3, padding="same", name=f"b{i}_in")(x)
        y = L.BatchNormalization(name=f"b{i}_in_bn")(y)
        y = L.ReLU()(y)
        y = L.Conv2D(width, 3, padding="same", name=f"b{i}_out")(y)
        y = L.BatchNormalization(name=f"b{i}_out_bn")(y)
        x = L.ReLU()(L.Add(name=f"b{i}_add")([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def _set_gammas(model, rng):
    """Stream channels: one large copy (in `stem_bn`), small ones in the
    blocks; interiors: middling."""
    for bn in zoo.batchnorms(model):
        n = bn.gamma.shape[0]
        if bn.name == "stem_bn":
            value = rng.uniform(0.8, 1.0, n)
        elif bn.name.endswith("_out_bn"):
            value = rng.uniform(0.0, 0.1, n)
        else:
            value = rng.uniform(0.2, 0.6, n)
        bn.gamma.assign(value.astype("float32"))


def _stream(graph):
    return next(g for g in graph.groups if "stem_bn" in g.batchnorms)


@pytest.fixture
def model():
    keras.utils.set_random_seed(0)
    model = _residual()
    rng = np.random.default_rng(0)
    zoo.randomize_batchnorms(model, rng)
    _set_gammas(model, rng)
    return model


def test_the_default_is_the_largest_copy_as_before(model):
    graph = ChannelGraph(model)
    stream = _stream(graph)
    gammas = np.stack([np.abs(keras.ops.convert_to_numpy(
        graph.layer(name).gamma)) for name in stream.batchnorms], axis=1)
    found = scores_lib.score_groups(graph, [stream], "gamma")[stream.name]
    np.testing.assert_allclose(found, gammas.max(axis=1))
    assert (keras_slim.plan_global_gamma(model, 0.5).kept.keys()
            == keras_slim.plan_global_gamma(model, 0.5,
                                            reduction="max").kept.keys())
    for name, kept in keras_slim.plan_global_gamma(model, 0.5).kept.items():
        np.testing.assert_array_equal(
            kept, keras_slim.plan_global_gamma(
                model, 0.5, reduction="max").kept[name])
    mean = scores_lib.score_groups(graph, [stream], "gamma",
                                   reduction="mean")[stream.name]
    total = scores_lib.score_groups(graph, [stream], "gamma",
                                    reduction="sum")[stream.name]
    np.testing.assert_allclose(mean, gammas.mean(axis=1))
    np.testing.assert_allclose(total, gammas.sum(axis=1))


def test_mean_thins_the_residual_stream_that_max_keeps_wide(model):
    graph = ChannelGraph(model)
    stream = _stream(graph)
    by_max = keras_slim.plan_global_gamma(model, 0.4)
    by_mean = keras_slim.plan_global_gamma(model, 0.4, reduction="mean")
    width = stream.width
    assert len(by_max.kept.get(stream.name, range(width))) == width
    assert len(by_mean.kept[stream.name]) < width // 2
    interiors = [g.name for g in graph.groups
                 if any(b.endswith("_in_bn") for b in g.batchnorms)]
    assert sum(len(by_max.kept[n]) for n in interiors) < sum(
        len(by_mean.kept.get(n, range(width))) for n in interiors)


def test_a_plan_by_the_mean_slims_exactly_against_the_reference(model):
    plan = keras_slim.plan_global_gamma(model, 0.4, reduction="mean")
    slim = keras_slim.slim_model(model, plan, fold="exact", verify=True)
    assert slim.count_params() < model.count_params()


def test_a_reduction_of_the_users_own(model):
    graph = ChannelGraph(model)
    stream = _stream(graph)
    smallest = scores_lib.score_groups(
        graph, [stream], "gamma", reduction=lambda v: v.min(axis=1))
    gammas = np.stack([np.abs(keras.ops.convert_to_numpy(
        graph.layer(name).gamma)) for name in stream.batchnorms], axis=1)
    np.testing.assert_allclose(smallest[stream.name], gammas.min(axis=1))
    plan = keras_slim.plan_uniform(model, 0.5,
                                   reduction=lambda v: v.min(axis=1))
    assert len(plan.kept[stream.name]) == stream.width // 2

    def flat(values):
        return values.ravel()

    with pytest.raises(ValueError, match="reduction `flat`.*group `"):
        keras_slim.plan_global_gamma(model, 0.5, reduction=flat)


def test_bad_reductions_are_refused_naming_the_argument(model):
    with pytest.raises(ValueError, match="`reduction`.*Received: "
                       "reduction='median'"):
        keras_slim.plan_global_gamma(model, 0.5, reduction="median")
    with pytest.raises(ValueError, match="Conflicting arguments: `reduction`"):
        keras_slim.plan_uniform(model, 0.5, score=lambda g, grp: None,
                                reduction="mean")


def test_l1_keeps_its_sum_and_takes_other_reductions(model):
    graph = ChannelGraph(model)
    stream = _stream(graph)
    norms = np.stack([scores_lib.filter_norms(graph.layer(p), stream.width)
                      for p in stream.producers], axis=1)
    got = scores_lib.score_groups(graph, [stream], "l1")[stream.name]
    np.testing.assert_allclose(got, norms.sum(axis=1))
    got = scores_lib.score_groups(graph, [stream], "l1",
                                  reduction="max")[stream.name]
    np.testing.assert_allclose(got, norms.max(axis=1))
    plan = keras_slim.plan_l1_norm(model, 0.5, reduction="max")
    keep = np.sort(np.argsort(-norms.max(axis=1), kind="stable")[
        : stream.width // 2])
    np.testing.assert_array_equal(plan.kept[stream.name], keep)


def test_budgets_pass_the_reduction_to_the_planner(model):
    plan = keras_slim.plan_for_budget(model, "global_gamma", macs=0.6,
                                      reduction="mean").plan
    slim = keras_slim.slim_model(model, plan)
    assert keras_slim.count_macs(slim) <= 0.6 * keras_slim.count_macs(model)
    by_max = keras_slim.plan_for_budget(model, "global_gamma", macs=0.6).plan
    stream = _stream(ChannelGraph(model)).name
    assert len(plan.kept[stream]) < len(by_max.kept.get(stream, range(16)))


# -- normalizing each group's scores ---------------------------------------------


def test_normalizing_by_the_mean_spreads_the_cut_over_the_groups(model):
    # The blocks' interiors score 0.2-0.6 against the stream's 0.8-1.0 (its
    # largest copy): by raw |gamma| the global threshold cuts only the
    # interiors. Divided by their own means, every group's scores sit
    # around 1, and the stream shares the cut.
    graph = ChannelGraph(model)
    interiors = [g.name for g in graph.groups
                 if any(b.endswith("_in_bn") for b in g.batchnorms)]
    stream = _stream(graph).name
    raw = keras_slim.plan_global_gamma(model, 0.3)
    assert stream not in raw.kept  # every cut in the interiors
    even = keras_slim.plan_global_gamma(model, 0.3, normalize="mean")
    assert len(even.kept[stream]) < 16
    def interior_cut(plan):
        return sum(16 - len(plan.kept.get(n, range(16))) for n in interiors)

    assert interior_cut(even) < interior_cut(raw)
    scores = scores_lib.score_groups(graph, graph.groups, "gamma",
                                     normalize="mean")
    for values in scores.values():
        assert np.mean(values) == pytest.approx(1.0)
    # Within a group the ranking is the raw one: the same channels go.
    for name in interiors:
        gammas = np.abs(keras.ops.convert_to_numpy(
            graph.layer(graph.group_by_name[name].batchnorms[0]).gamma))
        kept = even.kept.get(name, np.arange(16))
        assert gammas[kept].min() >= np.delete(gammas, kept).max(initial=0)
    slim = keras_slim.slim_model(model, even, fold="exact", verify=True)
    assert slim.count_params() < model.count_params()


def test_normalizers_named_and_of_the_users_own(model):
    graph = ChannelGraph(model)
    for name, reduce in (("max", np.max), ("sum", np.sum)):
        scores = scores_lib.score_groups(graph, graph.groups, "gamma",
                                         normalize=name)
        assert all(reduce(v) == pytest.approx(1.0) for v in scores.values())
    ranks = keras_slim.plan_global_gamma(
        model, 0.3, normalize=lambda v: np.argsort(np.argsort(v)) / v.size)
    assert len(ranks.kept[_stream(graph).name]) < 16
    with pytest.raises(ValueError, match="`normalize`.*normalize='median'"):
        keras_slim.plan_global_gamma(model, 0.3, normalize="median")
    with pytest.raises(ValueError, match="normalizer `<lambda>`.*group `"):
        keras_slim.plan_global_gamma(model, 0.3, normalize=lambda v: v[:1])
    # The knapsack and the budgets take it too.
    plan = keras_slim.plan_for_budget(model, "latency_aware", macs=0.7,
                                      normalize="mean").plan
    assert len(plan.kept[_stream(graph).name]) < 16
