"""Configs that rebuild a layer when its own `get_config` does not.

A layer is cloned from its config (`rebuilding.clone_layer`). Some library
layers write a config their own `from_config` refuses or that misses an
argument: keras-hub 0.32's `ViTPatchingAndEmbedding` and `DeiTEmbeddings`
write the derived `num_patches` and `num_positions`, which their `__init__`
does not take, and leave out `use_patch_bias` and `data_format`;
`LlamaTransformerDecoder.get_config` reads an attribute it never sets;
CLIP's activations name a function that is registered nowhere.

When the plain config fails, `repaired_config` writes one from the layer
itself, by the names of its `__init__` arguments:

- a key no `__init__` of the class takes is dropped (a value `__init__`
  derives from the others);
- an argument the config leaves out is taken from the layer's attribute of
  the same name, when the layer has one holding plain data;
- an `activation` Keras cannot look up by name is the function itself.

The clone is then checked like any other: its weights must take the
original's shapes, else `assign` refuses it.
"""

import inspect

import keras

from keras_slim.core import rule_registry

__all__ = ["repaired_config", "width_free"]

_PLAIN = (bool, int, float, str, type(None))


def repaired_config(layer, config):
    """A config for `type(layer).from_config` built from `config` (or
    `None` when `get_config` itself failed) and `layer`'s attributes."""
    config = dict(config or {})
    config.setdefault("name", layer.name)
    config.setdefault("trainable", layer.trainable)
    config.setdefault(
        "dtype", keras.dtype_policies.serialize(layer.dtype_policy))
    named, open_ended = _init_arguments(type(layer))
    if not open_ended:
        config = {k: v for k, v in config.items() if k in named}
    else:
        config = {k: v for k, v in config.items()
                  if k in named or k in _base_arguments()}
    for name in named:
        if name in config or name in _base_arguments():
            continue
        value = getattr(layer, name, None)
        if _plain(value):
            config[name] = value
    activation = getattr(layer, "activation", None)
    if "activation" in config and callable(activation):
        config["activation"] = activation
    return config


def _init_arguments(cls):
    """The argument names the `__init__`s of `cls` take, up to Keras'
    `Layer`, and whether the chain ends in one that takes any keyword."""
    names = set()
    open_ended = False
    base = set(keras.layers.Layer.__mro__)
    for klass in cls.__mro__:
        if klass in base:
            break
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(vars(klass)["__init__"]).parameters
        for parameter in list(parameters.values())[1:]:
            if parameter.kind == parameter.VAR_KEYWORD:
                open_ended = True
            elif parameter.kind != parameter.VAR_POSITIONAL:
                names.add(parameter.name)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
            open_ended = False
            break
    return names, open_ended


def _base_arguments():
    """What Keras' `Layer.__init__` takes from a subclass' `**kwargs`."""
    parameters = inspect.signature(keras.layers.Layer.__init__).parameters
    return {name for name in parameters if name not in ("self", "kwargs")} | {
        "input_dim", "input_shape", "batch_input_shape", "batch_size",
        "weights"}


def _plain(value):
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return False


def width_free(layer):
    """Whether `layer`'s clone is the same whichever channels it sees: no
    weight, and a rule that changes neither its config nor its weights. A
    layer called on two tensors (keras-hub's ViT MLP calls one Dropout on
    its hidden units and on its output) then ties their channels to
    nothing."""
    if not isinstance(layer, keras.layers.Layer) or layer.weights:
        return False
    rule = rule_registry.rule_for(layer)
    return (not rule.axes and not rule.widths
            and type(rule).slice is rule_registry.Rule.slice)
