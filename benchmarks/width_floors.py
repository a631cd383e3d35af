"""The floors on a group's width that `latency.py` and `peer.py` add."""


def add_floor_arguments(parser):
    """`--max-ratio` and `--min-channels`, each a list."""
    parser.add_argument("--max-ratio", type=float, nargs="+", default=[],
                        help="also each global plan with at most this share "
                             "of any group cut (`max_ratio`)")
    parser.add_argument("--min-channels", type=int, nargs="+", default=[],
                        help="also each global plan with at least this many "
                             "channels kept in every group (`min_channels`)")


def width_floors(args):
    """`[(label suffix, planner kwargs)]`: no floor first, then each asked
    for ("max,cap0.6" from `max_ratio=0.6`, "max,min32" from
    `min_channels=32`)."""
    return [("", {})] + [
        (f",cap{r:g}", {"max_ratio": r}) for r in args.max_ratio] + [
        (f",min{m}", {"min_channels": m}) for m in args.min_channels]
