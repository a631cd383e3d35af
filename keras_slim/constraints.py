"""Constraints, in the shape of `keras.constraints`."""

from keras_slim.sparsity.ista import GammaProx

__all__ = ["GammaProx"]
