import keras
import numpy as np
import pytest

from keras_slim.core.graph import channel_groups
from keras_slim.core.surgery import slim_model
from keras_slim.planners import selection

L = keras.layers


def chain_model(widths=(16, 24)):
    """conv-BN-ReLU blocks, then a Dense head (the output, frozen)."""
    x = inputs = keras.Input((8, 8, 3))
    for i, width in enumerate(widths):
        x = L.Conv2D(width, 3, padding="same", name=f"conv{i}")(x)
        x = L.BatchNormalization(name=f"bn{i}")(x)
        x = L.ReLU(name=f"relu{i}")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(4, name="head")(x))


def residual_model():
    """`a` and `b` tied by an Add (16 channels), then `c` (8 channels)."""
    inputs = keras.Input((8, 8, 3))
    a = L.ReLU()(L.BatchNormalization(name="bn_a")(
        L.Conv2D(16, 3, padding="same", name="a")(inputs)))
    b = L.BatchNormalization(name="bn_b")(
        L.Conv2D(16, 3, padding="same", name="b")(a))
    s = L.ReLU(name="relu_s")(L.Add(name="add")([a, b]))
    c = L.ReLU()(L.BatchNormalization(name="bn_c")(
        L.Conv2D(8, 3, padding="same", name="c")(s)))
    out = L.Dense(4, name="head")(L.GlobalAveragePooling2D()(c))
    return keras.Model(inputs, out)


def plain_model():
    """No BatchNormalization at all."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="p0")(inputs)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="p1")(x)
    out = L.Dense(4, name="head")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, out)


def set_gammas(model, values):
    for name, gamma in values.items():
        model.get_layer(name).gamma.assign(np.asarray(gamma, "float32"))


def random_gammas(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.gamma.assign(rng.random(layer.gamma.shape[0]).astype("float32"))


def kept_widths(plan):
    return {name: len(idx) for name, idx in plan.kept.items()}


# -- constrain_width ------------------------------------------------------


@pytest.mark.parametrize(
    "width,keep,kwargs,expected",
    [
        (16, 0, {}, 1),  # never empty
        (16, 0, {"min_channels": 4}, 4),
        (3, 0, {"min_channels": 4}, 3),  # narrower group: kept whole
        (16, 16, {"round_to": 8}, 16),
        (16, 11, {"round_to": 8}, 8),
        (16, 12, {"round_to": 8}, 16),  # halves round up
        (16, 2, {"round_to": 8}, 8),  # at least round_to
        (4, 1, {"round_to": 8}, 4),  # narrower than round_to: whole
        (20, 19, {"round_to": 8}, 20),  # nearest multiple above width
        (20, 17, {"round_to": 8}, 16),
        (64, 1, {"max_ratio": 0.5}, 32),
        (64, 1, {"max_ratio": 0.5, "round_to": 24}, 48),  # rounds up to bound
        (12, 1, {"max_ratio": 0.1, "round_to": 8}, 12),  # no multiple fits
        (16, 5, {"min_channels": 6, "round_to": 4}, 8),
    ],
)
def test_constrain_width(width, keep, kwargs, expected):
    assert selection.constrain_width(width, keep, **kwargs) == expected


def test_constrain_width_invariants():
    rng = np.random.default_rng(0)
    for _ in range(500):
        width = int(rng.integers(1, 70))
        keep = int(rng.integers(0, width + 1))
        min_channels = int(rng.integers(1, 10))
        round_to = int(rng.choice([1, 2, 4, 8]))
        max_ratio = float(rng.choice([0.3, 0.5, 0.9, 1.0]))
        out = selection.constrain_width(width, keep, min_channels, round_to,
                                        max_ratio)
        assert 1 <= out <= width
        assert out >= min(width, min_channels)
        assert width - out <= max_ratio * width + 1e-9
        assert out == width or out % round_to == 0
        if out < width and round_to == 1:
            assert out == max(keep, min(width, min_channels),
                              width - int(np.floor(max_ratio * width + 1e-9)))


# -- plan_global_gamma ----------------------------------------------------


def test_global_gamma_prunes_globally_smallest():
    model = chain_model((4, 4))
    set_gammas(model, {"bn0": [0.9, 0.1, 0.8, 0.2], "bn1": [0.05, 0.7, 0.3, 0.6]})
    plan = selection.plan_global_gamma(model, 0.5)
    # The 4 smallest of the 8: 0.05 (conv1[0]), 0.1 (conv0[1]), 0.2
    # (conv0[3]), 0.3 (conv1[2]).
    assert plan.kept["conv0"].tolist() == [0, 2]
    assert plan.kept["conv1"].tolist() == [1, 3]
    assert "head" not in plan.kept


def test_global_gamma_honours_ratio_and_never_empties():
    model = chain_model((16, 24))
    random_gammas(model)
    model.get_layer("bn1").gamma.assign(np.full(24, 1e-4, "float32"))
    for ratio in (0.0, 0.2, 0.5, 0.7):
        plan = selection.plan_global_gamma(model, ratio)
        removed = sum(plan.widths[n] - len(k) for n, k in plan.kept.items())
        # All 24 gammas of conv1 are smallest: min_channels keeps one back.
        expected = round(ratio * 40)
        assert expected - 1 <= removed <= expected
        assert all(len(k) >= 1 for k in plan.kept.values())
    plan = selection.plan_global_gamma(model, 0.7, min_channels=5)
    assert len(plan.kept["conv1"]) == 5


def test_global_gamma_tied_group_scored_by_max_over_batchnorms():
    model = residual_model()
    small = np.full(16, 0.01, "float32")
    large = np.linspace(0.5, 1.0, 16).astype("float32")
    # Channel i small in bn_a only for even i, in both for odd i.
    gamma_a = small.copy()
    gamma_b = np.where(np.arange(16) % 2 == 0, large, small)
    set_gammas(model, {"bn_a": gamma_a, "bn_b": gamma_b,
                       "bn_c": np.full(8, 2.0)})
    plan = selection.plan_global_gamma(model, 8 / 24)
    assert set(plan.kept) == {"a"}
    assert plan.kept["a"].tolist() == list(range(0, 16, 2))
    slim = slim_model(model, plan)
    assert slim.get_layer("a").filters == slim.get_layer("b").filters == 8
    assert slim.get_layer("bn_b").gamma.shape == (8,)


def test_global_gamma_round_to_and_max_ratio():
    model = chain_model((32, 48))
    random_gammas(model, seed=3)
    plan = selection.plan_global_gamma(model, 0.6, round_to=8)
    assert plan.kept
    assert all(len(k) % 8 == 0 for k in plan.kept.values())
    plan = selection.plan_global_gamma(model, 0.4, max_ratio=0.5)
    for name, idx in plan.kept.items():
        assert len(idx) >= plan.widths[name] / 2


def test_global_gamma_skip_and_frozen():
    model = chain_model((16, 24))
    random_gammas(model)
    plan = selection.plan_global_gamma(model, 0.5, skip=["bn1"])
    assert set(plan.kept) == {"conv0"}
    plan = selection.plan_global_gamma(model, 0.5, skip="conv0")
    assert set(plan.kept) == {"conv1"}
    frozen = {g.name for g in channel_groups(model) if not g.prunable}
    assert frozen and not frozen & set(plan.kept)


def test_global_gamma_needs_batchnorm():
    with pytest.raises(ValueError, match="BatchNormalization"):
        selection.plan_global_gamma(plain_model(), 0.5)


# -- plan_l1_norm ---------------------------------------------------------


def test_l1_norm_prunes_smallest_filters():
    model = chain_model((4, 6))
    kernel = np.ones((3, 3, 3, 4), "float32") * np.array([3, 1, 2, 0.5], "float32")
    model.get_layer("conv0").kernel.assign(kernel)
    plan = selection.plan_l1_norm(model, 0.5, skip=["conv1"])
    assert set(plan.kept) == {"conv0"}
    assert plan.kept["conv0"].tolist() == [0, 2]


def test_l1_norm_dict_ratios_and_tied_groups():
    model = residual_model()
    plan = selection.plan_l1_norm(model, {"b": 0.5, "c": 0.25})
    assert kept_widths(plan) == {"a": 8, "c": 6}
    norms = (np.abs(model.get_layer("a").kernel.numpy()).sum(axis=(0, 1, 2))
             + np.abs(model.get_layer("b").kernel.numpy()).sum(axis=(0, 1, 2)))
    assert plan.kept["a"].tolist() == sorted(np.argsort(-norms)[:8].tolist())
    slim = slim_model(model, plan)
    assert slim.predict(np.zeros((1, 8, 8, 3)), verbose=0).shape == (1, 4)
    with pytest.raises(ValueError, match="Conflicting ratios"):
        selection.plan_l1_norm(model, {"a": 0.5, "b": 0.25})
    with pytest.raises(ValueError, match="kept whole by `skip`"):
        selection.plan_l1_norm(model, {"c": 0.5}, skip=["c"])
    with pytest.raises(ValueError, match="`nope`"):
        selection.plan_l1_norm(model, {"nope": 0.5})
    with pytest.raises(ValueError, match="cannot be pruned"):
        selection.plan_l1_norm(model, {"head": 0.5})


def test_merged_layers_prunes_only_inside_blocks():
    model = residual_model()
    assert selection.merged_layers(model) == ["a", "b"]
    plan = selection.plan_l1_norm(model, 0.5,
                                  skip=selection.merged_layers(model))
    assert kept_widths(plan) == {"c": 4}


# -- plan_uniform ---------------------------------------------------------


@pytest.mark.parametrize("score", ["gamma", "l1", "random"])
def test_uniform_same_share_everywhere(score):
    model = chain_model((16, 24))
    random_gammas(model)
    plan = selection.plan_uniform(model, 0.25, score=score, seed=1)
    assert kept_widths(plan) == {"conv0": 12, "conv1": 18}
    slim = slim_model(model, plan)
    assert slim.get_layer("conv1").filters == 18


def test_uniform_scores_pick_different_channels():
    model = chain_model((16, 24))
    random_gammas(model)
    gamma = np.abs(model.get_layer("bn0").gamma.numpy())
    plan = selection.plan_uniform(model, 0.5, score="gamma")
    assert plan.kept["conv0"].tolist() == sorted(np.argsort(-gamma)[:8].tolist())
    first = selection.plan_uniform(model, 0.5, score="random", seed=7)
    again = selection.plan_uniform(model, 0.5, score="random", seed=7)
    other = selection.plan_uniform(model, 0.5, score="random", seed=8)
    assert first == again
    assert first != other


def test_uniform_gamma_keeps_groups_without_batchnorm():
    plan = selection.plan_uniform(plain_model(), 0.5, score="l1")
    assert kept_widths(plan) == {"p0": 8, "p1": 4}
    with pytest.raises(ValueError, match="no channel group"):
        # Nothing to score by gamma: a clear error, not an empty plan.
        selection.plan_global_gamma(plain_model(), 0.5)
    assert selection.plan_uniform(plain_model(), 0.5, score="gamma").kept == {}


def test_uniform_min_channels_and_round_to():
    model = chain_model((16, 24))
    plan = selection.plan_uniform(model, 0.9, score="l1", min_channels=3)
    assert kept_widths(plan) == {"conv0": 3, "conv1": 3}
    plan = selection.plan_uniform(model, 0.6, score="l1", round_to=8)
    assert kept_widths(plan) == {"conv0": 8, "conv1": 8}


# -- bad arguments --------------------------------------------------------


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, "0.5", True, None, float("nan")])
def test_bad_ratio(ratio):
    model = chain_model()
    for planner in (selection.plan_global_gamma, selection.plan_l1_norm,
                    selection.plan_uniform):
        with pytest.raises(ValueError, match="Expected `ratio` in \\[0, 1\\)"):
            planner(model, ratio)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"min_channels": 0}, "min_channels"),
        ({"min_channels": 2.5}, "min_channels"),
        ({"round_to": 0}, "round_to"),
        ({"max_ratio": 0.0}, "max_ratio"),
        ({"max_ratio": 1.5}, "max_ratio"),
        ({"max_ratio": 0.3}, "Conflicting constraints"),
        ({"skip": ["conv0", "missing_layer"]}, "`missing_layer`"),
    ],
)
def test_bad_constraints(kwargs, match):
    model = chain_model()
    for planner in (selection.plan_global_gamma, selection.plan_l1_norm,
                    selection.plan_uniform):
        with pytest.raises(ValueError, match=match):
            planner(model, 0.5, **kwargs)


def test_bad_score():
    with pytest.raises(ValueError, match="`score`"):
        selection.plan_uniform(chain_model(), 0.5, score="taylor")


def test_plans_are_valid_and_model_untouched():
    model = residual_model()
    random_gammas(model)
    before = [w.copy() for w in model.get_weights()]
    groups = channel_groups(model)
    for plan in (
        selection.plan_global_gamma(model, 0.5, round_to=4),
        selection.plan_l1_norm(model, 0.5),
        selection.plan_uniform(model, 0.5, score="random", seed=0),
    ):
        plan.validate(groups)
        assert all(plan.widths[n] == next(g.width for g in groups if g.name == n)
                   for n in plan.kept)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_sequential_nested_and_batchnorm_names():
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        L.Conv2D(16, 3, name="s0"), L.BatchNormalization(name="sbn0"), L.ReLU(),
        L.Conv2D(8, 3, name="s1"),
        L.BatchNormalization(scale=False, name="sbn1"), L.ReLU(),
        L.GlobalAveragePooling2D(), L.Dense(2, name="out"),
    ])
    plan = selection.plan_l1_norm(model, {"sbn0": 0.5})  # a BN names its group
    assert kept_widths(plan) == {"s0": 8}
    # sbn1 has no gamma: plan_global_gamma leaves that group whole.
    plan = selection.plan_global_gamma(model, 0.5)
    assert kept_widths(plan) == {"s0": 8}
    outer_in = keras.Input((8, 8, 3))
    outer = keras.Model(outer_in, L.Dense(3, name="top")(model(outer_in)))
    plan = selection.plan_uniform(outer, 0.5, score="l1")
    assert kept_widths(plan) == {"s0": 8, "s1": 4, "out": 1}  # now inner
    # Skipping the nested model keeps every group inside it whole.
    assert selection.plan_uniform(outer, 0.5, score="l1",
                                  skip=[model.name]).kept == {}
