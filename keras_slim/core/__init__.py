"""The core: channel graph, layouts, the rule registry and built-in rules,
constants, plans, surgery and counting. Imports only keras and numpy, and
nothing of keras_slim outside `keras_slim.core`."""

__all__ = []
