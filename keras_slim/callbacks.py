"""Callbacks, in the shape of `keras.callbacks`."""

from keras_slim.protocols.magnitude import MagnitudeMask
from keras_slim.sparsity.ista_callback import ISTAGamma

__all__ = ["ISTAGamma", "MagnitudeMask"]
