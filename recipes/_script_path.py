"""Lets `python recipes/<name>.py` import `recipes` and `keras_slim`.

Run as a file, a recipe has its own folder, `recipes/`, first on `sys.path`
(so `import recipes` fails, and `common`, `inputs`, ... would be importable
as top-level modules). Importing this module, which each recipe does first
when it has no package (`if not __package__`), replaces that entry with the
repository root. `python -m recipes.<name>` does not need it.
"""

import os
import sys

_RECIPES = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_RECIPES)

sys.path[:] = [p for p in sys.path
               if os.path.abspath(p or os.curdir) != _RECIPES]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
