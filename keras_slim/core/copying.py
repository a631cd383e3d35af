"""Copying layers and models with every piece of their state.

A layer is its config, its variables, and sometimes state derived from its
variables that neither carries: an adapted `keras.layers.Normalization`
normalises with tensors built from its `mean` and `variance` variables by
`finalize_state()`, so assigning the variables of a copy is not enough. Every
path of keras_slim that copies a model or a layer (slim_model,
add_gamma_regularizer, rescale_gammas, the protocols' copies, apply_masks,
the recipes) goes through the helpers here, so that state is carried once,
in one place.
"""

import keras

from keras_slim.core import keras_compat

__all__ = [
    "assign_layer",
    "clone_model",
    "copy_weights",
    "leaf_layers",
    "refresh_model_state",
    "refresh_state",
    "weight_keys",
]


def refresh_state(layer):
    """Rebuild the state a layer derives from its variables.

    Keras' stateful preprocessing layers (Normalization, Discretization, the
    lookup layers) rebuild it in `finalize_state()`, which `adapt()` and
    loading call but `variable.assign` and `set_weights` do not.
    """
    finalize = getattr(layer, "finalize_state", None)
    if callable(finalize) and getattr(layer, "built", False):
        finalize()


def leaf_layers(model):
    """Every layer of `model` that is not a model, nested models included."""
    return [
        layer
        for layer in keras_compat.flatten_layers(model)
        if not isinstance(layer, keras.Model)
    ]


def refresh_model_state(model):
    for layer in leaf_layers(model):
        refresh_state(layer)


def copy_weights(source, target):
    """Set `target`'s weights from `source` (same architecture), state too."""
    target.set_weights(source.get_weights())
    refresh_model_state(target)
    return target


def weight_keys(layer):
    """The key of each of `layer.weights` in the `{key: array}` of rules:
    its name, or, where the layer's sublayers repeat names (the `kernel` of
    each projection of MultiHeadAttention), its path below the layer
    (`query/kernel`); `None` when even paths repeat."""
    names = [v.name for v in layer.weights]
    if len(set(names)) == len(names):
        return names
    prefix = layer.name + "/"
    keys = [v.path.split(prefix, 1)[1] if prefix in v.path else v.path
            for v in layer.weights]
    return keys if len(set(keys)) == len(keys) else None


def assign_layer(layer, values):
    """Assign `{key: array}` (keys of `weight_keys`) to `layer` and refresh
    its state.

    Raises:
        ValueError: a variable's shape differs from the value computed.
    """
    for key, variable in zip(weight_keys(layer), layer.weights):
        value = values[key]
        if tuple(variable.shape) != tuple(value.shape):
            raise ValueError(
                f"Weight `{variable.name}` of layer `{layer.name}` has shape "
                f"{tuple(variable.shape)} in the new model but "
                f"{tuple(value.shape)} was computed; the layer's rule does "
                "not match its weights."
            )
        variable.assign(value)
    refresh_state(layer)


def clone_model(model, clone_function=None, recursive=False):
    """`keras.models.clone_model` with the weights and derived state copied.

    Args:
        model: a functional or Sequential `keras.Model`.
        clone_function: as for `keras.models.clone_model`; the clones must
            have the weights of the original layers.
        recursive: clone nested models with `clone_function` too.
    """
    kwargs = {}
    if clone_function is not None:
        kwargs = {"clone_function": clone_function, "recursive": recursive}
    copy = keras.models.clone_model(model, **kwargs)
    return copy_weights(model, copy)
