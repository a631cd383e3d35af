"""Scripts reproducing the seed papers' runs (see docs/recipes.md).

Importing the package starts Keras through keras_slim, whose import holds
TensorFlow's start-up lines to `TF_CPP_MIN_LOG_LEVEL` (3 here unless set):
a recipe's own `import keras` would otherwise start TensorFlow first and
print them. `python -m recipes.<name>` imports the package before the
recipe; `python recipes/<name>.py` imports it from `_bootstrap`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_slim  # noqa: E402, F401
