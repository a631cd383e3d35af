"""The core: channel graph, layouts, the rule registry and built-in rules,
constants, plans, surgery and counting. Imports only keras and numpy, and
nothing of keras_slim outside `keras_slim.core`.

The built-in rules register themselves here, so the registry
(`keras_slim.core.rule_registry`) is full whichever core module is imported first.
"""

from keras_slim.core import rules  # noqa: F401  (registers the built-in rules)

__all__ = []
