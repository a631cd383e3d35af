"""The core imports only keras and numpy (no TensorFlow), so it can run on
any Keras backend."""

import ast
import pathlib
import sys

import keras_slim

CORE = ["graph", "layout", "slicers", "rules", "constants", "plan", "criteria",
        "surgery", "counting", "folding", "verification"]
ALLOWED = {"keras", "numpy", "keras_slim"} | set(sys.stdlib_module_names)


def test_core_modules_import_only_keras_and_numpy():
    root = pathlib.Path(keras_slim.__file__).parent
    for name in CORE:
        tree = ast.parse((root / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in ALLOWED, (name, module)
