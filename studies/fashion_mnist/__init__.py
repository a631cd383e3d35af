"""The Fashion-MNIST study: the seed papers' claims, with seeds, intervals
and a width sweep (`python -m studies.fashion_mnist.study`; results in
`studies/fashion_mnist/results.md`).

Importing the package starts Keras through keras_slim with TensorFlow's
start-up lines held to `TF_CPP_MIN_LOG_LEVEL` (3 here unless set).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_slim  # noqa: E402, F401
