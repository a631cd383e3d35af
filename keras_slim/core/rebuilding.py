"""Building the slim model: each kept layer cloned with its thinner config,
the graph rebuilt in execution order, and the cut weights assigned.

What the user wrote is kept: a layer comes back with its name (even when its
`__init__` renames itself, or its `get_config` forgets the name), a model
input with its spec (`optional`, `sparse`), a model subclass with its class,
its methods and its attributes. The slim model shares no variable with the
original; what cannot be rebuilt is refused, naming the reason.
"""

import copy

import keras
import numpy as np

from keras_slim.core import (
    blocks,
    copying,
    kept_blocks,
    keras_compat,
    layer_configs,
    user_code,
)
from keras_slim.core.graph import graph_of, is_graph_model, ordered_nodes

__all__ = ["assign", "check_unshared", "clone_layer", "rebuild"]



def clone_layer(layer, update):
    """A new layer of `layer`'s class from its config with `update` applied.

    Layers the config holds as objects are cloned too (never shared), and
    the clone gets `layer`'s name and its sublayers' names.
    """
    config = _config_of(layer)
    config.update(update)
    config = _clone_held_layers(config)
    if isinstance(layer, keras.layers.Lambda):
        new = user_code.clone_lambda(layer, config)
        if new is not None:
            _copy_names(layer, new)
            return new
    if getattr(getattr(layer, "activation", None), "__name__", "") == "<lambda>":
        # A lambda serializes to code that only an unsafe load reads back:
        # the clone takes the function itself.
        config["activation"] = layer.activation
    options = {}
    if isinstance(layer, keras.layers.Lambda):
        # The config was serialised just above, from the user's own function:
        # nothing untrusted is loaded.
        options["safe_mode"] = False
    try:
        try:
            new = layer.__class__.from_config(config, **options)
        except Exception:
            # A library layer whose config its own from_config refuses
            # (`core/layer_configs.py`).
            new = layer.__class__.from_config(
                layer_configs.repaired_config(layer, config), **options)
    except Exception as error:
        raise ValueError(
            f"Cannot rebuild layer `{layer.name}` ({type(layer).__name__}) "
            f"from its config: {error}. Custom layers need a get_config() "
            "that from_config() accepts."
        ) from None
    if isinstance(layer, keras.layers.Lambda):
        user_code.keep_code(layer, new)
    _copy_names(layer, new)
    return new


def _config_of(layer):
    """`layer.get_config()`, or, for a layer Keras cannot configure (one
    created with a non-serializable argument such as a `DTypePolicy`
    object), its base config: name, trainable flag and dtype policy; for
    one whose get_config fails, a config from its attributes."""
    try:
        return layer.get_config()
    except NotImplementedError:
        pass
    except Exception:  # a get_config that fails: one from its attributes
        return layer_configs.repaired_config(layer, None)
    return {
        "name": layer.name,
        "trainable": layer.trainable,
        "dtype": keras.dtype_policies.serialize(layer.dtype_policy),
    }


def _clone_held_layers(value):
    if isinstance(value, keras.layers.Layer):
        return clone_layer(value, {})
    if isinstance(value, dict):
        return {k: _clone_held_layers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone_held_layers(v) for v in value)
    return value


def _copy_names(layer, new):
    """Give `new` (not yet built) the names of `layer` and its sublayers."""
    new.name = layer.name
    kept_blocks.rename_inner(layer, new, weighted=True)


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
        new = _rebuild_sequential(model, graph, new_layers, built,
                                  input_shapes[0])
        built[id(model)] = new
        return new
    tensors = {}
    for tensor, shape in zip(graph.inputs, input_shapes):
        tensors[id(tensor)] = _input_like(tensor, shape)
    for node in ordered_nodes(graph):
        if any(id(t) not in tensors for t in node.input_tensors):
            continue
        op = node.operation
        whole = kept_blocks.unchanged(op, new_layers)
        if whole:
            new_op = built.get(id(op)) or clone_layer(op, {})
        elif is_graph_model(op):
            shapes = [tuple(tensors[id(t)].shape) for t in node.input_tensors]
            new_op = rebuild(op, new_layers, built, shapes)
        elif isinstance(op, keras.layers.Layer):
            new_op = new_layers[id(op)][0]
        else:
            new_op = op  # a stateless op such as `x + 3.0`
        args, kwargs = node.arguments.fill_in(tensors)
        outputs = new_op(*args, **kwargs)
        if whole and id(op) not in built:
            # A block the plan leaves as it was: its own class, its weights
            # (`core/kept_blocks.py`).
            copying.copy_weights(op, new_op)
            kept_blocks.rename_inner(op, new_op)
            kept_blocks.adopt(op, new_op, new_layers)
            built[id(op)] = new_op
        for tensor, value in zip(node.outputs, keras.tree.flatten(outputs)):
            tensors[id(tensor)] = value

    def convert(tensor):
        return tensors[id(tensor)]

    inputs = keras.tree.map_structure(convert, keras_compat.input_structure(graph))
    outputs = keras.tree.map_structure(convert, keras_compat.output_structure(graph))
    cls = type(model)
    if cls is keras_compat.functional_class() or blocks.is_block(model):
        # A block read through comes back as the functional model of its
        # trace, under its name.
        new = keras.Model(inputs, outputs, name=model.name,
                          trainable=model.trainable)
    else:
        # What the subclass' own `super().__init__(inputs, outputs)` runs
        # (Keras put `Functional` among its bases when it was first built).
        new = cls.__new__(cls)
        keras_compat.functional_class().__init__(
            new, inputs, outputs, name=model.name, trainable=model.trainable)
        _copy_attributes(model, new, new_layers, built, tensors)
    built[id(model)] = new
    return new


def _input_like(tensor, shape):
    layer = keras_compat.input_layer_of(tensor)
    return keras.Input(
        batch_shape=shape,
        dtype=tensor.dtype,
        sparse=getattr(tensor, "sparse", False),
        name=layer.name,
        optional=getattr(layer, "optional", False),
    )


def _rebuild_sequential(model, graph, new_layers, built, input_shape):
    first = graph.inputs[0]
    input_layer = keras_compat.input_layer_of(first)
    probe = _input_like(first, input_shape)
    layers = [
        keras.layers.InputLayer(
            batch_shape=input_shape,
            dtype=first.dtype,
            sparse=getattr(first, "sparse", False),
            name=input_layer.name,
            optional=getattr(input_layer, "optional", False),
        )
    ]
    x = probe
    for layer in model.layers:
        if is_graph_model(layer):
            new_layer = rebuild(layer, new_layers, built, [tuple(x.shape)])
        else:
            new_layer = new_layers[id(layer)][0]
        x = new_layer(x)  # the next nested model's input shape
        layers.append(new_layer)
    cls = type(model)
    if cls is keras.Sequential:
        return keras.Sequential(layers, name=model.name,
                                trainable=model.trainable)
    new = cls.__new__(cls)
    keras.Sequential.__init__(new, layers, name=model.name,
                              trainable=model.trainable)
    _copy_attributes(model, new, new_layers, built, {})
    return new


def _copy_attributes(model, new, new_layers, built, tensors):
    """Carry the attributes a model subclass' `__init__` set over to `new`.

    Layers the graph calls become their slim copies, and so does a model
    built of them (keras-hub's `image_encoder`) and a tensor of the graph
    (`pyramid_outputs`); a weightless layer the graph never calls is
    cloned; metrics, losses and optimizers are recreated with fresh state
    (`user_code.py`); plain data is copied. What `compile` and `fit` left
    is not carried: compile the slim model.

    Raises:
        ValueError: an attribute holds a layer with weights the graph does
            not call, or a variable, which the slim model would share with
            the original, or an object that cannot be recreated.
    """
    known = set(_attributes(new)) | keras_compat.training_attributes()
    for key, value in _attributes(model).items():
        if key in known:
            continue
        try:
            value = _carried(value, new_layers, built, tensors)
        except user_code.Unshareable as error:
            raise ValueError(
                f"Cannot rebuild model `{model.name}` "
                f"({type(model).__name__}): its attribute `{key}` holds "
                f"{error}. Overridden methods: {_overridden(model)}."
            ) from None
        if isinstance(value, (keras.layers.Layer, keras.metrics.Metric)):
            setattr(new, key, value)  # tracked as the original's was
        else:
            object.__setattr__(new, key, value)


def _attributes(obj):
    """An object's instance attributes; on the torch backend a layer's
    sublayers live in torch's module dict, not the instance dict."""
    attributes = dict(vars(obj))
    modules = attributes.get("_modules")
    if isinstance(modules, dict):
        attributes.update(
            {k: v for k, v in modules.items() if v is not None})
    return attributes


_OUTSIDE = ("which is not part of its graph of layers, so the slim model "
            "would share it with the original")


def _carried(value, new_layers, built, tensors):
    if isinstance(value, keras.layers.Layer):
        return _carried_layer(value, new_layers, built)
    if isinstance(value, user_code.RECREATED):
        return user_code.recreate(value)
    if isinstance(value, keras.callbacks.Callback):
        return value  # the user's callback, set on whichever model fits
    if isinstance(value, keras.KerasTensor):
        if id(value) not in tensors:
            raise user_code.Unshareable(
                f"tensor `{value.name}`, which is not a tensor of its graph")
        return tensors[id(value)]
    if isinstance(value, keras.Variable):
        raise user_code.Unshareable(f"variable `{value.path}`, {_OUTSIDE}")
    if isinstance(value, dict):
        return {k: _carried(v, new_layers, built, tensors)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_carried(v, new_layers, built, tensors) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (int, float, complex, str, bytes, bool, type(None))):
        return value
    try:
        return copy.deepcopy(value)
    except Exception:  # a function, a module: shared, as any Python object
        return value


def _carried_layer(value, new_layers, built):
    """The slim model's counterpart of a layer an attribute holds: its slim
    copy, a model of slim layers rebuilt, or a weightless layer cloned."""
    if id(value) in built:
        return built[id(value)]
    if id(value) in new_layers:
        return new_layers[id(value)][0]
    if is_graph_model(value) and _covered(value, new_layers, built):
        return rebuild(value, new_layers, built)
    if value.weights:
        raise user_code.Unshareable(
            f"layer `{value.name}` ({type(value).__name__}), {_OUTSIDE}")
    try:
        clone = clone_layer(value, {})
    except ValueError as error:
        raise user_code.Unshareable(
            f"layer `{value.name}` ({type(value).__name__}), which is not "
            f"part of its graph of layers and cannot be cloned: {error}"
        ) from None
    built[id(value)] = clone
    return clone


def _covered(model, new_layers, built):
    """Whether every layer `model`'s graph calls has a slim copy (the model
    is another view of the slim graph's layers)."""
    for node in ordered_nodes(graph_of(model)):
        op = node.operation
        if id(op) in built or id(op) in new_layers:
            continue
        if is_graph_model(op):
            if not _covered(op, new_layers, built):
                return False
        elif isinstance(op, keras.layers.Layer):
            return False
    return True


def _overridden(model):
    """Names of the methods and properties `model`'s own classes define."""
    base = (keras.Sequential if isinstance(model, keras.Sequential)
            else keras_compat.functional_class())
    names = set()
    for cls in type(model).__mro__:
        if cls is base or not issubclass(cls, base):
            break
        names |= {
            name for name, value in vars(cls).items()
            if not name.startswith("__")
            and (callable(value) or isinstance(value, property))
        }
    return ", ".join(f"`{n}`" for n in sorted(names)) or "none"


def check_unshared(model, slim):
    """Raise if `slim` holds a variable of `model`.

    Raises:
        ValueError: naming the slim layer that holds the variable.
    """
    owned = {id(v) for v in model.weights}
    for layer in keras_compat.flatten_layers(slim):
        for variable in layer.weights:
            if id(variable) in owned:
                raise ValueError(
                    f"Layer `{layer.name}` ({type(layer).__name__}) of the "
                    f"slim model holds variable `{variable.path}` of the "
                    "original model, so training one would change the "
                    "other. Its get_config() returns an object that holds "
                    "the variable; return its config instead "
                    "(keras.saving.serialize_keras_object)."
                )


def assign(new_layer, layer, values):
    """Set the weights of `new_layer` from `{key: array}` (keys of
    `copying.weight_keys`), and give the sublayers it created when it was
    built (MultiHeadAttention's softmax and dropout) their names in
    `layer`."""
    _copy_names(layer, new_layer)
    names = copying.weight_keys(new_layer)
    if names is None or not all(n in values for n in names):
        # Layers with nested sublayers: copy positionally when shapes agree.
        originals = layer.get_weights()
        new_layer.set_weights(originals)
        copying.refresh_state(new_layer)
        return
    copying.assign_layer(new_layer, values)
