"""Property-based fuzzing of attention blocks (tests/fuzz_models.py's
`attention_model`: random heads, key_dim, value_dim, attention_axes, bias,
output_shape, cross-attention, pre-norm, post-norm and norm-free blocks).

For each model:

(a) a random head plan (live heads cut): `slim_model(verify=True)` equals
    the original with the cut heads' rows of the output projection zeroed
    here, by hand;
(b) mask-then-slim: random heads' output rows, random MLP units' down rows
    and (norm-free blocks) random residual channels' rows in every layer
    reading them zeroed; `plan_dead` finds exactly those, and the slim
    model equals the masked original and is smaller.

Neither run changes the model given. The run fails if nothing was cut.
"""

import os
import warnings

import keras
import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import keras_slim
from tests import fuzz_models, zoo

# Fewer off TensorFlow, where eager attention runs slower.
EXAMPLES = int(os.environ.get(
    "KERAS_SLIM_ATTENTION_FUZZ_EXAMPLES",
    "8" if keras.backend.backend() == "tensorflow" else "4"))


def _zero(variable, rows, axis=0):
    value = keras.ops.convert_to_numpy(variable).copy()
    index = [slice(None)] * value.ndim
    index[axis] = rows
    value[tuple(index)] = 0
    variable.assign(value)


def _some(rng, width):
    """A random nonempty proper subset of range(width) (empty if width 1)."""
    if width < 2:
        return np.zeros(0, np.int64)
    return np.sort(rng.permutation(width)[: rng.integers(1, width)])


def _outputs(model, feeds):
    return zoo.outputs(model, feeds if len(feeds) > 1 else feeds[0])


def _random_head_plan(model, rng, feeds, stats):
    attention = model.get_layer("mha")
    weights = [w.copy() for w in model.get_weights()]
    cut = _some(rng, attention.num_heads)
    if not cut.size:
        return
    kept = np.setdiff1d(np.arange(attention.num_heads), cut)
    plan = keras_slim.PruningPlan({"mha:heads": kept})
    slim = keras_slim.slim_model(model, plan, verify=True)
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the original untouched
    _zero(attention.output_dense.kernel, cut)
    zoo.assert_close(_outputs(model, feeds), _outputs(slim, feeds))
    assert slim.get_layer("mha").num_heads == kept.size
    model.set_weights(weights)  # (b) starts from the unmasked model
    stats["planned"] += 1


def _readers_of_residual(model):
    """(variable, axis) of every weight reading the residual stream of a
    norm-free block, from how `attention_model` builds it."""
    attention = model.get_layer("mha")
    reads = [(attention.query_dense.kernel, 0),
             (model.get_layer("mlp_up").kernel, 0),
             (model.get_layer("logits").kernel, 0)]
    if "memory_in" not in [layer.name for layer in model.layers]:
        reads += [(attention.key_dense.kernel, 0),
                  (attention.value_dense.kernel, 0)]
    return reads


def _mask_then_slim(model, rng, feeds, stats):
    attention = model.get_layer("mha")
    heads = _some(rng, attention.num_heads)
    units = _some(rng, model.get_layer("mlp_up").units)
    _zero(attention.output_dense.kernel, heads)
    _zero(model.get_layer("mlp_down").kernel, units)
    groups = {g.name: g for g in keras_slim.channel_groups(model)}
    residual = groups["embed"]
    channels = np.zeros(0, np.int64)
    if residual.prunable:
        channels = _some(rng, residual.width)
        for variable, axis in _readers_of_residual(model):
            _zero(variable, channels, axis)
    before = _outputs(model, feeds)
    plan = keras_slim.plan_dead(model)
    for name, expected in (("mha:heads", heads), ("mlp_up", units),
                           ("embed", channels)):
        np.testing.assert_array_equal(plan.removed(name), expected)
    slim = keras_slim.slim_model(model, plan, verify=True)
    zoo.assert_close(before, _outputs(slim, feeds))
    if heads.size or units.size or channels.size:
        assert keras_slim.count_params(slim) < keras_slim.count_params(model)
        assert keras_slim.count_macs(slim) < keras_slim.count_macs(model)
        stats["cut"] += 1
    stats["residual_cut"] += bool(channels.size)


def test_fuzz_attention_blocks_slim_exactly():
    stats = dict(examples=0, planned=0, cut=0, residual_cut=0)

    @seed(20261208)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data):
        keras.utils.set_random_seed(data.draw(st.integers(0, 2**16)))
        model, _ = fuzz_models.attention_model(data.draw)
        rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
        feeds = [rng.normal(size=(2,) + tuple(t.shape[1:])).astype("float32")
                 for t in model.inputs]
        _random_head_plan(model, rng, feeds, stats)
        _mask_then_slim(model, rng, feeds, stats)
        stats["examples"] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()
    print(f"attention fuzz: {stats}")
    assert stats["examples"] == EXAMPLES
    assert stats["planned"] >= 0.4 * EXAMPLES, stats
    assert stats["cut"] >= 0.7 * EXAMPLES, stats
    if EXAMPLES >= 8:
        assert stats["residual_cut"] > 0, stats
