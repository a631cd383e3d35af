"""Deprecated alias of `keras_slim.tools.pruning` (kept for one release)."""

from keras_slim._deprecated import alias as _alias

_alias(__name__, "keras_slim.tools.pruning")
