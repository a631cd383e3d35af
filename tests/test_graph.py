"""What `channel_groups` ties together."""

import keras
import pytest

import keras_slim
from tests import zoo

L = keras.layers


def groups_by_name(model):
    return {g.name: g for g in keras_slim.channel_groups(model)}


def test_chain_groups_have_producer_bn_and_consumer():
    groups = groups_by_name(zoo.chain())
    a = groups["a_conv"]
    assert (a.width, a.producers, a.batchnorms) == (8, ["a_conv"], ["a_bn"])
    assert a.consumers == ["b_conv"] and a.prunable
    assert groups["b_conv"].consumers == ["head"]
    assert groups["head"].frozen == "model output"
    inputs = [g for g in groups.values() if g.name.endswith(":out")]
    assert len(inputs) == 1 and "model input" in inputs[0].frozen


def test_residual_add_ties_all_branches():
    groups = groups_by_name(zoo.residual())
    stage1 = groups["stem_conv"]
    assert stage1.producers == ["stem_conv", "r1b_conv"]
    assert set(stage1.batchnorms) == {"stem_bn", "r1b_bn"}
    stage2 = next(g for g in groups.values() if "r2s_conv" in g.producers)
    assert set(stage2.producers) == {"r2s_conv", "r2b_conv"}
    assert "r2_add" in stage2.members


def test_concatenate_maps_offsets():
    graph = keras_slim.core.graph.ChannelGraph(zoo.concat())
    groups = graph.group_by_name
    assert {"c0_conv", "c1_conv", "c2_conv"} <= set(groups)
    # c3 reads [c2 | c0 | c1]: c0's channels sit at offset 5.
    call = next(c for c in graph.calls if c.layer.name == "c3_conv")
    layout = graph.layouts[call.inputs[0]]
    find = graph.spaces.find
    matrix = layout.channel_positions(groups["c0_conv"].root, find)
    assert matrix[:, 0].tolist() == list(range(5, 11))
    assert groups["c0_conv"].consumers == ["c1_conv", "c2_conv", "c3_conv"]


def test_depthwise_multiplier_expands_channels():
    groups = groups_by_name(zoo.depthwise(multiplier=2))
    g = groups["pw1_conv"]
    assert set(g.batchnorms) == {"pw1_bn", "dw_bn", "gdw_bn"}
    assert g.bn_positions["dw_bn"].shape == (8, 2)
    assert g.bn_positions["dw_bn"][3].tolist() == [6, 7]
    assert "grouped_dw" in g.members and "dw" in g.members
    # A grouped convolution with several channels a group is a barrier.
    assert groups["sep"].frozen and "grouped" in groups["sep"].frozen
    assert groups["sep"].consumers == []


def test_flatten_expands_each_channel_to_positions():
    graph = keras_slim.core.graph.ChannelGraph(zoo.flatten_dense())
    group = graph.group_by_name["f2_conv"]
    call = next(c for c in graph.calls if c.layer.name == "fc1")
    layout = graph.layouts[call.inputs[0]]
    matrix = layout.channel_positions(group.root, graph.spaces.find)
    assert matrix.shape == (6, 9)  # 6 channels x 3 x 3 positions
    assert matrix[1, :3].tolist() == [1, 7, 13]
    assert group.consumers == ["fc1"]


def test_shared_layers_tie_their_calls():
    groups = groups_by_name(zoo.shared())
    g = groups["shared_conv"]
    assert g.batchnorms == ["shared_bn"] and g.consumers == ["post"]
    assert g.prunable


def test_nested_models_are_read_through():
    groups = groups_by_name(zoo.nested())
    assert groups["bb1_conv"].consumers == ["bb2_conv"]
    assert groups["bb2_conv"].consumers == ["seq_conv"]
    assert groups["seq_conv"].prunable and groups["seq_conv"].consumers == ["out"]


def test_sequential_and_multi_io():
    groups = groups_by_name(zoo.sequential())
    assert groups["s1"].prunable and groups["s2"].consumers == ["out"]
    groups = groups_by_name(zoo.multi_io())
    assert set(groups["m2_conv"].consumers) == {"cls", "seg"}
    assert groups["vec_fc"].prunable
    assert groups["seg"].frozen == "model output"


def test_squeeze_excite_broadcast_scale_is_tied():
    groups = groups_by_name(zoo.squeeze_excite())
    g = groups["se_in_conv"]
    assert set(g.producers) == {"se_in_conv", "se_expand"}
    assert set(g.consumers) == {"se_reduce", "se_out_conv"}


def test_ops_are_followed():
    groups = groups_by_name(zoo.ops_model())
    assert groups["o1_conv"].prunable and groups["o1_conv"].consumers == ["o2_conv"]


def test_unknown_layer_freezes_with_one_warning():
    model = zoo.with_barrier()
    with pytest.warns(UserWarning, match="mystery") as record:
        groups = groups_by_name(model)
    assert sum("mystery" in str(w.message) for w in record) == 1
    assert "mystery" in groups["before_conv"].frozen
    assert groups["mystery:out"].frozen
    assert groups["middle_conv"].prunable


def test_lambda_is_a_barrier():
    x = inputs = keras.Input((6, 6, 3))
    x = zoo.conv_bn(x, 4, "a")
    x = L.Lambda(lambda t: t * 2.0, name="double")(x)
    x = zoo.conv_bn(x, 4, "b")
    model = keras.Model(inputs, L.GlobalAveragePooling2D()(x))
    with pytest.warns(UserWarning, match="double"):
        groups = groups_by_name(model)
    assert groups["a_conv"].frozen


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = L.Conv2D(4, 3)

        def call(self, x):
            return self.conv(x)

    net = Net()
    net(keras.ops.zeros((1, 5, 5, 3)))
    with pytest.raises(TypeError, match="subclassed"):
        keras_slim.channel_groups(net)
    with pytest.raises(TypeError, match="model"):
        keras_slim.channel_groups("not a model")


def test_unbuilt_sequential_is_refused():
    model = keras.Sequential([L.Conv2D(4, 3), L.BatchNormalization()])
    with pytest.raises(ValueError, match="not built"):
        keras_slim.channel_groups(model)
