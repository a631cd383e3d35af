"""keras-hub task models built on a backbone slim exactly, their attributes
pointing into the slim model.

`DeepLabV3Backbone` and `RetinaNetBackbone` call `keras.Model(encoder.inputs,
encoder.pyramid_outputs)`, not the encoder itself, and keep the encoder as
an attribute (`image_encoder`): the slim model's encoder is rebuilt from the
slim layers, and its `pyramid_outputs` are tensors of the slim graph, so the
same call builds a model of the slim widths. Each model here is built from a
small config (never a preset).
"""

import warnings

import keras
import numpy as np
import pytest

import keras_slim
from tests import zoo

keras_hub = pytest.importorskip("keras_hub")
KH = keras_hub.models


def _resnet():
    return KH.ResNetBackbone(
        input_conv_filters=[16], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16, 16], stackwise_num_blocks=[1, 1, 1],
        stackwise_num_strides=[1, 2, 2], image_shape=(32, 32, 3),
        block_type="bottleneck_block")


def _deeplab(image_shape=(32, 32, 3)):
    backbone = KH.DeepLabV3Backbone(
        image_encoder=_resnet(), low_level_feature_key="P2",
        spatial_pyramid_pooling_key="P4", upsampling_size=4,
        dilation_rates=[1, 2], projection_filters=8, image_shape=image_shape)
    return KH.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=3)


def _retinanet():
    backbone = KH.RetinaNetBackbone(
        image_encoder=_resnet(), min_level=3, max_level=4, use_p5=False,
        image_shape=(32, 32, 3))
    return KH.RetinaNetObjectDetector(
        backbone=backbone, num_classes=2, pre_logits_num_conv_layers=1)


def _slim_exactly(model, part=lambda model: model):
    """Kill half of every prunable group, slim with fold="exact" and verify,
    and check the outputs and that `part` of the model shrinks. Returns the
    slim model."""
    rng = np.random.default_rng(0)
    zoo.randomize_batchnorms(model, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zoo.kill_coherently(model, rng, kill_beta=False)
        inputs = zoo.random_inputs(model, rng, batch=2)
        before = zoo.outputs(model, inputs)
        slim = keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model),
                                     fold="exact", verify=True)
    assert part(slim).count_params() < 0.9 * part(model).count_params()
    zoo.assert_close(before, zoo.outputs(slim, inputs), rtol=1e-4)
    zoo.assert_close(before, zoo.outputs(model, inputs), rtol=0)  # unchanged
    assert type(slim) is type(model)
    return slim


# Not under JAX, as in test_keras_hub.py: its eager layer-by-layer verify
# takes minutes on these (130 s for the ResNet alone).


def _slim_weights(model):
    return {id(v) for v in model.weights}


def _check_encoder(original, slim_encoder, slim_weights):
    """The encoder is rebuilt of the slim model's layers, and its pyramid
    builds a model of the slim widths."""
    assert type(slim_encoder) is type(original)
    assert slim_encoder is not original
    assert {id(v) for v in slim_encoder.weights} <= slim_weights
    pyramid = keras.Model(slim_encoder.inputs, slim_encoder.pyramid_outputs)
    assert set(pyramid.output) == set(original.pyramid_outputs)
    widths = {k: t.shape[-1] for k, t in slim_encoder.pyramid_outputs.items()}
    assert widths == {k: t.shape[-1] for k, t in pyramid.output.items()}
    x = np.random.default_rng(1).normal(size=(1, 32, 32, 3)).astype("float32")
    for key, value in pyramid(x).items():
        assert value.shape[-1] == widths[key]
    return widths


@pytest.mark.backend("tensorflow", "torch")
def test_a_slim_resnet_pyramid_builds_a_model_of_the_slim_widths():
    model = _resnet()
    slim = _slim_exactly(model)
    widths = _check_encoder(model, slim, _slim_weights(slim))
    original = {k: t.shape[-1] for k, t in model.pyramid_outputs.items()}
    assert all(widths[k] <= original[k] for k in original)
    assert any(widths[k] < original[k] for k in original)


# Of any size, its SpatialPyramidPooling (a `Resizing` made in `call`, to
# the symbolic size of its input) cannot be read through: it is kept whole.
@pytest.mark.backend("tensorflow", "torch")
@pytest.mark.parametrize("image_shape", [(32, 32, 3), (None, None, 3)],
                         ids=["fixed", "any_size"])
def test_deeplabv3_segmenter_slims_exactly_with_its_attributes(image_shape):
    model = _deeplab(image_shape)
    slim = _slim_exactly(model)
    weights = _slim_weights(slim)
    assert slim.backbone is slim.get_layer(model.backbone.name)
    assert slim.backbone is not model.backbone
    encoder = model.backbone.image_encoder
    widths = _check_encoder(encoder, slim.backbone.image_encoder, weights)
    assert widths != {k: t.shape[-1]
                      for k, t in encoder.pyramid_outputs.items()}
    assert slim.backbone.low_level_feature_key == "P2"


@pytest.mark.backend("tensorflow", "torch")
def test_retinanet_detector_slims_exactly_with_its_attributes():
    model = _retinanet()
    # Its heads and feature pyramid are fixed at 256 channels (keras-hub
    # does not size them) and kept whole: the encoder shrinks.
    slim = _slim_exactly(model, lambda m: m.backbone.image_encoder)
    weights = _slim_weights(slim)
    backbone = slim.backbone
    assert backbone is slim.get_layer(model.backbone.name)
    _check_encoder(model.backbone.image_encoder, backbone.image_encoder,
                   weights)
    # The backbone's own pyramid (its outputs) is the slim graph's.
    fpn = keras.Model(backbone.inputs, backbone.pyramid_outputs)
    assert set(fpn.output) == set(model.backbone.pyramid_outputs)
    assert {id(v) for v in fpn.weights} <= weights
    # The heads the graph calls are the slim copies; the weightless helpers
    # the detector holds (anchors, label encoder, decoder) are fresh copies.
    assert slim.box_head is slim.get_layer("box_head")
    for key in ("anchor_generator", "label_encoder", "_prediction_decoder"):
        held, original = getattr(slim, key), getattr(model, key)
        assert type(held) is type(original) and held is not original
        assert held.get_config() == original.get_config()
