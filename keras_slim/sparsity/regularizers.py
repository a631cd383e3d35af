"""Network Slimming's sparsity penalty on BatchNormalization scales.

`GammaL1(s)` adds `s * sum|gamma|` to the loss (Liu et al., ICCV 2017);
`add_gamma_regularizer` returns a copy of a model whose BatchNormalization
layers carry it.
"""

import math
import numbers
import warnings

import keras
from keras import ops

from keras_slim.core import copying, keras_compat
from keras_slim.core import graph as graph_lib

__all__ = [
    "add_gamma_regularizer",
    "batchnorm_layers",
    "check_gamma_dtype",
    "check_penalty",
    "copy_model",
    "corresponding_layers",
    "frozen_gammas",
    "GammaL1",
    "remove_gamma_regularizer",
    "select_batchnorms",
    "to_array",
]


def check_penalty(value, argument):
    """`value` as a float, or a clear error when it is not a number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Expected `{argument}` to be a non-negative number. "
            f"Received: {argument}={value!r} of type {type(value).__name__}"
        )
    value = float(value)
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(
            f"Expected `{argument}` to be a finite number >= 0. "
            f"Received: {argument}={value!r}"
        )
    return value


@keras.saving.register_keras_serializable(package="keras_slim")
class GammaL1(keras.regularizers.Regularizer):
    """L1 penalty `s * sum(|gamma|)` for BatchNormalization scales.

    The penalty of Network Slimming (Liu et al., ICCV 2017). Its subgradient,
    `s * sign(gamma)`, is what the paper's reference code adds to the
    gradient of each gamma. Typical values: `s = 1e-4` (VGG), `1e-5`
    (ResNet, DenseNet).

    Args:
        s: the penalty weight, a finite number >= 0.

    Raises:
        TypeError: `s` is not a number.
        ValueError: `s` is negative, infinite or NaN.

    Example:

    >>> layer = keras.layers.BatchNormalization(
    ...     gamma_regularizer=keras_slim.GammaL1(1e-4))
    """

    def __init__(self, s=1e-4):
        self.s = check_penalty(s, "s")

    def __call__(self, x):
        return ops.multiply(
            ops.cast(self.s, x.dtype), ops.sum(ops.abs(x))
        )

    def get_config(self):
        return {"s": self.s}


def to_array(variable):
    """A variable's value as a NumPy array.

    Goes through `ops.copy`: converting a TensorFlow variable directly
    triggers NumPy 2's `__array__` deprecation warning.
    """
    return ops.convert_to_numpy(ops.copy(variable))


def batchnorm_layers(model):
    """Every BatchNormalization layer of `model`, nested models included."""
    return [
        layer
        for layer in keras_compat.flatten_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def select_batchnorms(model, layers, argument="layers"):
    """The BatchNormalization layers with a gamma that `layers` names.

    Args:
        model: a Keras model.
        layers: `None` for all of them, or an iterable of layer names.
        argument: the name used in error messages.

    Returns:
        A list of BatchNormalization layers with `scale=True`.

    Raises:
        ValueError: `layers` is `None` and the model has no
            BatchNormalization layer with a gamma, or `layers` names a layer
            the model does not have.
        TypeError: `layers` is not a list of names.
    """
    found = batchnorm_layers(model)
    if layers is None:
        chosen = [layer for layer in found if layer.scale]
        if not chosen:
            raise ValueError(
                f"The model `{model.name}` has no BatchNormalization layer "
                "with a scale (gamma); there is nothing to make sparse."
            )
        return chosen
    if isinstance(layers, str) or not all(
        isinstance(name, str) for name in layers
    ):
        raise TypeError(
            f"Expected `{argument}` to be a list of layer names. "
            f"Received: {argument}={layers!r}"
        )
    by_name = {
        layer.name: layer
        for layer in keras_compat.flatten_layers(model)
    }
    chosen, skipped = [], []
    for name in layers:
        if name not in by_name:
            raise ValueError(
                f"Expected `{argument}` to name layers of model "
                f"`{model.name}`. Received: unknown layer {name!r}"
            )
        layer = by_name[name]
        if isinstance(layer, keras.layers.BatchNormalization) and layer.scale:
            if layer not in chosen:
                chosen.append(layer)
        else:
            skipped.append(name)
    if skipped:
        warnings.warn(
            f"Layers {skipped} named in `{argument}` are not "
            "BatchNormalization layers with a scale (gamma); they are left "
            "alone.",
            stacklevel=3,
        )
    return chosen


def frozen_gammas(model, layers):
    """The layers among `layers` whose gamma `model` does not train
    (`trainable=False` on the layer or on a model around it)."""
    trainable = {id(v) for v in model.trainable_weights}
    return [layer for layer in layers if id(layer.gamma) not in trainable]


def check_gamma_dtype(layer):
    dtype = keras.backend.standardize_dtype(layer.gamma.dtype)
    if "float" not in dtype:
        raise TypeError(
            f"Expected the gamma of BatchNormalization layer `{layer.name}` "
            f"to be a floating-point variable. Received: dtype={dtype}"
        )


def copy_model(model, argument="model"):
    """A structural copy of a functional or Sequential model, weights kept.

    Layer names are preserved; the copy is not compiled.
    """
    graph_lib.check_model(model, argument)
    return copying.clone_model(model)


def corresponding_layers(model, copy):
    """Map each layer of `model` (by id) to the same layer of `copy`."""
    def layers_of(m):
        return [
            layer
            for layer in keras_compat.flatten_layers(m)
            if not isinstance(layer, keras.layers.InputLayer)
        ]

    originals, clones = layers_of(model), layers_of(copy)
    if len(originals) != len(clones):
        raise RuntimeError("The copy of the model has a different structure.")
    mapping = {}
    for original, clone in zip(originals, clones):
        if type(original) is not type(clone) or original.name != clone.name:
            raise RuntimeError(
                f"Could not match layer `{original.name}` of the original "
                f"model with its copy (found `{clone.name}`)."
            )
        mapping[id(original)] = clone
    return mapping


def add_gamma_regularizer(model, regularizer, layers=None):
    """A copy of `model` whose BatchNormalization gammas carry `regularizer`.

    The copy keeps every weight; `model` is left untouched. The copy is not
    compiled: compile it before training.

    Args:
        model: a functional or Sequential `keras.Model`.
        regularizer: a Keras regularizer (for example `GammaL1(1e-4)`), its
            name or config, a number `s`, shorthand for `GammaL1(s)`, or
            `None` to remove the gamma regularizers (a slimmed model keeps
            its BatchNormalization configs, penalty included: remove it
            before fine-tuning or training the architecture from scratch).
        layers: names of the BatchNormalization layers to regularize, or
            `None` for all of them. Named layers that are not
            BatchNormalization layers with a gamma are skipped with a
            warning.

    Returns:
        A new `keras.Model`.

    Raises:
        TypeError: `model` is not a functional or Sequential model, or
            `regularizer` is not a regularizer, or a gamma is not a float.
        ValueError: the model has no BatchNormalization layer with a gamma,
            `layers` names an unknown layer, or `s` is negative or NaN.

    Example:

    >>> slim_ready = keras_slim.add_gamma_regularizer(model, GammaL1(1e-4))
    >>> slim_ready.compile("sgd", "sparse_categorical_crossentropy")
    """
    if isinstance(regularizer, numbers.Real) and not isinstance(
        regularizer, bool
    ):
        regularizer = GammaL1(regularizer)
    elif regularizer is not None:
        try:
            regularizer = keras.regularizers.get(regularizer)
        except (ValueError, TypeError) as error:
            raise TypeError(
                "Expected `regularizer` to be a Keras regularizer, its name "
                f"or config, or a number. Received: regularizer={regularizer!r}"
            ) from error
    graph_lib.check_model(model)
    chosen = select_batchnorms(model, layers)
    for layer in chosen:
        check_gamma_dtype(layer)
    frozen = frozen_gammas(model, chosen)
    if frozen:
        names = ", ".join(f"`{layer.name}`" for layer in frozen[:5])
        if len(frozen) > 5:
            names += f" and {len(frozen) - 5} more"
        warnings.warn(
            f"The gammas of BatchNormalization layer(s) {names} are not "
            "trainable (`trainable=False`): the regularizer is added but "
            "does nothing to them until they are made trainable.",
            stacklevel=2,
        )
    copy = copy_model(model)
    mapping = corresponding_layers(model, copy)
    for layer in chosen:
        clone = mapping[id(layer)]
        clone.gamma_regularizer = regularizer
        clone.gamma.regularizer = regularizer
    return copy


def remove_gamma_regularizer(model, layers=None):
    """A copy of `model` whose BatchNormalization gammas carry no
    regularizer: the inverse of `add_gamma_regularizer`, for fine-tuning a
    slim model without the sparsity penalty.

    The copy keeps every weight; `model` is left untouched. The copy is not
    compiled.

    Args:
        model: a functional or Sequential `keras.Model`.
        layers: names of the BatchNormalization layers to free, or `None`
            for all of them.

    Returns:
        A new `keras.Model`.

    Raises:
        TypeError: `model` is not a functional or Sequential model.
        ValueError: `layers` names an unknown layer.

    Example:

    >>> slim = keras_slim.slim_model(sparse, plan)
    >>> fine_tune = keras_slim.remove_gamma_regularizer(slim)
    """
    graph_lib.check_model(model)
    if layers is None:
        chosen = [layer for layer in batchnorm_layers(model) if layer.scale]
    else:
        chosen = select_batchnorms(model, layers)
    copy = copy_model(model)
    mapping = corresponding_layers(model, copy)
    for layer in chosen:
        clone = mapping[id(layer)]
        clone.gamma_regularizer = None
        clone.gamma.regularizer = None
    return copy
