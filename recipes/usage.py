"""A bad flag value, shown as one line instead of a traceback."""

import sys

__all__ = ["UsageError", "run_main"]


class UsageError(ValueError):
    """A flag value the run cannot use; the command line shows it as one
    line (`run_main`)."""


def run_main(run_function, flags_obj):
    """`run_function(flags_obj)`, a `UsageError` shown as one line (exit 1)
    instead of a traceback."""
    try:
        return run_function(flags_obj)
    except UsageError as error:
        sys.exit(f"error: {error}")
