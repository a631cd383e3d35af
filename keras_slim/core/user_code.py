"""The user's own objects that a slim model keeps: a `Lambda`'s function,
and what a model subclass' `__init__` created besides its graph.

A `Lambda`'s function is code: serialising it and loading it back loses the
module it was written in (`ops`, `np`, a named function not registered with
Keras), so the clone takes the function object itself, as the original
does. A metric, loss or optimizer that `__init__` created (Keras' guide to
a custom `train_step` keeps `self.loss_tracker`) is recreated from its
config with fresh state: the slim model has other variables and trains on
its own. What cannot be recreated is refused by the caller
(`rebuilding.py`), naming the attribute. And a user's layer that keras_slim
calls (to read its constants or to verify) is left as it was found.
"""

import contextlib

import keras

__all__ = ["built_as_before", "clone_lambda", "keep_code", "recreate",
           "RECREATED", "Unshareable"]

# Objects an `__init__` creates for training: recreated from their config.
RECREATED = (
    keras.metrics.Metric,
    keras.losses.Loss,
    keras.optimizers.Optimizer,
)

# The arguments of `keras.layers.Lambda.__init__` that hold user code.
_CODE = ("function", "output_shape", "mask", "arguments")


class Unshareable(Exception):
    """What an attribute holds cannot be carried to the slim model."""


def clone_lambda(layer, config):
    """A new `Lambda` (or subclass) with `config` and `layer`'s own
    function, output shape, mask and arguments objects.

    Returns None when the class does not take `Lambda`'s arguments (a
    subclass with an `__init__` of its own).
    """
    base = {k: v for k, v in config.items() if k not in _CODE}
    try:
        return type(layer)(
            layer.function,
            output_shape=layer._output_shape,
            mask=layer.mask,
            arguments=dict(layer.arguments),
            **base,
        )
    except TypeError:
        return None


def keep_code(layer, new):
    """Point a `Lambda` clone built from its config at the original's code
    objects (its config carried them as serialised code)."""
    new.function = layer.function
    new._output_shape = layer._output_shape
    new.mask = layer.mask


def recreate(value):
    """A fresh metric, loss or optimizer of `value`'s class and config.

    Raises:
        Unshareable: its class cannot be built back from its config.
    """
    kind = _kind(value)
    try:
        return type(value).from_config(value.get_config())
    except Exception as error:
        raise Unshareable(
            f"{kind} `{_name(value)}` ({type(value).__name__}), which cannot "
            f"be recreated from its get_config() ({error}); give it a "
            "get_config() that from_config() accepts"
        ) from None


def _kind(value):
    for cls, kind in ((keras.metrics.Metric, "metric"),
                      (keras.losses.Loss, "loss"),
                      (keras.optimizers.Optimizer, "optimizer")):
        if isinstance(value, cls):
            return kind
    return "object"


def _name(value):
    return getattr(value, "name", type(value).__name__)


@contextlib.contextmanager
def built_as_before(layer):
    """Call a user's layer without leaving it built: a weightless layer
    that was never built (a sublayer of a block read through) is marked
    unbuilt again."""
    unbuilt = (isinstance(layer, keras.layers.Layer) and not layer.built
               and not layer.weights)
    try:
        yield
    finally:
        if unbuilt and not layer.weights:
            layer.built = False
