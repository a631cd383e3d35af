"""Reading a Keras model: whether its graph can be read, the graph behind a
Sequential, its leaf layers and its nodes in execution order."""

import keras

from keras_slim.core import blocks, keras_compat

__all__ = [
    "check_model",
    "graph_of",
    "is_graph_model",
    "leaf_layers",
    "ordered_nodes",
    "overrides_call",
    "unique_names",
]


def is_graph_model(obj):
    """Whether `obj` is a Keras model whose graph can be read, or a custom
    block layer read through as its trace (`keras_slim/core/blocks.py`)."""
    if blocks.is_block(obj):
        return True
    if isinstance(obj, keras.Sequential):
        return keras_compat.functional_of(obj) is not None
    return isinstance(obj, keras.Model) and keras_compat.has_graph(obj)


def graph_of(model):
    """The functional graph behind a functional or Sequential model, or
    the trace of a block layer."""
    if blocks.is_block(model):
        return blocks.trace(model)
    if isinstance(model, keras.Sequential):
        return keras_compat.functional_of(model)
    return model


def check_model(model, argument="model"):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected `{argument}` to be a keras.Model. "
            f"Received: {argument}={model!r} of type {type(model).__name__}"
        )
    if isinstance(model, keras.Sequential) and not is_graph_model(model):
        raise ValueError(
            f"The Sequential model `{model.name}` is not built. Give it an "
            "input shape (keras.Input(...) as first layer) before pruning."
        )
    if not is_graph_model(model):
        raise TypeError(
            f"`{argument}` must be a functional or Sequential Keras model, "
            f"whose graph of layers can be read. Received the subclassed "
            f"model `{model.name}` ({type(model).__name__}); rebuild it with "
            "the functional API (keras.Model(inputs, outputs))."
        )


def leaf_layers(model):
    """Every layer of `model` that is not itself a model, nested models
    read through, each once, in `model.layers` order."""
    seen = set()
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            for inner in leaf_layers(layer):
                if id(inner) not in seen:
                    seen.add(id(inner))
                    yield inner
        elif id(layer) not in seen:
            seen.add(id(layer))
            yield layer


def ordered_nodes(model):
    """Non-input nodes of a functional model in execution order."""
    by_depth = keras_compat.nodes_by_depth(model)
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if node.operation is not None and not node.is_input:
                yield node


def _scoped_operations(model, where=""):
    """(operation, path of the nested model that calls it) of every leaf
    operation of `model`, nested models read through."""
    for node in ordered_nodes(graph_of(model)):
        op = node.operation
        if is_graph_model(op):
            inner = f"{where}/{op.name}" if where else op.name
            yield from _scoped_operations(op, inner)
        else:
            yield op, where


def unique_names(model):
    """id(operation) -> a name no other operation of `model` has.

    A name two operations share (two towers built by one function, two
    `keras.applications` models) is prefixed by the nested model's path.

    Raises:
        ValueError: two operations still share a name (one nested model
            reached under two names cannot happen; two operations of one
            nested model named alike can, with custom graphs).
    """
    where = {}
    by_name = {}
    for op, path in _scoped_operations(model):
        if id(op) not in where:
            where[id(op)] = path
            by_name.setdefault(op.name, []).append(op)
    names = {}
    taken = {}
    for name, ops in by_name.items():
        for op in ops:
            path = where[id(op)]
            unique = f"{path}/{name}" if len(ops) > 1 and path else name
            if unique in taken:
                raise ValueError(
                    f"Two different layers are named `{unique}` in model "
                    f"`{model.name}`, in {taken[unique] or 'the top level'} "
                    f"and {path or 'the top level'}. keras_slim identifies "
                    "layers by name; give them unique names."
                )
            taken[unique] = path
            names[id(op)] = unique
    return names


def overrides_call(model):
    """Whether `model`'s class overrides the `call` of its graph."""
    if blocks.is_block(model):
        return False  # the graph is the trace of its own `call`
    base = (keras.Sequential if isinstance(model, keras.Sequential)
            else keras_compat.functional_class())
    return type(model).call is not base.call
