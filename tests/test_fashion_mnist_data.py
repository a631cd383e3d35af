"""The Fashion-MNIST IDX reader and loader, on files written here."""

import gzip
import os

import numpy as np
import pytest

from studies.fashion_mnist import data


def write_idx(path, array):
    """An unsigned-byte IDX file (gzipped when `path` ends with .gz)."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_split(folder, n_train=6, n_test=4, gz=True):
    rng = np.random.default_rng(0)
    arrays = {
        "train": (rng.integers(0, 256, (n_train, 28, 28)),
                  rng.integers(0, 10, n_train)),
        "test": (rng.integers(0, 256, (n_test, 28, 28)),
                 rng.integers(0, 10, n_test)),
    }
    suffix = ".gz" if gz else ""
    for split, names in data.FILES.items():
        for name, array in zip(names, arrays[split]):
            write_idx(os.path.join(folder, name + suffix), array)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    array = np.random.default_rng(1).integers(0, 256, (3, 5, 7)).astype(np.uint8)
    path = str(tmp_path / ("a.idx" + (".gz" if gz else "")))
    write_idx(path, array)
    read = data.read_idx(path)
    assert read.dtype == np.uint8 and read.shape == (3, 5, 7)
    np.testing.assert_array_equal(read, array)


def test_header_size_mismatch_is_an_error(tmp_path):
    path = str(tmp_path / "short.idx")
    write_idx(path, np.zeros((4, 3), np.uint8))
    with open(path, "ab") as f:
        f.write(b"\x00")  # one byte more than the header says
    with pytest.raises(ValueError, match=r"header says \(4, 3\) \(12 bytes\), "
                                         r"the file holds 13"):
        data.read_idx(path)


def test_not_an_unsigned_byte_idx_file(tmp_path):
    path = str(tmp_path / "float.idx")
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 0x0D, 1]) + (1).to_bytes(4, "big") + b"\0" * 4)
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        data.read_idx(path)


@pytest.mark.parametrize("gz", [True, False])
def test_load_from_data_dir(tmp_path, gz):
    arrays = write_split(str(tmp_path), gz=gz)
    (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist(str(tmp_path))
    assert x_train.shape == (6, 28, 28) and x_test.shape == (4, 28, 28)
    np.testing.assert_array_equal(x_train, arrays["train"][0])
    np.testing.assert_array_equal(y_train, arrays["train"][1])
    np.testing.assert_array_equal(x_test, arrays["test"][0])
    np.testing.assert_array_equal(y_test, arrays["test"][1])


def test_image_label_count_mismatch(tmp_path):
    write_split(str(tmp_path))
    write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="test split .* 4 images but 3 labels"):
        data.load_fashion_mnist(str(tmp_path))


def test_not_found_says_what_to_install(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(data, "DEBIAN_DIR", str(tmp_path / "no-debian"))
    monkeypatch.setattr(data, "KERAS_CACHE_DIR", str(tmp_path / "no-cache"))
    with pytest.raises(FileNotFoundError) as error:
        data.load_fashion_mnist(str(empty))
    message = str(error.value)
    assert "\n" not in message
    assert str(empty) in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_incomplete_folder_is_skipped(tmp_path, monkeypatch):
    # A data_dir missing one file does not hide a complete folder after it.
    partial, full = tmp_path / "partial", tmp_path / "full"
    partial.mkdir()
    full.mkdir()
    write_split(str(full))
    write_idx(str(partial / "train-images-idx3-ubyte.gz"),
              np.zeros((1, 28, 28), np.uint8))
    monkeypatch.setattr(data, "DEBIAN_DIR", str(full))
    monkeypatch.setattr(data, "KERAS_CACHE_DIR", str(tmp_path / "no-cache"))
    assert data.find_folder(str(partial)) == str(full)
