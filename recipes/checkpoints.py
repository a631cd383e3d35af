"""A stage's epoch checkpoints: the last two kept, the newest readable one
restored.

`tf.train.CheckpointManager` writes `ckpt-N.index` and `ckpt-N.data-*`
after every epoch, then names them in its state file (`checkpoint`,
written whole, by rename). A process killed while writing leaves a
checkpoint that is incomplete, or one the state file does not name yet;
a disk can lose any file later. So the checkpoints are found by their
files as well as by the state file, tried newest first, and one that
cannot be read (a missing index, a truncated or corrupt file: TensorFlow
checks every tensor's checksum) is passed over with a log line for the one
before it. When none can be read the run stops with one line naming the
file, never restarting the stage silently from epoch 1.
"""

import os
import re

from recipes.lazy_tensorflow import tf
from recipes.usage import UsageError

KEEP = 2  # checkpoints kept per stage: the newest and one to fall back on
_NAME = re.compile(r"^ckpt-(\d+)\.(index|data-\d+-of-\d+)$")


class CheckpointError(UsageError):
    """No checkpoint of a stage can be read; the message names the file."""


def _state(directory, log):
    """Prefixes the state file names, or `None` when it is unreadable."""
    try:
        state = tf.train.get_checkpoint_state(directory)
    except Exception as error:  # a torn or edited text proto
        log(f"  checkpoint state {os.path.join(directory, 'checkpoint')} is "
            f"unreadable ({_first_line(error)}); using the checkpoint files")
        return None
    if state is None:
        return []
    return [path if os.path.isabs(path) else os.path.join(directory, path)
            for path in state.all_model_checkpoint_paths]


def candidates(directory, log=print):
    """Checkpoint prefixes of `directory`, newest (highest number) first:
    those its state file names and those whose files are there."""
    numbers = set()
    for path in tf.io.gfile.glob(os.path.join(directory, "ckpt-*")):
        match = _NAME.match(os.path.basename(path))
        if match:
            numbers.add(int(match.group(1)))
    for path in _state(directory, log) or []:
        match = re.match(r"^ckpt-(\d+)$", os.path.basename(path))
        if match:
            numbers.add(int(match.group(1)))
    return [os.path.join(directory, f"ckpt-{n}")
            for n in sorted(numbers, reverse=True)]


def _number(prefix):
    return int(prefix.rsplit("-", 1)[1])


def _first_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip(": ")


def _problem(prefix):
    """Why `prefix` cannot be restored before trying: a missing file."""
    if not tf.io.gfile.exists(prefix + ".index"):
        return f"{prefix}.index is missing"
    if not tf.io.gfile.glob(prefix + ".data-*"):
        return f"{prefix}.data-* is missing"
    return None


def restore_newest(checkpoint, directory, log=print):
    """Restore the newest readable checkpoint of `directory` into
    `checkpoint` (a `tf.train.Checkpoint`); returns its prefix, or `None`
    when the folder holds none.

    Raises:
        CheckpointError: there are checkpoints but none can be read.
    """
    if not tf.io.gfile.isdir(directory):
        return None
    problems = []
    for prefix in candidates(directory, log):
        problem = _problem(prefix)
        if problem is None:
            try:
                checkpoint.restore(prefix).assert_existing_objects_matched()
            except Exception as error:  # noqa: BLE001 (TensorFlow raises
                # OpError, IndexError, ValueError or AssertionError)
                problem = f"{prefix} is unreadable ({_first_line(error)})"
        if problem is None:
            if problems:
                log(f"  {problems[-1]}: resuming from the checkpoint before "
                    f"it, {prefix}")
            return prefix
        problems.append(problem)
    if problems:
        raise CheckpointError(
            f"Cannot resume from {directory}: {'; '.join(problems)}. Delete "
            f"{directory} to train the stage again from its first epoch.")
    return None


def manager(checkpoint, write_dir, restored, directory):
    """A `tf.train.CheckpointManager` keeping `KEEP` checkpoints in
    `write_dir`.

    When `restored` is not the last checkpoint the chief's state file
    names (it fell back, or the state file is torn or missing), the state
    file is first rewritten (by rename) to name it last, after the
    checkpoints before it: the unreadable checkpoints after it are
    forgotten (the next saves, numbered from `restored`, replace them) and
    the older ones are deleted in turn as usual.
    """
    if restored is not None and write_dir == directory:
        named = _state(directory, lambda _: None)
        if not named or os.path.basename(named[-1]) != os.path.basename(
                restored):
            _name_last(directory, restored)
    return tf.train.CheckpointManager(checkpoint, write_dir, max_to_keep=KEEP)


def _name_last(directory, restored):
    """Rewrite the state file of `directory` to name `restored` last."""
    from tensorflow.python.util import deprecation  # no log line for it

    older = [p for p in candidates(directory, lambda _: None)
             if _number(p) < _number(restored)]
    with deprecation.silence():
        tf.compat.v1.train.update_checkpoint_state(
            directory, restored,
            all_model_checkpoint_paths=older[::-1] + [restored])
