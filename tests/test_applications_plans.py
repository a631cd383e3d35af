"""Plans on keras.applications models (weights=None: graph reading only)."""

import keras
import numpy as np
import pytest

from keras_slim.core.counting import count_macs
from keras_slim.core.graph import channel_groups
from keras_slim.core.surgery import slim_model
from keras_slim.planners import selection


@pytest.fixture(scope="module")
def resnet50():
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3),
                                        classes=10)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            width = layer.gamma.shape[0]
            layer.gamma.assign(rng.random(width).astype("float32"))
    return model


def final_widths(groups, plan):
    return {g.name: len(plan.kept.get(g.name, range(g.width)))
            for g in groups if g.prunable}


def test_global_gamma_removes_half_of_resnet50(resnet50):
    groups = channel_groups(resnet50)
    prunable = [g for g in groups if g.prunable]
    assert len(prunable) > 30 and all(g.batchnorms for g in prunable)
    total = sum(g.width for g in prunable)
    plan = selection.plan_global_gamma(resnet50, 0.5)
    plan.validate(groups)
    widths = final_widths(groups, plan)
    removed = total - sum(widths.values())
    assert 0.45 * total <= removed <= 0.55 * total
    assert min(widths.values()) >= 1
    frozen = {g.name for g in groups if not g.prunable}
    assert not frozen & set(plan.kept)


def test_global_gamma_round_to_8_on_resnet50_slims_and_runs(resnet50):
    groups = channel_groups(resnet50)
    plan = selection.plan_global_gamma(resnet50, 0.5, round_to=8)
    widths = final_widths(groups, plan)
    assert all(w % 8 == 0 and w >= 8 for w in widths.values())
    total = sum(g.width for g in groups if g.prunable)
    removed = total - sum(widths.values())
    assert 0.4 * total <= removed <= 0.6 * total
    slim = slim_model(resnet50, plan)
    # Tied layers (the residual stream of a stage) keep the same channels.
    for group in groups:
        if group.prunable:
            for name in group.producers:
                assert slim.get_layer(name).filters == widths[group.name]
    x = np.random.default_rng(1).random((2, 32, 32, 3)).astype("float32")
    assert slim.predict(x, verbose=0).shape == (2, 10)
    assert count_macs(slim) < 0.6 * count_macs(resnet50)


def test_l1_norm_inside_blocks_only_on_resnet50(resnet50):
    merged = selection.merged_layers(resnet50)
    assert "conv2_block1_0_conv" in merged and "conv2_block1_3_conv" in merged
    assert "conv2_block1_1_conv" not in merged
    plan = selection.plan_l1_norm(resnet50, 0.3, skip=merged)
    inside = {g.name for g in channel_groups(resnet50)
              if g.prunable and not set(g.producers) & set(merged)}
    # The stem and the first two convolutions of each of the 16 blocks.
    assert len(inside) == 33 and "conv1_conv" in inside
    assert set(plan.kept) == inside


def test_count_macs_matches_published_numbers():
    # Keras' ResNet50 strides the first 1x1 convolution of a block, as the
    # original paper (3.8 G multiply-adds; torchvision's v1.5 gives 4.1 G).
    resnet = keras.applications.ResNet50(weights=None)
    assert 3.8e9 <= count_macs(resnet) <= 4.1e9
    mobilenet = keras.applications.MobileNetV2(weights=None)
    assert 290e6 <= count_macs(mobilenet) <= 310e6


def test_global_gamma_on_mobilenetv2_depthwise_groups():
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            width = layer.gamma.shape[0]
            layer.gamma.assign(rng.random(width).astype("float32"))
    groups = channel_groups(model)
    # An expansion group is scaled twice: after the 1x1 and the depthwise.
    expand = next(g for g in groups if g.name == "block_1_expand")
    assert len(expand.batchnorms) == 2
    plan = selection.plan_global_gamma(model, 0.5, round_to=8)
    widths = final_widths(groups, plan)
    assert all(w % 8 == 0 or w == g.width
               for g in groups if g.prunable for w in [widths[g.name]])
    slim = slim_model(model, plan)
    kept = len(plan.kept["block_1_expand"])
    assert slim.get_layer("block_1_depthwise").kernel.shape[2] == kept
    x = rng.random((2, 32, 32, 3)).astype("float32")
    assert slim.predict(x, verbose=0).shape == (2, 10)
