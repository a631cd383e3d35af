"""What the deploy step shows on the console: a progress line, and the
converters' C++ messages kept off stderr."""

import contextlib
import os
import sys

__all__ = ["ProgressLine", "quiet_native_output"]


@contextlib.contextmanager
def quiet_native_output():
    """Silence what the converter's C++ code writes to stderr."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class ProgressLine:
    """One status line for multi-step work: `[2/3] converting ...`.

    On a terminal each step overwrites the last; otherwise one line a step.

    Args:
        steps: number of steps.
        verbose: whether to print at all.
    """

    def __init__(self, steps, verbose=True):
        self.steps = steps
        self.count = 0
        self.verbose = bool(verbose)
        self.width = 0
        self.tty = sys.stdout.isatty()

    def write(self, text, final=False):
        if not self.verbose:
            return
        if self.tty:
            sys.stdout.write("\r" + text.ljust(self.width))
            self.width = max(self.width, len(text))
            if final:
                sys.stdout.write("\n")
        else:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def update(self, message):
        """A transient status: shown on a terminal only."""
        if self.tty:
            self.write(message)

    def step(self, message):
        self.count += 1
        self.write(f"[{self.count}/{self.steps}] {message} ...")

    def done(self, message):
        self.write(f"[done] {message}", final=True)
