"""Run `keras-slim ARGS...` and SIGKILL it in the middle of its first write.

Used by test_atomic_writes.py. Where `keras_slim.core.files` is about to
flush a written temporary file before renaming it, this process cuts the
temporary to half its length (a write interrupted halfway) and kills itself
with SIGKILL: no Python clean-up runs, as when the machine or a user kills
the command. A command that writes without `keras_slim.core.files` is never
killed and exits normally, which the test catches.

    python tests/kill_in_write.py prune MODEL.keras ... -o OUT.keras
"""

import os
import signal
import sys


def _kill_halfway(path):
    for folder, _, names in (os.walk(path) if os.path.isdir(path)
                             else [("", None, [path])]):
        for name in names:
            name = os.path.join(folder, name)
            os.truncate(name, os.path.getsize(name) // 2)
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv):
    from keras_slim.core import files
    from keras_slim.tools import cli

    files._sync = _kill_halfway
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
