"""Building the slim model: each kept layer cloned with its thinner config,
the graph rebuilt in execution order, and the cut weights assigned."""

import keras

from keras_slim.core import copying, keras_compat
from keras_slim.core.graph import graph_of, is_graph_model, ordered_nodes

__all__ = ["assign", "clone_layer", "rebuild"]


def clone_layer(layer, update):
    config = layer.get_config()
    config.update(update)
    try:
        return layer.__class__.from_config(config)
    except Exception as error:
        raise ValueError(
            f"Cannot rebuild layer `{layer.name}` ({type(layer).__name__}) "
            f"from its config: {error}. Custom layers need a get_config() "
            "that from_config() accepts."
        ) from None


def rebuild(model, new_layers, built, input_shapes=None):
    """Rebuild `model` with new leaf layers; nested models rebuilt once.

    `input_shapes` are the (possibly narrower) shapes a nested model is now
    called with; the top-level model keeps its own.
    """
    if id(model) in built:
        return built[id(model)]
    graph = graph_of(model)
    if input_shapes is None:
        input_shapes = [tuple(t.shape) for t in graph.inputs]
    if isinstance(model, keras.Sequential):
        first = graph.inputs[0]
        layers = [
            keras.layers.InputLayer(
                batch_shape=input_shapes[0],
                dtype=first.dtype,
                name=keras_compat.produced_by(first),
            )
        ]
        for layer in model.layers:
            if is_graph_model(layer):
                raise ValueError(
                    f"Sequential model `{model.name}` contains the model "
                    f"`{layer.name}`; keras_slim rebuilds nested models inside "
                    "functional models only."
                )
            else:
                layers.append(new_layers[id(layer)][0])
        new = keras.Sequential(layers, name=model.name, trainable=model.trainable)
        built[id(model)] = new
        return new
    tensors = {}
    for tensor, shape in zip(graph.inputs, input_shapes):
        tensors[id(tensor)] = keras.Input(
            batch_shape=shape,
            dtype=tensor.dtype,
            sparse=getattr(tensor, "sparse", False),
            name=keras_compat.produced_by(tensor),
        )
    for node in ordered_nodes(graph):
        if any(id(t) not in tensors for t in node.input_tensors):
            continue
        op = node.operation
        if is_graph_model(op):
            shapes = [tuple(tensors[id(t)].shape) for t in node.input_tensors]
            new_op = rebuild(op, new_layers, built, shapes)
        elif isinstance(op, keras.layers.Layer):
            new_op = new_layers[id(op)][0]
        else:
            new_op = op  # a stateless op such as `x + 3.0`
        args, kwargs = node.arguments.fill_in(tensors)
        outputs = new_op(*args, **kwargs)
        for tensor, value in zip(node.outputs, keras.tree.flatten(outputs)):
            tensors[id(tensor)] = value

    def convert(tensor):
        return tensors[id(tensor)]

    inputs = keras.tree.map_structure(convert, keras_compat.input_structure(graph))
    outputs = keras.tree.map_structure(convert, keras_compat.output_structure(graph))
    new = keras.Model(inputs, outputs, name=model.name, trainable=model.trainable)
    built[id(model)] = new
    return new


def assign(new_layer, layer, values):
    """Set the weights of `new_layer` from `{name: array}`."""
    names = [v.name for v in new_layer.weights]
    if len(set(names)) != len(names) or not all(n in values for n in names):
        # Layers with nested sublayers: copy positionally when shapes agree.
        originals = layer.get_weights()
        new_layer.set_weights(originals)
        copying.refresh_state(new_layer)
        return
    copying.assign_layer(new_layer, values)
