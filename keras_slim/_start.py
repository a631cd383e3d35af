"""TensorFlow's start-up lines, held to `TF_CPP_MIN_LOG_LEVEL`.

Importing TensorFlow 2.21 prints, before absl's logging is set up and so
whatever `TF_CPP_MIN_LOG_LEVEL` says, "All log messages before
absl::InitializeLog() is called...", the oneDNN notice and "Could not find
cuda drivers" -- and prints them twice, because two of its native libraries
each hold a copy of that logging (`python -c "import tensorflow"` shows it;
keras_slim starts TensorFlow once). `quiet_start` captures what the import
writes to stderr and writes back every line but those below the level the
user asked for. The `keras-slim` command starts at level 3 unless told
otherwise. Standard library only.
"""

import contextlib
import os
import re
import sys
import tempfile

__all__ = ["quiet_start", "started_as_command"]

# absl's prefix: severity letter, then MMDD: I0000 00:00:... port.cc:153]
_SEVERITY = re.compile(r"^([IWEF])\d{4} ")
_LEVELS = {"I": 0, "W": 1, "E": 2, "F": 3}
_NOTICE = "WARNING: All log messages before absl::InitializeLog()"
# Lines Python writes: warnings ("file.py:12: UserWarning: ...") and tracebacks.
_PYTHON = re.compile(r"^Traceback |\.py:\d+: |^\w*(Error|Warning)\b")


def started_as_command():
    """Whether this process is the `keras-slim` command: its console script,
    or `python -m keras_slim.tools.cli`."""
    if os.path.basename(sys.argv[0] or "") == "keras-slim":
        return True
    argv = list(getattr(sys, "orig_argv", ()))
    return any(flag == "-m" and module == "keras_slim.tools.cli"
               for flag, module in zip(argv, argv[1:]))


def _level():
    default = "3" if started_as_command() else "0"
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", default))
    except ValueError:
        return 0


def _kept_lines(text, level):
    """The lines of `text` at or above `level`: a logged message below it
    goes with its continuation lines (those without absl's prefix, such as
    the second line of the CPU-instructions notice); anything Python wrote
    (a warning, a traceback) stays."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = _SEVERITY.match(line)
        if line.startswith(_NOTICE):
            dropping = level >= 1
        elif match is not None:
            dropping = _LEVELS[match.group(1)] < level
        elif _PYTHON.search(line):
            dropping = False
        if not dropping:
            kept.append(line)
    return kept


@contextlib.contextmanager
def quiet_start():
    """Run the block (an import that may start TensorFlow) with its stderr
    lines below `TF_CPP_MIN_LOG_LEVEL` dropped; other lines are kept, in
    order, once the block ends."""
    level = _level()
    if level <= 0 or "tensorflow" in sys.modules:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = _kept_lines(text, level)
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
