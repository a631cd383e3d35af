"""Loading saved models safely: no Lambda code runs unless asked."""

import json
import os
import zipfile

__all__ = ["load_model"]


def _model_config_text(path):
    """The model's JSON config, read without deserializing anything."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise ValueError(
                    f"{path} is a zip file but not a Keras model (no "
                    "config.json inside)."
                )
            return archive.read("config.json").decode("utf-8", "replace")
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py comes with Keras
        return ""
    try:
        with h5py.File(path, "r") as file:
            config = file.attrs.get("model_config")
    except OSError:
        raise ValueError(
            f"{path} is not a Keras model file (neither a .keras archive "
            "nor HDF5)."
        ) from None
    if config is None:
        raise ValueError(f"{path} is an HDF5 file without a Keras model.")
    return config.decode() if isinstance(config, bytes) else str(config)


def _lambda_layers(config_text):
    try:
        config = json.loads(config_text)
    except json.JSONDecodeError:
        return []
    names = []

    def visit(node):
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                names.append((node.get("config") or {}).get("name", "?"))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(config)
    return names


def load_model(path, unsafe=False):
    """Load a `.keras` (or legacy `.h5`) model without running its code.

    The model's config is read first, without deserializing anything; a
    `Lambda` layer (whose Python code would run while the model is rebuilt)
    is refused unless `unsafe` is True. Keras then loads it with
    `safe_mode=not unsafe` and `compile=False`. keras_slim's serializable
    objects (GammaL1, GammaProx) are registered first.

    Args:
        path: the `.keras` (or `.h5`) file.
        unsafe: allow Lambda layers (runs their code).

    Returns:
        The uncompiled `keras.Model`.

    Raises:
        ValueError: a missing file, a wrong format, a Lambda layer without
            `unsafe`, or a model Keras cannot rebuild (one-line messages).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"No such file: {path}")
    if os.path.isdir(path):
        raise ValueError(
            f"{path} is a directory; expected a .keras model file."
        )
    if not path.lower().endswith((".keras", ".h5", ".hdf5")):
        raise ValueError(
            f"Expected a Keras model file ending with .keras (or .h5). "
            f"Received: {path}"
        )
    lambdas = _lambda_layers(_model_config_text(path))
    if lambdas and not unsafe:
        raise ValueError(
            f"{path} holds Lambda layer(s) {', '.join(lambdas[:3])}, whose "
            "Python code would run on loading; refused. Pass --unsafe "
            "(unsafe=True) only if you trust the file."
        )
    import keras

    # Make keras_slim's serializable objects (GammaL1, GammaProx) known.
    import keras_slim.sparsity.ista  # noqa: F401
    import keras_slim.sparsity.regularizers  # noqa: F401

    try:
        return keras.saving.load_model(path, compile=False,
                                       safe_mode=not unsafe)
    except Exception as error:
        raise ValueError(f"Cannot load {path}: {_cause(error)}") from None


_CAUSE = "Exception encountered:"


def _cause(error):
    """The reason in a Keras loading error: Keras wraps the innermost error
    ("Could not locate class 'Custom'") in pages about the outer model's
    config; keep that reason, without the configs."""
    text = " ".join(str(error).split()) or type(error).__name__
    if _CAUSE in text:
        text = text.rsplit(_CAUSE, 1)[1].strip()
    for cut in (" Full object config:", " config={"):
        text = text.split(cut, 1)[0]
    if "Could not locate" in text or "register_keras_serializable" in text:
        text += (" Import the module that defines it first (keras-slim: "
                 "--import MODULE).")
    return text
