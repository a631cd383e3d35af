"""scikit-learn's bundled digits as 8 x 8 x 1 images (no download)."""

import numpy as np


def load_digits(test_size=0.25, seed=0):
    """The 1,797 handwritten digits of scikit-learn, split for training.

    Images are float32 in [0, 1], shaped (n, 8, 8, 1); labels are int32 in
    0..9. The split is stratified, so both parts hold every digit in the
    same proportions.

    Args:
        test_size: share of the images held out for testing, in (0, 1).
        seed: seed of the split.

    Returns:
        `((x_train, y_train), (x_test, y_test))`.

    Raises:
        ValueError: `test_size` outside (0, 1).
        ImportError: scikit-learn is not installed.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = examples.digits.load_digits()
    >>> x_train.shape
    (1347, 8, 8, 1)
    """
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) \
            or not 0 < test_size < 1:
        raise ValueError(
            f"Expected `test_size` in (0, 1). Received: test_size={test_size!r}"
        )
    try:
        from sklearn import datasets, model_selection
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "The digits data set comes with scikit-learn: "
            "pip install scikit-learn"
        ) from None
    digits = datasets.load_digits()
    images = (digits.images / 16.0).astype("float32")[..., np.newaxis]
    labels = digits.target.astype("int32")
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        images, labels, test_size=test_size, random_state=seed,
        stratify=labels,
    )
    return (x_train, y_train), (x_test, y_test)
