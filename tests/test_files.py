"""keras_slim.core.files: a file appears complete or not at all."""

import os

import pytest

from keras_slim.core import files


def test_write_text_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text("old")
    files.write_text(path, "new")
    assert path.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["plan.json"]


def test_a_failed_write_keeps_the_earlier_file(tmp_path):
    path = tmp_path / "slim.keras"
    path.write_bytes(b"earlier model")
    with pytest.raises(RuntimeError, match="killed"):
        with files.atomic_path(path) as temporary:
            assert temporary.endswith(".keras")
            assert os.path.dirname(temporary) == str(tmp_path)
            with open(temporary, "wb") as handle:
                handle.write(b"half a mod")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"earlier model"
    assert sorted(os.listdir(tmp_path)) == ["slim.keras"]


def test_a_folder_replaces_a_folder_whole(tmp_path):
    path = tmp_path / "saved"
    (path / "variables").mkdir(parents=True)
    (path / "variables" / "old.index").write_text("old")
    with files.atomic_path(path) as temporary:
        os.makedirs(os.path.join(temporary, "variables"))
        with open(os.path.join(temporary, "variables", "new.index"), "w") as f:
            f.write("new")
    assert os.listdir(path / "variables") == ["new.index"]
    assert sorted(os.listdir(tmp_path)) == ["saved"]


def test_nothing_written_is_an_error_and_keeps_the_file(tmp_path):
    path = tmp_path / "report.html"
    path.write_text("kept")
    with pytest.raises(FileNotFoundError, match="Nothing was written"):
        with files.atomic_path(path):
            pass
    assert path.read_text() == "kept"
