"""`keras-slim`'s arguments, checked before any work: nothing is loaded,
timed or written until every path and value is known to be usable.

Paths: every file a command reads or writes is compared with the others by
`os.path.realpath` and `os.path.samefile`, so that an output given as a
symbolic or hard link to the input (or to another output) is refused
instead of replacing it. Values: ratios, budgets, counts and the options a
method takes. Every failure is a `CommandError` naming the argument.
"""

import math
import os

from keras_slim.planners import methods

__all__ = [
    "CommandError",
    "budget_values",
    "check_paths",
    "output_path",
    "planner_kwargs",
    "report_images",
    "score_options",
]


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def _same_file(a, b):
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links; case-blind file systems
    except OSError:  # one of them does not exist yet
        return False


def _inside(path, folder):
    folder = os.path.realpath(folder)
    return os.path.realpath(path).startswith(folder.rstrip(os.sep) + os.sep)


def check_paths(reads, writes, folders=()):
    """Refuse two arguments that name one file, where one of them is written.

    Args:
        reads: `(flag, path)` pairs the command only reads.
        writes: `(flag, path)` pairs it writes (or reads and writes); a
            `None` path is skipped.
        folders: flags of `writes` that are folders replaced whole (a
            SavedModel): no other path may lie inside them.
    """
    reads = [(f, os.fspath(p)) for f, p in reads if p is not None]
    writes = [(f, os.fspath(p)) for f, p in writes if p is not None]
    named = writes + reads
    for index, (flag, path) in enumerate(writes):
        for other_flag, other in named[index + 1:]:
            if _same_file(path, other):
                link = "" if os.path.abspath(path) == os.path.abspath(other) \
                    else f" ({path} and {other} are links to one file)"
                raise CommandError(
                    f"{flag} must differ from {other_flag}: both name "
                    f"{os.path.realpath(path)}{link}; nothing was written.")
            for folder_flag, folder, inner_flag, inner in (
                    (flag, path, other_flag, other),
                    (other_flag, other, flag, path)):
                if folder_flag in folders and _inside(inner, folder):
                    raise CommandError(
                        f"{inner_flag} {inner} lies inside the folder "
                        f"{folder_flag} {folder}, which is replaced whole; "
                        "give another folder.")


def output_path(path, suffixes, flag="-o"):
    """`path`, or a CommandError when it lacks one of `suffixes`."""
    if not path.lower().endswith(suffixes):
        raise CommandError(
            f"Expected {flag} to end with {' or '.join(suffixes)}. "
            f"Received: {path}"
        )
    return path


def make_folder(path):
    """Create the folder `path` is written into."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def report_images(page):
    """The PNGs `report` writes next to `page` (see tools/report.py)."""
    stem = os.path.splitext(page)[0]
    return [f"{stem}_{name}.png" for name in ("gammas", "widths", "costs")]


def _at_least(flag, value, low):
    if value is not None and value < low:
        raise CommandError(f"Expected {flag} >= {low}. Received: {value}")


def planner_kwargs(args):
    """The planner's keyword arguments for --method with --ratio."""
    method = methods.method_for(args.method)
    for flag, value in (("--cost", args.cost),
                        ("--calibrate", args.calibrate)):
        if value is not None:
            raise CommandError(f"{flag} applies to a budget: give "
                               "--target-macs, --target-params or "
                               "--target-latency.")
    if method.takes_ratio:
        if args.ratio is None:
            raise CommandError(f"--method {args.method} needs --ratio.")
        if not 0 <= args.ratio < 1:
            raise CommandError(
                f"Expected --ratio in [0, 1). Received: {args.ratio}"
            )
        kwargs = {"ratio": args.ratio}
        if args.round_to is not None:
            kwargs["round_to"] = args.round_to
    else:
        for flag, value in (("--ratio", args.ratio),
                            ("--round-to", args.round_to)):
            if value is not None:
                raise CommandError(
                    f"{flag} does not apply to --method {args.method}, "
                    f"which takes no ratio: {method.summary}."
                )
        kwargs = {"tol": args.tol} if "tol" in method.options else {}
    if args.round_to is not None:
        _at_least("--round-to", args.round_to, 1)
    _at_least("--min-channels", args.min_channels, 1)
    kwargs["min_channels"] = args.min_channels
    return score_options(args, method, kwargs)


def score_options(args, method, kwargs):
    """`kwargs` with --score, --reduction and --normalize, where the
    method has them."""
    for flag, option in (("--score", "score"), ("--reduction", "reduction"),
                         ("--normalize", "normalize")):
        value = getattr(args, option)
        if value is None:
            continue
        if option not in method.options:
            raise CommandError(
                f"{flag} does not apply to --method {method.name}; it "
                "applies to --method " + ", ".join(
                    name for name in sorted(methods.METHODS)
                    if option in methods.method_for(name).options) + "."
            )
        kwargs[option] = value
    return kwargs


def _count(flag, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise CommandError(
            f"Expected {flag} to be a fraction of the model in (0, 1] or a "
            f"count > 1. Received: {value:g}")


def budget_values(args):
    """Check every --target-*, --method and timing option of a budget
    prune; returns `(method, kwargs, latency)` with `latency` parsed."""
    from keras_slim.planners.budget import parse_latency

    method = args.method or "global_gamma"
    if method not in methods.budget_methods():
        raise CommandError(
            f"--target-* budgets work with --method "
            f"{', '.join(methods.budget_methods())}. Received: --method "
            f"{method}"
        )
    if args.ratio is not None:
        raise CommandError("--ratio and --target-* exclude each other: the "
                           "budget search finds the ratio.")
    _count("--target-macs", args.target_macs)
    _count("--target-params", args.target_params)
    latency = args.target_latency
    if latency is not None:
        try:
            number = float(latency)
        except ValueError:
            number = latency
        try:
            parse_latency(number)
        except ValueError:
            raise CommandError(
                "Expected --target-latency to be a time with its unit (8ms, "
                "800us) or a fraction of the dense model's latency in "
                f"(0, 1]. Received: {latency}") from None
        latency = number
    kwargs = score_options(args, methods.method_for(method),
                           {"min_channels": args.min_channels})
    if args.round_to is not None:
        kwargs["round_to"] = args.round_to
    for flag, value, low in (("--min-channels", args.min_channels, 1),
                             ("--threads", args.threads, 1),
                             ("--runs", args.runs, 1),
                             ("--calibrate", args.calibrate, 4)):
        _at_least(flag, value, low)
    if args.round_to not in (None, "auto"):
        _at_least("--round-to", args.round_to, 1)
    if args.cost is not None and method != "latency_aware":
        raise CommandError(
            "--cost chooses what the latency-aware knapsack saves: use it "
            f"with --method latency_aware, not {method}."
        )
    if args.calibrate is not None and latency is None \
            and args.cost != "latency":
        raise CommandError("--calibrate fits a latency table: use it with "
                           "--target-latency or --cost latency.")
    return method, kwargs, latency
