"""Fashion-MNIST from its four IDX files, read with NumPy alone.

The files are the ones `keras.datasets.fashion_mnist` downloads
(`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
`t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`). Nothing is ever
downloaded: they are looked for, in this order, in `data_dir`, in Debian's
`dataset-fashion-mnist` package (`/usr/share/datasets/fashion-mnist/`) and in
the Keras cache (`~/.keras/datasets/fashion-mnist/`). Each file may be
gzipped or not.

IDX: a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the raw data. Both
Fashion-MNIST kinds hold unsigned bytes (type code 0x08).
"""

import gzip
import os

import numpy as np

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
KERAS_CACHE_DIR = os.path.join("~", ".keras", "datasets", "fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
INSTALL_HINT = ("apt-get install dataset-fashion-mnist (Debian), or put the "
                "four Fashion-MNIST IDX files in --data_dir")


def read_idx(path):
    """The array stored in one IDX file (gzipped or not).

    Args:
        path: the file.

    Returns:
        A uint8 `np.ndarray` of the shape the header names.

    Raises:
        ValueError: the file is not an unsigned-byte IDX file, or its size
            does not match its header.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file "
                         f"(header {data[:4].hex()}).")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    size = int(np.prod(shape))
    if len(data) - header != size:
        raise ValueError(f"{path}: the header says {shape} ({size} bytes), "
                         f"the file holds {len(data) - header}.")
    return np.frombuffer(data, np.uint8, size, header).reshape(shape)


def _find(name, folders):
    for folder in folders:
        for candidate in (name + ".gz", name):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                return path
    return None


def find_folder(data_dir=None):
    """The first folder that holds all four files, or `None`."""
    folders = [os.path.expanduser(KERAS_CACHE_DIR)]
    folders.insert(0, DEBIAN_DIR)
    if data_dir:
        folders.insert(0, os.path.expanduser(data_dir))
    for folder in folders:
        names = [n for pair in FILES.values() for n in pair]
        if all(_find(n, [folder]) for n in names):
            return folder
    return None


def data_files(data_dir=None):
    """The paths of the four files `load_fashion_mnist(data_dir)` reads
    (for their checksums); `None` when no folder holds them."""
    folder = find_folder(data_dir)
    if folder is None:
        return None
    return [_find(n, [folder]) for pair in FILES.values() for n in pair]


def load_fashion_mnist(data_dir=None):
    """Fashion-MNIST's official split as arrays.

    Args:
        data_dir: a folder to look in first (then Debian's folder, then the
            Keras cache).

    Returns:
        `((x_train, y_train), (x_test, y_test))`: uint8 images shaped
        `(n, 28, 28)` and uint8 labels in 0..9; 60,000 and 10,000 of them.

    Raises:
        FileNotFoundError: no folder holds the four files; the message says
            what to install.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    >>> x_train.shape, x_test.shape
    ((60000, 28, 28), (10000, 28, 28))
    """
    folder = find_folder(data_dir)
    if folder is None:
        looked = ", ".join(
            ([data_dir] if data_dir else [])
            + [DEBIAN_DIR, KERAS_CACHE_DIR])
        raise FileNotFoundError(
            f"Fashion-MNIST not found (looked in {looked}): {INSTALL_HINT}.")
    out = []
    for split in ("train", "test"):
        images, labels = (read_idx(_find(n, [folder])) for n in FILES[split])
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"Fashion-MNIST {split} split in {folder}: "
                             f"{images.shape[0]} images but "
                             f"{labels.shape[0]} labels.")
        out.append((images, labels))
    return tuple(out)
