"""A bad flag value, shown as one line instead of a traceback."""

import logging as pylogging
import sys

from absl import logging

__all__ = ["UsageError", "run_main"]


class UsageError(ValueError):
    """A flag value the run cannot use; the command line shows it as one
    line (`run_main`)."""


def run_main(run_function, flags_obj):
    """`run_function(flags_obj)`, a `UsageError` shown as one line (exit 1)
    instead of a traceback.

    The libraries' INFO logs (TensorFlow's checkpoint and SavedModel
    writers: "Sharding callback duration", "Assets written to", ...; JAX's
    platform probing) are hidden unless absl's `--verbosity` is given, so
    the run shows its stages, progress and results; warnings still show.
    """
    if "verbosity" not in flags_obj or not flags_obj["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
        pylogging.getLogger("tensorflow").setLevel(pylogging.WARNING)
    try:
        return run_function(flags_obj)
    except UsageError as error:
        sys.exit(f"error: {error}")
