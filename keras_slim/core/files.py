"""Files that appear complete or not at all.

Every file or folder keras_slim writes (models, plans, exports, reports,
records) is written under a temporary name in the destination's own folder
and moved onto the final name only once it is complete. A process killed
mid-write leaves the earlier file, if there was one, intact, and no partial
file under the final name; the temporary name starts with a dot and ends
with the destination's suffix, so that writers that insist on a suffix
(``model.save`` wants ``.keras``) accept it.

Standard library only: every layer of keras_slim, the recipes and the
studies use these.
"""

import contextlib
import os
import shutil
import tempfile

__all__ = ["atomic_path", "write_text", "write_bytes"]


def _temporary_name(path):
    folder, name = os.path.split(os.path.abspath(path))
    stem, suffix = os.path.splitext(name)
    if name.endswith(".tar.gz"):
        stem, suffix = name[: -len(".tar.gz")], ".tar.gz"
    handle, temporary = tempfile.mkstemp(
        prefix=f".{stem}.", suffix=f".partial{suffix}", dir=folder or ".")
    os.close(handle)
    os.unlink(temporary)
    return temporary


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def _move_into_place(temporary, path):
    """Move ``temporary`` onto ``path``; a folder replaces a folder whole."""
    if not os.path.isdir(temporary) or not os.path.isdir(path):
        os.replace(temporary, path)
        return
    # rename() cannot replace a non-empty folder: move the old one aside
    # first. In between no folder has the final name, but no partial one
    # ever does.
    old = _temporary_name(path)
    os.replace(path, old)
    try:
        os.replace(temporary, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; move it there on success.

    Write the file (or folder) to the yielded path. When the block ends
    without an exception the result replaces ``path`` in one rename (its
    data flushed to disk first); when it raises, the temporary is removed
    and ``path`` is untouched::

        with atomic_path("slim.keras") as temporary:
            model.save(temporary)
    """
    path = os.fspath(path)
    temporary = _temporary_name(path)
    try:
        yield temporary
        if not os.path.lexists(temporary):
            raise FileNotFoundError(
                f"Nothing was written for {path!r} (expected it at "
                f"{temporary!r}).")
        _sync(temporary)
        _move_into_place(temporary, path)
        _sync_folder(os.path.dirname(os.path.abspath(path)))
    finally:
        _remove(temporary)


def write_bytes(path, data):
    """Write ``data`` to ``path`` atomically (see ``atomic_path``)."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)


def write_text(path, text, encoding="utf-8"):
    """Write ``text`` to ``path`` atomically (see ``atomic_path``)."""
    write_bytes(path, text.encode(encoding))


def _sync(path):
    if os.path.isdir(path):
        for folder, _, names in os.walk(path):
            for name in names:
                _sync_file(os.path.join(folder, name))
    else:
        _sync_file(path)


def _sync_file(path):
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _sync_folder(folder):
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform opens folders
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
