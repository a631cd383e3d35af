"""Regularizers, in the shape of `keras.regularizers`."""

from keras_slim.sparsity.regularizers import (
    GammaL1,
    add_gamma_regularizer,
    remove_gamma_regularizer,
)

__all__ = ["GammaL1", "add_gamma_regularizer", "remove_gamma_regularizer"]
