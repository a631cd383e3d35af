"""Blocks read through but left as they were: kept as their own class.

A custom block layer is read through (`blocks.py`) so that the channels in
it can be cut. When a plan cuts nothing in it, and no constant is folded
into it, the slim model does not need its trace: the block comes back as a
clone of its own class (`ViTEncoder`, `CLIPEncoderLayer`, ...) with the
same weights. A model whose config names its blocks (keras-hub's backbones
build theirs from their constructor arguments) then still matches its
config, so it saves to `.keras` and loads back as its own class. Only the
blocks a plan changes become functional models of the same name.
"""

import keras
import numpy as np

from keras_slim.core import blocks, keras_compat
from keras_slim.core.graph import is_graph_model, ordered_nodes

__all__ = ["adopt", "rename_inner", "unchanged"]


def unchanged(block, new_layers):
    """Whether every leaf layer of the read-through `block` keeps its
    config and its weights in `new_layers` (`{id(layer): (clone,
    {name: array})}`, as `slim_model` builds it)."""
    if not blocks.is_block(block):
        return False
    return all(_leaf_unchanged(leaf, new_layers)
               for leaf in _leaves(block))


def _leaves(block):
    for node in ordered_nodes(blocks.trace(block)):
        op = node.operation
        if is_graph_model(op):
            yield from _leaves(op)
        elif isinstance(op, keras.layers.Layer):
            yield op  # not a stateless op such as `x + y`


def _leaf_unchanged(layer, new_layers):
    entry = new_layers.get(id(layer))
    if entry is None:
        return False
    clone, values = entry
    variables = list(layer.weights)
    names = [v.name for v in variables]
    if len(set(names)) != len(names):
        # Weights named alike (MultiHeadAttention's four `kernel`s): as
        # `rebuilding.assign` does, the clone takes the layer's own weights.
        variables = []
    elif len(values) != len(variables):
        return False
    for variable, current in zip(variables, layer.get_weights()):
        value = values.get(variable.name)
        if value is None or np.shape(value) != np.shape(current) or not (
                np.array_equal(value, current, equal_nan=True)):
            return False
    try:
        return _comparable(clone) == _comparable(layer)
    except Exception:  # a config that cannot be read: rebuild the trace
        return False


def _comparable(layer):
    try:
        config = dict(layer.get_config())
    except NotImplementedError:  # a layer Keras cannot configure
        config = {"trainable": layer.trainable,
                  "dtype": keras.dtype_policies.serialize(layer.dtype_policy)}
    config.pop("name", None)
    return type(layer), repr(sorted(config.items(), key=lambda item: item[0]))



def rename_inner(block, new, weighted=False):
    """Give the sublayers of the clone `new` the names of `block`'s, when
    both hold the same layers: those that hold no variable (dropouts,
    softmaxes that Keras names on its own), and with `weighted` the others
    too (before `new` is built, or where names are all that is copied)."""
    old_inner = keras_compat.flatten_layers(block)
    new_inner = keras_compat.flatten_layers(new)
    if len(old_inner) != len(new_inner) or not all(
            type(a) is type(b) for a, b in zip(old_inner, new_inner)):
        return
    for a, b in zip(old_inner, new_inner):
        if weighted or not b.weights:
            b.name = a.name


def adopt(block, new, new_layers):
    """Point the entries of `block`'s sublayers in `new_layers` to their
    counterparts in its built clone `new`, so that an attribute holding one
    (DistilBERT's `token_embedding`) gets the layer the slim model calls,
    and its weights are assigned there. The clone's trace names its ops as
    `block`'s does."""
    old_inner = keras_compat.flatten_layers(block)
    new_inner = keras_compat.flatten_layers(new)
    if len(old_inner) != len(new_inner) or not all(
            type(a) is type(b) for a, b in zip(old_inner, new_inner)):
        raise ValueError(
            f"Cannot rebuild layer `{block.name}` ({type(block).__name__}): "
            "its clone does not hold the same layers.")
    blocks.name_ops_like(new, block)
    for a, b in zip(old_inner, new_inner):
        blocks.name_ops_like(b, a)  # a block inside it
        if id(a) in new_layers:
            new_layers[id(a)] = (b, new_layers[id(a)][1])
