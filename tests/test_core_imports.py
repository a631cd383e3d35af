"""The core imports only keras and numpy (no TensorFlow), so it can run on
any Keras backend."""

import ast
import pathlib
import sys

import keras_slim

# Every module of keras_slim/core/, and the criteria that score channels.
ROOT = pathlib.Path(keras_slim.__file__).parent
CORE = sorted(ROOT.glob("core/**/*.py")) + [ROOT / "planners" / "criteria.py"]
ALLOWED = {"keras", "numpy", "keras_slim"} | set(sys.stdlib_module_names)


def test_core_is_found():
    names = {path.stem for path in CORE}
    assert {"graph", "layout", "rule_registry", "propagation", "plan", "surgery",
            "counting", "folding", "verification", "criteria"} <= names


def test_core_modules_import_only_keras_and_numpy():
    for path in CORE:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    continue  # relative: inside the package
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in ALLOWED, (path.name, module)
