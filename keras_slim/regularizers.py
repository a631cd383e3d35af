"""Regularizers, in the shape of `keras.regularizers`."""

from keras_slim._forward import forward as _forward
from keras_slim.sparsity.regularizers import (
    GammaL1,
    add_gamma_regularizer,
    remove_gamma_regularizer,
)

__all__ = ["GammaL1", "add_gamma_regularizer", "remove_gamma_regularizer"]

# The old flat module's helpers, deprecated.
__getattr__ = _forward(__name__, "keras_slim.sparsity.regularizers")
