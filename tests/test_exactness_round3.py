"""Issue 19 (46 user models, Keras' cloning tests): what the rebuild kept.

Each test names the case. Where channels are cut, the invariant is the
usual one: zero some BatchNormalization gammas of the original, slim it with
`plan_zero_gamma`, the outputs match, and the slim model is smaller.
"""

import keras
import numpy as np
import pytest

import keras_slim
from tests import zoo

L = keras.layers


def _graph(name_prefix=""):
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name=f"{name_prefix}c1")(inputs)
    x = L.BatchNormalization(name=f"{name_prefix}bn1")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(3, 1, name=f"{name_prefix}c2")(x)
    return inputs, x


def _mask_slim_match(model, bn_names):
    """Kill channels 1, 4, 6 of each named BN, slim, compare; the slim."""
    rng = np.random.default_rng(0)
    zoo.randomize_batchnorms(model, rng)
    for name in bn_names:
        layer = model
        for part in name.split("/"):
            layer = layer.get_layer(part)
        zoo.kill(layer, [1, 4, 6])
    inputs = zoo.random_inputs(model, rng)
    before = zoo.outputs(model, inputs)
    slim = keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model))
    zoo.assert_close(before, zoo.outputs(slim, inputs))
    assert slim.count_params() < model.count_params()
    return slim, inputs


def _shared_variables(model, slim):
    owned = {id(v) for v in model.weights}
    return [v.path for v in slim.weights if id(v) in owned]


# -- 1. model subclasses keep their class and their code ---------------------


class ScaledSkip(keras.Model):
    """Builds its graph in __init__; `call` scales it and adds a skip."""

    def __init__(self, scale=3.0, **kwargs):
        inputs, outputs = _graph()
        super().__init__(inputs, outputs, **kwargs)
        self.scale = scale

    def call(self, inputs, training=None):
        outputs = super().call(inputs, training=training)
        return keras.ops.add(keras.ops.multiply(outputs, self.scale), inputs)

    @property
    def doubled(self):
        return 2 * self.scale


class ScaledSkipChild(ScaledSkip):
    def call(self, inputs, training=None):
        return keras.ops.subtract(super().call(inputs, training=training), 1.0)


@pytest.mark.parametrize("cls", [ScaledSkip, ScaledSkipChild])
def test_subclass_overriding_call_keeps_class_and_is_exact(cls):
    model = cls(scale=2.5, name="scaled")
    slim, inputs = _mask_slim_match(model, ["bn1"])
    assert type(slim) is cls and slim.name == "scaled"
    assert slim.scale == 2.5 and slim.doubled == 5.0
    # The override is what runs: without it the output would not be x-like.
    plain = keras.Model(slim.inputs, slim.outputs)
    assert not np.allclose(zoo.outputs(plain, inputs)[0],
                           zoo.outputs(slim, inputs)[0])


class ScaledSequential(keras.Sequential):
    def call(self, inputs, training=None, mask=None):
        return keras.ops.multiply(
            super().call(inputs, training=training, mask=mask), 4.0)


def test_sequential_subclass_overriding_call_keeps_class_and_is_exact():
    model = ScaledSequential([
        keras.Input((5,)), L.Dense(8, name="d1"),
        L.BatchNormalization(name="bn1"), L.Dense(2, name="d2"),
    ])
    slim, _ = _mask_slim_match(model, ["bn1"])
    assert type(slim) is ScaledSequential


class CountingTrainStep(keras.Model):
    def train_step(self, *args):  # (data), or (state, data) on JAX
        self.steps_seen = getattr(self, "steps_seen", 0) + 1
        return super().train_step(*args)


def test_subclass_train_step_is_kept_and_used_by_fit():
    inputs, outputs = _graph()
    model = CountingTrainStep(inputs, outputs)
    slim, inputs = _mask_slim_match(model, ["bn1"])
    assert type(slim) is CountingTrainStep
    slim.compile(optimizer="sgd", loss="mse")
    slim.fit(inputs, np.zeros_like(inputs), epochs=1, batch_size=3,
             verbose=0)
    assert slim.steps_seen >= 1  # traced once, or run once


def test_nested_subclass_overriding_call_keeps_its_boundary():
    inner = ScaledSkip(name="inner")
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(3, 1, name="pre")(inputs)
    x = inner(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    groups = {g.name: g for g in keras_slim.channel_groups(model)}
    assert "overrides `call`" in groups["pre"].frozen
    assert groups["c1"].prunable
    slim, _ = _mask_slim_match(model, ["inner/bn1"])
    assert type(slim.get_layer("inner")) is ScaledSkip


class HoldsOutsideLayer(keras.Model):
    def __init__(self, **kwargs):
        inputs, outputs = _graph()
        super().__init__(inputs, outputs, **kwargs)
        self.extra = L.Dense(3, name="extra")
        self.extra.build((None, 3))

    def call(self, inputs, training=None):
        return self.extra(super().call(inputs, training=training))


def test_subclass_holding_a_layer_outside_its_graph_is_refused():
    model = HoldsOutsideLayer(name="holds")
    with pytest.raises(ValueError, match="`holds`.*`extra`.*`call`"):
        keras_slim.slim_model(model, keras_slim.PruningPlan({}))


# -- 4. towers with equal inner names ---------------------------------------


def _towers():
    def tower(name):
        inputs = keras.Input((8, 8, 3))
        x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
        x = L.BatchNormalization(name="bn")(x)
        x = L.ReLU()(x)
        x = L.Conv2D(4, 3, padding="valid", name="conv_out")(x)
        return keras.Model(inputs, x, name=name)

    inputs = keras.Input((8, 8, 3))
    x = L.Concatenate()([tower("left")(inputs), tower("right")(inputs)])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x))


def test_towers_with_equal_inner_names_slim_exactly():
    model = _towers()
    names = {g.name for g in keras_slim.channel_groups(model)}
    assert {"left/conv", "right/conv"} <= names
    slim, _ = _mask_slim_match(model, ["left/bn", "right/bn"])
    assert slim.get_layer("left").get_layer("conv").filters == 5
    assert slim.get_layer("right").get_layer("conv").filters == 5
    plan = keras_slim.plan_global_gamma(model, 0.25)
    assert set(plan.kept) <= names


# -- 7. what Keras' cloning tests rely on -----------------------------------


class HoldsLayerInConfig(L.Layer):
    def __init__(self, inner=None, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner or L.Dense(4, name="held")

    def call(self, x):
        return self.inner(x)

    def get_config(self):
        return {**super().get_config(), "inner": self.inner}


def test_custom_layer_holding_a_layer_in_its_config_shares_no_variable():
    inputs = keras.Input((4,))
    x = L.Dense(8, name="d1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Dense(4, name="d2")(x)
    model = keras.Model(inputs, HoldsLayerInConfig(name="holder")(x))
    slim, inputs = _mask_slim_match(model, ["bn1"])
    assert _shared_variables(model, slim) == []
    before = zoo.outputs(model, inputs)
    slim.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    slim.fit(inputs, np.ones((3, 4)), epochs=1, batch_size=3, verbose=0)
    zoo.assert_close(before, zoo.outputs(model, inputs), rtol=1e-6)
    assert not np.allclose(before[0], zoo.outputs(slim, inputs)[0])


@pytest.mark.parametrize("build", [zoo.chain, zoo.nested, zoo.sequential])
def test_slim_model_shares_no_variable_with_the_original(build):
    model = build()
    rng = np.random.default_rng(1)
    zoo.randomize_batchnorms(model, rng)
    zoo.kill_coherently(model, rng)
    snapshot = [keras.ops.convert_to_numpy(v).copy() for v in model.weights]
    slim = keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model))
    assert slim.count_params() < model.count_params()
    assert _shared_variables(model, slim) == []
    for variable in slim.weights:
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype) + 7)
    for value, variable in zip(snapshot, model.weights):
        np.testing.assert_array_equal(value, keras.ops.convert_to_numpy(variable))


class AddOptional(L.Layer):
    def call(self, a, b=None):
        return a if b is None else a + b


def test_optional_inputs_stay_optional():
    a = keras.Input((4,), name="a")
    b = keras.Input((4,), name="b", optional=True)
    model = keras.Model([a, b], L.Dense(2, name="d")(AddOptional()(a, b)))
    slim = keras_slim.slim_model(model, keras_slim.PruningPlan({}))
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(slim([x, None])),
                               keras.ops.convert_to_numpy(model([x, None])),
                               rtol=1e-6)


class Factor(L.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):  # no super(): no name
        return {"factor": self.factor}


class RenamesItself(L.Layer):
    """As keras-hub blocks do: `name` gets `_0` in __init__."""

    def __init__(self, name=None, **kwargs):
        super().__init__(name=None if name is None else f"{name}_0", **kwargs)
        self.dense = L.Dense(8)

    def call(self, x):
        return self.dense(x)


def test_layer_names_are_kept_even_when_init_or_config_changes_them():
    inputs = keras.Input((4,))
    x = Factor(3.0, name="factor")(inputs)
    x = RenamesItself(name="block_0")(x)
    x = L.Dense(8, name="d1")(x)
    x = L.BatchNormalization(name="bn1")(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    slim, _ = _mask_slim_match(model, ["bn1"])
    assert [layer.name for layer in slim.layers] == [
        layer.name for layer in model.layers]
    inner = model.get_layer("block_0_0").dense.name
    # The plan leaves the block alone: it is kept as its own class
    # (core/kept_blocks.py), its sublayer named as it was.
    block = slim.get_layer("block_0_0")
    assert type(block) is RenamesItself
    assert block.dense.name == inner
    assert block.dense is not model.get_layer("block_0_0").dense


def test_sequential_holding_a_model_is_rebuilt_and_cut():
    inner = keras.Sequential([
        keras.Input((8,)), L.Dense(8, name="in_d"),
        L.BatchNormalization(name="bn1"), L.Dense(3, name="in_out"),
    ], name="inner")
    model = keras.Sequential([
        keras.Input((5,)), L.Dense(8, name="d0"), inner,
        L.Dense(2, name="head"),
    ])
    slim, _ = _mask_slim_match(model, ["inner/bn1"])
    assert isinstance(slim.get_layer("inner"), keras.Sequential)
    assert slim.get_layer("inner").get_layer("in_d").units == 5


def test_lambda_layer_is_rebuilt_and_only_freezes_its_channels():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(6, 1, name="c2")(x)
    x = L.Lambda(lambda t: t * 2.0, name="double")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    with pytest.warns(UserWarning, match="Lambda.*`double`"):
        slim, _ = _mask_slim_match(model, ["bn1"])
    assert slim.get_layer("double").name == "double"


# -- 6. broken gammas and plans ---------------------------------------------


@pytest.mark.parametrize("entry", ["plan_zero_gamma", "slim_model"])
def test_nan_gammas_are_refused_naming_the_layer(entry):
    model = zoo.chain()
    bn = zoo.batchnorms(model)[0]
    gamma = keras.ops.convert_to_numpy(bn.gamma).copy()
    gamma[2] = np.nan
    bn.gamma.assign(gamma)
    call = {
        "plan_zero_gamma": lambda: keras_slim.plan_zero_gamma(model),
        "slim_model": lambda: keras_slim.slim_model(
            model, keras_slim.PruningPlan({})),
    }[entry]
    with pytest.raises(ValueError, match=f"`{bn.name}`.*NaN"):
        call()


def test_plan_json_without_widths_is_refused():
    model = zoo.chain()
    rng = np.random.default_rng(0)
    zoo.kill_coherently(model, rng)
    plan = keras_slim.plan_zero_gamma(model)
    data = plan.to_dict()
    assert data["kept"]
    assert keras_slim.PruningPlan.from_dict(data) == plan
    without = {"kept": data["kept"]}
    with pytest.raises(ValueError, match="`widths`"):
        keras_slim.PruningPlan.from_dict(without)
    import json
    with pytest.raises(ValueError, match="`widths`"):
        keras_slim.PruningPlan.from_json(json.dumps(without))
    name = sorted(data["kept"])[0]
    partial = {"kept": data["kept"],
               "widths": {k: v for k, v in data["widths"].items() if k != name}}
    with pytest.raises(ValueError, match=f"`{name}`"):
        keras_slim.PruningPlan.from_dict(partial)


class CallsItsOwnLayer(keras.Model):
    """`call` reaches a graph layer through an attribute."""

    def __init__(self, **kwargs):
        inputs, outputs = _graph()
        super().__init__(inputs, outputs, **kwargs)
        self.last = self.get_layer("c2")

    def call(self, inputs, training=None):
        return keras.ops.add(super().call(inputs, training=training),
                             keras.ops.multiply(self.last.bias, 0.0))


def test_subclass_attribute_holding_a_graph_layer_points_to_the_slim_copy():
    model = CallsItsOwnLayer(name="own")
    slim, _ = _mask_slim_match(model, ["bn1"])
    assert slim.last is slim.get_layer("c2")
    assert slim.last is not model.last


def test_trained_subclass_carries_its_attributes_not_its_training_state():
    model = ScaledSkip(scale=2.0, name="trained")
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 3)).astype("float32")
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, x, epochs=1, verbose=0)
    slim = keras_slim.slim_model(model, keras_slim.PruningPlan({}))
    carried = set(vars(slim)) - set(vars(keras.Model(slim.inputs,
                                                     slim.outputs)))
    assert "scale" in carried
    assert not carried & {"_compile_config", "_jax_state", "stop_training",
                          "_eval_epoch_iterator", "train_function"}
    slim.compile(optimizer="sgd", loss="mse")
    slim.fit(x, x, epochs=1, verbose=0)


@pytest.mark.parametrize("merge", [L.Add, L.Multiply, L.Maximum, L.Average])
def test_a_merge_of_three_branches_ties_all_three(merge):
    """Every input of a wide merge is tied, not only the first two: a
    channel cut from one branch is cut from all three, exactly."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    stem = L.Conv2D(8, 3, padding="same", name="stem")(inputs)
    branches = []
    for tag in "abc":
        x = L.Conv2D(8, 3, padding="same", name=f"conv_{tag}")(stem)
        branches.append(L.BatchNormalization(name=f"bn_{tag}")(x))
    x = merge(name="merge")(branches)
    x = L.Conv2D(4, 1, name="after")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    groups = keras_slim.channel_groups(model)
    assert any(set(g.batchnorms) >= {"bn_a", "bn_b", "bn_c"} for g in groups)
    slim, _ = _mask_slim_match(model, ["bn_a", "bn_b", "bn_c"])
    assert slim.get_layer("conv_c").filters == 5


@pytest.mark.parametrize("reduce, keepdims", [
    (keras.ops.mean, True), (keras.ops.mean, False), (keras.ops.max, True),
    (keras.ops.min, False),
])
def test_a_reduction_over_space_is_cut_with_the_channels(reduce, keepdims):
    """A spatial reduction (a squeeze as ops) keeps each channel by itself:
    a cut channel's constant passes it and is folded into the layer after."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Activation("swish")(x)
    squeezed = reduce(x, axis=(1, 2), keepdims=keepdims)
    if not keepdims:
        squeezed = L.Reshape((1, 1, 8))(squeezed)
    squeezed = L.Flatten()(L.Conv2D(4, 1, name="head")(squeezed))
    spatial = L.GlobalAveragePooling2D()(
        L.Conv2D(4, 3, padding="valid", name="c2")(x))
    model = keras.Model(inputs, L.Add()([squeezed, spatial]))
    slim, _ = _mask_slim_match(model, ["bn1"])
    assert slim.get_layer("c1").filters == 5


def test_a_reduction_over_channels_keeps_them_whole():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = keras.ops.mean(x, axis=-1, keepdims=True)
    model = keras.Model(inputs, L.Conv2D(2, 1, name="head")(x))
    group = next(g for g in keras_slim.channel_groups(model)
                 if "bn1" in g.batchnorms)
    assert not group.prunable
    assert "reduction over the channel axis" in group.frozen


def test_a_channel_mean_whose_width_equals_the_channels_stays_frozen():
    """On an 8 x 8 map of 8 channels, `mean(x, axis=-1)` gives (8, 8):
    its last axis is the width, not the channels. The group stays whole,
    and a plan that names it is refused; the head keeps its 8 inputs."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = keras.ops.mean(x, axis=-1, keepdims=False)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    group = next(g for g in keras_slim.channel_groups(model)
                 if "bn1" in g.batchnorms)
    assert not group.prunable
    zoo.kill(model.get_layer("bn1"), [0, 2, 4, 6])
    assert "c1" not in keras_slim.plan_zero_gamma(model).kept
    with pytest.raises(ValueError, match="c1"):
        keras_slim.slim_model(model, keras_slim.PruningPlan(
            {"c1": [1, 3, 5, 7]}))
    slim = keras_slim.slim_model(model, keras_slim.plan_zero_gamma(model),
                                 verify=True)
    assert slim.get_layer("head").kernel.shape == (8, 2)
