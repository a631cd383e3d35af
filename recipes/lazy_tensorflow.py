"""`tf`, imported when first used, so the recipes import without TensorFlow.

Under the JAX or PyTorch backend the recipes train with
`keras.distribution` (`recipes/data_parallel.py`) and never touch `tf` for
synthetic data; `from recipes.lazy_tensorflow import tf` lets the shared
modules keep writing `tf.` in their TensorFlow functions.
"""

import importlib


class _LazyModule:
    def __init__(self, name):
        self._name = name
        self._module = None

    def __getattr__(self, attribute):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)


tf = _LazyModule("tensorflow")
