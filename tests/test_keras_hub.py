"""keras-hub's CNN backbones with BatchNormalization prune exactly.

Each backbone is built from a small config (the sizes keras-hub's own tests
use, or smaller). Half of every prunable group's channels get zero gammas in
all their BatchNormalizations; `plan_zero_gamma` and `slim_model(fold="exact",
verify=True)` must then shrink the backbone and reproduce its outputs, keep
its class, the names of its top-level layers and of every leaf layer its
graph calls. Their blocks are custom layers (`InvertedResidualBlock`,
`FusedMBConvBlock`, `HGNetV2Stage`): keras_slim reads them through.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.core.graph import ChannelGraph
from tests import zoo

keras_hub = pytest.importorskip("keras_hub")
KH = keras_hub.models


def _mobilenet():
    return KH.MobileNetBackbone(
        stackwise_expansion=[[40, 56], [64, 144], [72, 72], [144, 288]],
        stackwise_num_blocks=[2, 2, 2, 2],
        stackwise_num_filters=[[16, 16], [24, 24], [24, 24], [48, 48]],
        stackwise_kernel_size=[[3, 3], [5, 5], [5, 5], [5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1], [1, 1], [2, 1]],
        stackwise_se_ratio=[[None, None], [0.25] * 2, [0.25] * 2, [0.25] * 2],
        stackwise_activation=[["relu", "relu"], ["hard_swish"] * 2,
                              ["hard_swish"] * 2, ["hard_swish"] * 2,
                              ["hard_swish"]],
        stackwise_padding=[[1, 1], [2, 2], [2, 2], [2, 2]],
        output_num_filters=128, input_activation="hard_swish",
        output_activation="hard_swish", input_num_filters=16,
        image_shape=(32, 32, 3), depthwise_filters=8, depthwise_stride=2,
        depthwise_residual=False, squeeze_and_excite=0.5,
        last_layer_filter=96)


def _efficientnet(block_types):
    return KH.EfficientNetBackbone(
        stackwise_kernel_sizes=[3, 3, 3, 3], stackwise_num_repeats=[1, 2, 2, 2],
        stackwise_input_filters=[8, 8, 16, 16],
        stackwise_output_filters=[8, 16, 16, 24],
        stackwise_expansion_ratios=[1, 4, 4, 4],
        stackwise_squeeze_and_excite_ratios=[0.0, 0.0, 0.25, 0.25],
        stackwise_strides=[1, 2, 2, 1], stackwise_block_types=block_types,
        stackwise_force_input_filters=[0] * 4,
        stackwise_nores_option=[False] * 4, width_coefficient=1.0,
        depth_coefficient=1.0, input_shape=(32, 32, 3))


def _hgnetv2():
    return KH.HGNetV2Backbone(
        embedding_size=32, stem_channels=[3, 16, 32], hidden_act="relu",
        use_learnable_affine_block=False, image_shape=(64, 64, 3),
        depths=[1, 1], hidden_sizes=[64, 128],
        stackwise_stage_filters=[[32, 16, 64, 1, 1, 3],
                                 [64, 32, 128, 1, 1, 3]],
        apply_downsample=[False, True],
        use_lightweight_conv_block=[False, True])


def _mobilenetv5():
    return KH.MobileNetV5Backbone(
        stackwise_block_types=[["er"], ["uir", "uir"]],
        stackwise_num_blocks=[1, 2], stackwise_num_filters=[[24], [48, 48]],
        stackwise_strides=[[2], [2, 1]],
        stackwise_act_layers=[["relu"], ["relu", "relu"]],
        stackwise_exp_ratios=[[4.0], [6.0, 6.0]],
        stackwise_se_ratios=[[0.0], [0.0, 0.0]],
        stackwise_dw_kernel_sizes=[[0], [5, 5]],
        stackwise_dw_start_kernel_sizes=[[0], [0, 0]],
        stackwise_dw_end_kernel_sizes=[[0], [0, 0]],
        stackwise_exp_kernel_sizes=[[3], [0, 0]],
        stackwise_pw_kernel_sizes=[[1], [0, 0]],
        stackwise_num_heads=[[0], [0, 0]], stackwise_key_dims=[[0], [0, 0]],
        stackwise_value_dims=[[0], [0, 0]], stackwise_kv_strides=[[0], [0, 0]],
        stackwise_use_cpe=[[False], [False, False]], image_shape=(32, 32, 3),
        stem_size=16, use_msfa=False, norm_layer="batch_norm")


def _resnet(block_type, pre_activation=False):
    return KH.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32, 32], stackwise_num_blocks=[1, 1, 1],
        stackwise_num_strides=[1, 2, 2], image_shape=(32, 32, 3),
        block_type=block_type, use_pre_activation=pre_activation)


def _cspnet():
    return KH.CSPNetBackbone(
        stem_filters=16, stem_kernel_size=3, stem_strides=1,
        stackwise_strides=2, stackwise_depth=[1, 2], stackwise_num_filters=[16, 24],
        image_shape=(32, 32, 3), down_growth=True, bottle_ratio=(0.5, 1.0),
        block_ratio=(1.0, 0.5), expand_ratio=(2.0, 1.0),
        block_type="dark_block", stage_type="csp", stem_padding="same")


def _densenet():
    return KH.DenseNetBackbone(
        stackwise_num_repeats=[2, 2, 2], compression_ratio=0.5, growth_rate=4,
        image_shape=(32, 32, 3))


def _xception():
    return KH.XceptionBackbone(
        stackwise_conv_filters=[[16, 32], [64, 64], [64, 64]],
        stackwise_pooling=[False, True, False], image_shape=(32, 32, 3))


BACKBONES = {
    "mobilenet": _mobilenet,
    "efficientnet_v2": lambda: _efficientnet(["fused"] * 2 + ["unfused"] * 2),
    "efficientnet_v1": lambda: _efficientnet(["v1"] * 4),
    "hgnetv2": _hgnetv2,
    "mobilenetv5": _mobilenetv5,
    "resnet_basic": lambda: _resnet("basic_block"),
    "resnet_bottleneck": lambda: _resnet("bottleneck_block"),
    "resnet_v2": lambda: _resnet("basic_block", pre_activation=True),
    "cspnet": _cspnet,
    "densenet": _densenet,
    "xception": _xception,
}


# Where `fold="exact"` warns that it is exact away from the borders only,
# the cut channels get zero betas too, so there are no constants to carry:
# SeparableConv2D cannot carry them past its zero padding (Xception), and a
# basic block's constant meets the live shortcut before the ReLU (ResNet).
KILL_BETA = {"xception", "resnet_basic"}


def _called_names(model):
    graph = ChannelGraph(model)
    return sorted(graph.name_of(call.layer) for call in graph.calls)


# Not under JAX: its eager layer-by-layer verify takes minutes on these.
@pytest.mark.backend("tensorflow", "torch")
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_keras_hub_backbone_prunes_exactly_with_its_names(name):
    keras.utils.set_random_seed(0)
    model = BACKBONES[name]()
    rng = np.random.default_rng(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = ChannelGraph(model)
    assert not [w for w in caught if "not read through" in str(w.message)]
    assert sum(g.prunable and bool(g.batchnorms) for g in graph.groups) >= 3
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_coherently(model, rng, kill_beta=name in KILL_BETA)
    inputs = zoo.random_inputs(model, rng, batch=2)
    before = zoo.outputs(model, inputs)
    names = _called_names(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slim = keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model),
                                     fold="exact", verify=True)
    assert slim.count_params() < 0.9 * model.count_params()
    zoo.assert_close(before, zoo.outputs(slim, inputs), rtol=1e-4)
    zoo.assert_close(before, zoo.outputs(model, inputs), rtol=0)  # unchanged
    assert type(slim) is type(model)
    assert [layer.name for layer in slim.layers] == [
        layer.name for layer in model.layers]
    assert _called_names(slim) == names
