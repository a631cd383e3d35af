"""Module `__getattr__` for namespaces that were once flat modules.

`keras_slim.regularizers` and `keras_slim.rules` are public namespaces now;
until the next release they still answer the other names of the module they
replaced, with a `DeprecationWarning`.
"""

import importlib
import warnings

__all__ = ["forward"]


def forward(namespace, target):
    """A module `__getattr__` that fetches unknown names from `target`."""

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        module = importlib.import_module(target)
        try:
            value = getattr(module, name)
        except AttributeError:
            raise AttributeError(
                f"module {namespace!r} has no attribute {name!r}") from None
        warnings.warn(
            f"`{namespace}.{name}` is deprecated and will be removed in the "
            f"next release; use `{target}.{name}` instead.",
            DeprecationWarning, stacklevel=2)
        return value

    return __getattr__
