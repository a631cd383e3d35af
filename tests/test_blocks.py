"""Custom block layers are read through (keras_slim/core/blocks.py).

A custom layer whose `call` chains Keras layers and ops is traced into a
functional graph of its sublayers: the channels flow through it, the slim
model holds it as a functional model of the same name, and the user's
layers are left as they were. A block whose trace would not compute what
it computes stays a barrier, and the warning says why.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_slim
from keras_slim.core import keras_compat
from keras_slim.core.graph import ChannelGraph
from tests import zoo

L = keras.layers


class Residual(L.Layer):
    """conv-BN-ReLU-conv-BN plus the input, as keras-hub's blocks are."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = L.Conv2D(filters, 3, padding="same",
                              name=f"{self.name}_conv1")
        self.bn1 = L.BatchNormalization(name=f"{self.name}_bn1")
        self.conv2 = L.Conv2D(filters, 3, padding="same",
                              name=f"{self.name}_conv2")
        self.bn2 = L.BatchNormalization(name=f"{self.name}_bn2")

    def call(self, inputs, training=None):
        x = keras.ops.relu(self.bn1(self.conv1(inputs), training=training))
        x = self.bn2(self.conv2(x), training=training)
        return keras.ops.relu(x + inputs)


class Branchy(Residual):
    def call(self, inputs, training=None):
        x = self.bn1(self.conv1(inputs), training=training)
        if training:  # Python branch: a trace keeps one side only
            x = x * 0.5
        return self.bn2(self.conv2(x), training=training) + inputs


class OwnScale(Residual):
    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones",
                                     name="scale")

    def call(self, inputs, training=None):
        return super().call(inputs, training) * self.scale


class Counting(Residual):
    """Each call scales by how many calls came before: not a function of
    the inputs, so the trace (made at another count) disagrees."""

    count = 0

    def call(self, inputs, training=None):
        Counting.count += 1
        return super().call(inputs, training) * float(Counting.count)


class Outer(L.Layer):
    """A block of blocks: Keras records no node for the inner ones."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.first = Residual(filters, name=f"{self.name}_first")
        self.second = Residual(filters, name=f"{self.name}_second")

    def call(self, inputs):
        return self.second(self.first(inputs))


def _model(block_class, filters=8, name="block"):
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(filters, 3, padding="same", name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    x = block_class(filters, name=name)(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def _node_counts(model):
    return {layer.name: (len(keras_compat.inbound_nodes(layer)),
                         len(keras_compat.outbound_nodes(layer)))
            for layer in keras_compat.flatten_layers(model)}


def _slim_exactly(model):
    rng = np.random.default_rng(0)
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_coherently(model, rng, kill_beta=False)
    inputs = zoo.random_inputs(model, rng)
    before = zoo.outputs(model, inputs)
    slim = keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model),
                                 fold="exact", verify=True)
    zoo.assert_close(before, zoo.outputs(slim, inputs))
    return slim, inputs


@pytest.mark.parametrize("block_class", [Residual, Outer])
def test_a_block_of_layers_is_read_through_and_cut_exactly(block_class):
    keras.utils.set_random_seed(0)
    model = _model(block_class)
    nodes = _node_counts(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no barrier warning
        graph = ChannelGraph(model)
    inner = {graph.name_of(c.layer) for c in graph.calls}
    assert "block" not in inner
    assert {"block_conv1", "block_first_conv1", "block_second_bn2"} & inner
    slim, _ = _slim_exactly(model)
    assert slim.count_params() < model.count_params()
    block = slim.get_layer("block")
    assert isinstance(block, keras.Model)
    assert {layer.name for layer in keras_compat.flatten_layers(block)} >= {
        c.layer.name for c in graph.calls if c.layer.name.startswith("block")}
    assert _node_counts(model) == nodes  # the trace left no node behind


def test_the_slim_model_of_a_block_saves_and_reloads(tmp_path):
    keras.utils.set_random_seed(0)
    slim, inputs = _slim_exactly(_model(Residual))
    path = tmp_path / "slim.keras"
    slim.save(path)
    loaded = keras.saving.load_model(path)
    zoo.assert_close(zoo.outputs(slim, inputs), zoo.outputs(loaded, inputs))


@pytest.mark.parametrize("block_class, reason", [
    (Branchy, "branches on `training`"),
    (OwnScale, "holds its own variable"),
    (Counting, "trace does not compute what it computes"),
])
def test_a_block_that_cannot_be_traced_is_a_barrier_that_says_why(
        block_class, reason):
    keras.utils.set_random_seed(0)
    model = _model(block_class, name=f"b_{block_class.__name__.lower()}")
    with pytest.warns(UserWarning, match=f"`b_.*not read through: .*{reason}"):
        graph = ChannelGraph(model)
    assert block_class.__name__ in {type(c.layer).__name__
                                    for c in graph.calls}
    if block_class is not Counting:  # which changes with every call
        slim, _ = _slim_exactly(model)  # the rest is still cut exactly
        assert type(slim.get_layer(model.layers[4].name)) is block_class


class Opaque(Residual):
    pass


class _OpaqueRule(keras_slim.rules.Rule):
    def role(self, layer, call):
        return keras_slim.rules.Role(keras_slim.rules.BARRIER,
                                     reason="user said so")


def test_a_registered_rule_wins_over_reading_through():
    keras.utils.set_random_seed(0)
    model = _model(Opaque, name="opaque")
    with keras_slim.rules.registered(Opaque, _OpaqueRule):
        graph = ChannelGraph(model)
    assert "opaque" in {c.layer.name for c in graph.calls}
    assert ("opaque", "user said so", False) in graph.barriers


class Swapped(L.Layer):
    """Two Dense layers, in the other order under `training`: the same op
    types either way, another function."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.a = L.Dense(filters, name=f"{self.name}_a")
        self.b = L.Dense(filters, name=f"{self.name}_b")

    def call(self, inputs, training=None):
        if training:
            return self.a(self.b(inputs))
        return self.b(self.a(inputs))


class Untraceable(Residual):
    """Calls its first sublayers, then needs concrete values (Keras builds
    it from its `build` and `compute_output_spec`, not its `call`)."""

    def build(self, input_shape):
        self.conv1.build(input_shape)
        mid = tuple(input_shape[:-1]) + (self.conv1.filters,)
        self.bn1.build(mid)
        self.conv2.build(mid)
        self.bn2.build(tuple(input_shape[:-1]) + (self.conv2.filters,))

    def compute_output_spec(self, inputs, training=None):
        return keras.KerasTensor(inputs.shape, inputs.dtype)

    def call(self, inputs, training=None):
        x = self.bn1(self.conv1(inputs), training=training)
        if float(keras.ops.convert_to_numpy(keras.ops.max(x))) > 1e9:
            x = x * 0.5
        return self.bn2(self.conv2(x), training=training)


def _built(model):
    return {id(layer): layer.built
            for layer in keras_compat.flatten_layers(model)}


@pytest.mark.parametrize("block_class, reason", [
    (Branchy, "branches on `training`"),
    (Untraceable, "cannot be traced"),
    (Swapped, "branches on `training`"),
])
def test_a_block_refused_in_its_trace_leaves_no_node_behind(
        block_class, reason):
    """The trace calls the sublayers before it is refused: their nodes are
    removed on that path too, and nothing of the user's is built."""
    keras.utils.set_random_seed(0)
    model = _model(block_class, name="refused")
    nodes, built = _node_counts(model), _built(model)
    with pytest.warns(UserWarning, match=f"not read through: .*{reason}"):
        graph = ChannelGraph(model)
    assert "refused" in {c.layer.name for c in graph.calls}  # a barrier
    assert _node_counts(model) == nodes
    assert _built(model) == built


def test_a_block_that_swaps_its_layers_under_training_is_not_read():
    """Read through, the slim model would train another function."""
    keras.utils.set_random_seed(0)
    model = _model(Swapped, name="swapped")
    with pytest.warns(UserWarning, match="branches on `training`"):
        graph = ChannelGraph(model)
    assert not {"swapped_a", "swapped_b"} & {c.layer.name
                                             for c in graph.calls}
    slim, _ = _slim_exactly(model)
    assert type(slim.get_layer("swapped")) is Swapped


def test_a_block_with_its_own_variable_is_left_whole():
    """Not only the reason: its variable and sublayers stay one layer, and
    the channels it reads are not cut."""
    keras.utils.set_random_seed(0)
    model = _model(OwnScale, name="owner")
    with pytest.warns(UserWarning, match="holds its own variable"):
        graph = ChannelGraph(model)
    names = {c.layer.name for c in graph.calls}
    assert "owner" in names and "owner_conv1" not in names
    groups = {g.name: g for g in keras_slim.channel_groups(model)}
    assert not groups["stem"].prunable  # it feeds the barrier
    slim, _ = _slim_exactly(model)
    owner = slim.get_layer("owner")
    assert type(owner) is OwnScale
    assert [w.shape for w in owner.weights] == [
        w.shape for w in model.get_layer("owner").weights]


class Affine(L.Layer):
    """A learnable scalar scale and bias (keras-hub's
    HGNetV2LearnableAffineBlock): channels pass through it."""

    def build(self, input_shape):
        self.scale = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(1.5),
            name="scale")
        self.bias = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(0.3),
            name="bias")

    def call(self, x):
        return self.scale * x + self.bias


class AffineMixing(Affine):
    """Scalar weights too, but each channel reads their mean."""

    def call(self, x):
        return self.scale * x + keras.ops.mean(x, axis=-1, keepdims=True)


def _affine_model(affine_class):
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = affine_class(name="lab")(x)
    x = L.Conv2D(4, 1, name="c2")(L.ReLU(name="act")(x))
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def test_a_scalar_affine_layer_passes_channels_and_their_constants():
    """A cut channel's beta leaves it as `scale * beta + bias`, a constant
    folded into `c2`: exact, with verify."""
    keras.utils.set_random_seed(0)
    model = _affine_model(Affine)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no barrier warning
        groups = {g.name: g for g in keras_slim.channel_groups(model)}
    assert groups["c1"].prunable
    zoo.kill(model.get_layer("bn1"), [0, 2, 4, 6])
    model.get_layer("bn1").beta.assign(np.full(8, 0.5, "float32"))
    slim, _ = _slim_exactly(model)
    assert slim.get_layer("c1").filters == 4
    assert type(slim.get_layer("lab")) is Affine


def test_a_scalar_layer_that_mixes_channels_is_a_barrier():
    keras.utils.set_random_seed(0)
    model = _affine_model(AffineMixing)
    with pytest.warns(UserWarning, match="AffineMixing"):
        groups = {g.name: g for g in keras_slim.channel_groups(model)}
    assert not groups["c1"].prunable


@pytest.mark.backend("tensorflow", "torch")  # JAX's eager verify: minutes
def test_hgnetv2_with_learnable_affine_blocks_is_cut_exactly():
    keras_hub = pytest.importorskip("keras_hub")
    from tests.test_keras_hub import _hgnetv2

    keras.utils.set_random_seed(0)
    config = dict(_hgnetv2().get_config(), use_learnable_affine_block=True)
    model = keras_hub.models.HGNetV2Backbone.from_config(config)
    nodes, built = _node_counts(model), _built(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = ChannelGraph(model)
    assert not [w for w in caught if "does not know" in str(w.message)
                or "not read through" in str(w.message)]
    assert sum(g.prunable and bool(g.batchnorms) for g in graph.groups) >= 3
    rng = np.random.default_rng(0)
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_coherently(model, rng, kill_beta=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slim = keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model),
                                     fold="exact", verify=True)
    # neither reading nor slimming left a node or a built flag behind
    assert _node_counts(model) == nodes and _built(model) == built
    assert slim.count_params() < 0.9 * model.count_params()
    inputs = zoo.random_inputs(model, rng, batch=2)
    zoo.assert_close(zoo.outputs(model, inputs), zoo.outputs(slim, inputs))
