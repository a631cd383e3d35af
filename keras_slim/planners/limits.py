"""The constraints every planner shares: `ratio`, `min_channels`,
`round_to` and `max_ratio`, checked and applied to one group's width."""

import math

import numpy as np

__all__ = [
    "check_constraints",
    "check_ratio",
    "constrain_width",
]


# -- checking arguments -----------------------------------------------------


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not (
        isinstance(value, bool)
    )


def check_ratio(ratio, argument="ratio"):
    """A float in [0, 1), or a ValueError naming `argument`."""
    if not _is_number(ratio) or not 0 <= float(ratio) < 1:
        raise ValueError(
            f"Expected `{argument}` in [0, 1). Received: {argument}={ratio!r}"
        )
    return float(ratio)


def check_constraints(min_channels=1, round_to=1, max_ratio=None):
    """Validate the shared constraints; returns them as a tuple."""
    for name, value in (("min_channels", min_channels), ("round_to", round_to)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) \
                or value < 1:
            raise ValueError(
                f"Expected `{name}` to be an integer >= 1. "
                f"Received: {name}={value!r}"
            )
    if max_ratio is not None and (
        not _is_number(max_ratio) or not 0 < float(max_ratio) <= 1
    ):
        raise ValueError(
            "Expected `max_ratio` in (0, 1] or None. "
            f"Received: max_ratio={max_ratio!r}"
        )
    return int(min_channels), int(round_to), (
        None if max_ratio is None else float(max_ratio)
    )


def _check_against_max_ratio(ratio, max_ratio, where=""):
    if max_ratio is not None and ratio > max_ratio:
        raise ValueError(
            f"Conflicting constraints: `ratio`={ratio}{where} is above "
            f"`max_ratio`={max_ratio}, so it can never be reached. Lower "
            "`ratio` or raise `max_ratio`."
        )


# -- the shared constraints -------------------------------------------------


def constrain_width(width, keep, min_channels=1, round_to=1, max_ratio=None):
    """The kept width of a group once the shared constraints are applied.

    Args:
        width: the group's full width.
        keep: the width a method proposes (clamped to [0, `width`]).
        min_channels: keep at least this many channels (or all of them when
            the group is narrower).
        round_to: a kept width is the multiple of `round_to` nearest to
            `keep` (halves rounding up), at least `round_to`, or the full
            width when that is nearer: a group narrower than `round_to`, or
            one whose nearest multiple would exceed its width, stays whole.
        max_ratio: at most this share of the group's channels goes.

    Returns:
        An int in [1, `width`].
    """
    keep = int(min(max(keep, 0), width))
    if keep >= width:
        return width
    lower = min(width, min_channels)
    if max_ratio is not None:
        lower = max(lower, width - math.floor(max_ratio * width + 1e-9))
    keep = max(keep, lower)
    if round_to > 1 and keep < width:
        multiple = math.floor(keep / round_to + 0.5) * round_to
        multiple = max(multiple, round_to)
        if multiple < lower:
            multiple = math.ceil(lower / round_to) * round_to
        if multiple > width or width - keep < abs(multiple - keep):
            return width
        keep = multiple
    return int(keep)


def _prune_count(ratio, width):
    """Channels a per-layer `ratio` removes: the nearest integer."""
    return int(math.floor(ratio * width + 0.5))


# -- reading the model ------------------------------------------------------
