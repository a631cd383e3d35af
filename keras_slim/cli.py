"""Deprecated alias of `keras_slim.tools.cli` (kept for one release)."""

from keras_slim._deprecated import alias as _alias

if __name__ == "__main__":  # `python -m keras_slim.cli`
    import sys

    sys.exit(_alias("keras_slim.cli", "keras_slim.tools.cli").main())
_alias(__name__, "keras_slim.tools.cli")
