import keras
import numpy as np
import pytest

from keras_slim.core.plan import PruningPlan
from keras_slim.core.surgery import slim_model
from keras_slim.planners import guidance

L = keras.layers


def vgg_model():
    """Three stages (8x8, 4x4, 2x2) of two conv-BN-ReLU each."""
    x = inputs = keras.Input((8, 8, 3))
    for stage, width in enumerate((16, 32, 32)):
        for i in range(2):
            x = L.Conv2D(width, 3, padding="same", name=f"s{stage}c{i}")(x)
            x = L.BatchNormalization(name=f"s{stage}bn{i}")(x)
            x = L.ReLU()(x)
        x = L.MaxPooling2D()(x)
    out = L.Dense(4, name="head")(L.Flatten()(x))
    return keras.Model(inputs, out)


def test_stages_by_feature_map_size():
    found = guidance.stages(vgg_model())
    assert {k: [g.name for g in v] for k, v in found.items()} == {
        (8, 8): ["s0c0", "s0c1"], (4, 4): ["s1c0", "s1c1"],
        (2, 2): ["s2c0", "s2c1"]}


def test_guided_gives_each_stage_its_average_share():
    model = vgg_model()
    widths = {"s0c0": 16, "s0c1": 16, "s1c0": 32, "s1c1": 32,
              "s2c0": 32, "s2c1": 32}
    kept = {"s0c0": 4, "s0c1": 12, "s1c0": 32, "s1c1": 16, "s2c0": 2}
    plan = PruningPlan({n: range(k) for n, k in kept.items()},
                       {n: widths[n] for n in kept})
    shares = guidance.stage_ratios(model, plan)
    assert shares == {(8, 8): 0.5, (4, 4): 0.75, (2, 2): 34 / 64}
    guided = guidance.plan_guided(model, plan)
    got = {n: len(k) for n, k in guided.kept.items()}
    assert got == {"s0c0": 8, "s0c1": 8, "s1c0": 24, "s1c1": 24,
                   "s2c0": 17, "s2c1": 17}
    # Averaged over runs.
    other = PruningPlan({"s0c0": range(16)}, {"s0c0": 16})
    assert guidance.stage_ratios(model, [plan, other])[(8, 8)] == 0.75
    # Stages from the layer names, and a guide from another model.
    by_name = guidance.stage_ratios(model, plan, stage_of=lambda n: n[:2])
    assert by_name == {"s0": 0.5, "s1": 0.75, "s2": 34 / 64}
    guided = guidance.plan_guided(model, {"s0": 0.25, "s1": 1.0, "s2": 0.5},
                                   stage_of=lambda n: n[:2], round_to=8)
    assert {n: len(k) for n, k in guided.kept.items()} == {
        "s0c0": 8, "s0c1": 8, "s2c0": 16, "s2c1": 16}
    slim = slim_model(model, guided)
    assert slim.predict(np.zeros((1, 8, 8, 3)), verbose=0).shape == (1, 4)
    with pytest.raises(ValueError, match="no share for stage"):
        guidance.plan_guided(model, {"s0": 0.5}, stage_of=lambda n: n[:2])
    with pytest.raises(ValueError, match="shares in"):
        guidance.plan_guided(model, {"s0": 0.0, "s1": 1, "s2": 1},
                              stage_of=lambda n: n[:2])


def test_guided_from_network_slimming_keeps_stage_shares():
    from keras_slim.planners.selection import plan_global_gamma

    model = vgg_model()
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            scale = 0.1 if layer.name.startswith("s2") else 1.0
            width = layer.gamma.shape[0]
            layer.gamma.assign((scale * rng.random(width)).astype("float32"))
    found = plan_global_gamma(model, 0.5)
    shares = guidance.stage_ratios(model, found)
    assert shares[(2, 2)] < shares[(8, 8)]  # the small gammas went first
    guided = guidance.plan_guided(model, found, score="random", seed=0)
    again = guidance.stage_ratios(model, guided)
    for key, share in shares.items():
        assert again[key] == pytest.approx(share, abs=1 / 16)
        groups = guidance.stages(model)[key]
        widths = {len(guided.kept.get(g.name, range(g.width))) for g in groups}
        assert len(widths) == 1  # uniform within the stage
