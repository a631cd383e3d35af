"""Old flat module paths (`keras_slim.graph`, ...) as aliases for one release.

Each old module is a two-line file that calls `alias`: importing it warns
once and hands back the new module itself, so `keras_slim.graph is
keras_slim.core.graph` and patching either patches the one module.
"""

import importlib
import sys
import warnings

__all__ = ["alias"]


def alias(old, new):
    """Points the old module name `old` at the module `new`, with a warning.

    Args:
        old: the deprecated dotted name (the shim's `__name__`).
        new: the dotted name the module lives at now.

    Returns:
        The module `new`.
    """
    warnings.warn(
        f"`{old}` is deprecated and will be removed in the next release; "
        f"import `{new}` instead.", DeprecationWarning, stacklevel=3)
    module = importlib.import_module(new)
    sys.modules[old] = module
    return module
