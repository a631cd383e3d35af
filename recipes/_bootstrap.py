"""Import the recipes from the repository root when one runs as a file.

`python recipes/<name>.py` puts `recipes/` itself first on `sys.path`: the
recipe's `from recipes import ...` would fail unless the repository is
installed, and the recipes' own modules (`models`, `inputs`, ...) would
shadow installed packages of those names. A recipe run as a file imports
this module first (`if not __package__: import _bootstrap`), which puts
the repository root in that place. `python -m recipes.<name>` does not
need it and does not import it.
"""

import os
import sys

_RECIPES = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_RECIPES)] + [
    p for p in sys.path if os.path.abspath(p or os.curdir) != _RECIPES]

import recipes  # noqa: E402, F401  (starts TensorFlow quietly; see there)
