"""Comparing a model's outputs with a reference: the relative error, and
the tolerances by compute dtype. `verify` (`verification.py`) and the
agreement check of a traced block (`blocks.py`) both measure with them.
Imports only NumPy.
"""

import numpy as np

__all__ = ["DEFAULT_TOLERANCE", "TOLERANCES", "relative_error"]

# The default tolerance by the loosest compute dtype of the model's layers:
# about ten units in the last place for the half-precision dtypes
# (2**-10 and 2**-7), whose deep sums of differently ordered products drift
# by several of them; float32 and float64 keep 1e-4.
TOLERANCES = {"float16": 1e-2, "bfloat16": 8e-2}
DEFAULT_TOLERANCE = 1e-4


def relative_error(expected, actual):
    """`max |expected - actual| / max |expected|`, infinities understood.

    The same infinity on both sides, or NaN on both sides, is no error; a
    NaN or an infinity on one side only is an infinite error. The scale is
    the largest finite magnitude of `expected` (at least 1e-3).
    """
    expected = np.asarray(expected, np.float64)
    actual = np.asarray(actual, np.float64)
    same = (expected == actual) | (np.isnan(expected) & np.isnan(actual))
    with np.errstate(invalid="ignore"):
        difference = np.where(same, 0.0, np.abs(expected - actual))
    difference = np.where(np.isnan(difference), np.inf, difference)
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(float(np.max(finite, initial=0.0)), 1e-3)
    return float(np.max(difference, initial=0.0)) / scale
