"""Imported first by every benchmark (`python benchmarks/<name>.py`).

Puts the repository root first on `sys.path`, so that `recipes` and
`examples` are this checkout's (a package in site-packages may take the
name `examples`), and starts Keras through keras_slim, whose import holds
TensorFlow's start-up lines to `TF_CPP_MIN_LOG_LEVEL` (3 here unless set).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_slim  # noqa: E402, F401
