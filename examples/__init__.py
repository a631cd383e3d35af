"""Worked examples of keras_slim (not part of the installed library)."""
