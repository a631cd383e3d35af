"""The old flat module paths still import for one release, with a warning.

Each is the new module itself, so old code (and old patches of module
state) keeps working.
"""

import importlib
import sys

import pytest

import keras_slim

MOVED = {
    "allocation": "keras_slim.planners.allocation",
    "budget": "keras_slim.planners.budget",
    "cli": "keras_slim.tools.cli",
    "constants": "keras_slim.core.constants",
    "conversion_process": "keras_slim.deploy.conversion_process",
    "copying": "keras_slim.core.copying",
    "counting": "keras_slim.core.counting",
    "criteria": "keras_slim.planners.criteria",
    "export": "keras_slim.deploy.export",
    "folding": "keras_slim.core.folding",
    "graph": "keras_slim.core.graph",
    "guidance": "keras_slim.planners.guidance",
    "ista": "keras_slim.sparsity.ista",
    "latency_table": "keras_slim.planners.latency_table",
    "layout": "keras_slim.core.layout",
    "loading": "keras_slim.deploy.loading",
    "magnitude": "keras_slim.protocols.magnitude",
    "onnx_export": "keras_slim.deploy.onnx_export",
    "penalties": "keras_slim.sparsity.penalties",
    "plan": "keras_slim.core.plan",
    "pruning": "keras_slim.tools.pruning",
    "report": "keras_slim.tools.report",
    "rescaling": "keras_slim.sparsity.rescaling",
    "runtime": "keras_slim.deploy.runtime",
    "scores": "keras_slim.planners.scores",
    "selection": "keras_slim.planners.selection",
    "slicers": "keras_slim.core.slicers",
    "summary": "keras_slim.tools.summary",
    "surgery": "keras_slim.core.surgery",
    "verification": "keras_slim.core.verification",
    "widths": "keras_slim.core.widths",
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_warns_and_is_the_new_module(old):
    name = f"keras_slim.{old}"
    sys.modules.pop(name, None)
    with pytest.warns(DeprecationWarning, match=f"`{name}` is deprecated"):
        module = importlib.import_module(name)
    assert module is importlib.import_module(MOVED[old])


def test_old_names_still_import():
    from keras_slim.graph import channel_groups
    from keras_slim.ista import GammaProx, ISTAGamma, attach_ista
    from keras_slim.pruning import plan_for, prune
    from keras_slim.regularizers import GammaL1

    assert channel_groups is keras_slim.channel_groups
    assert ISTAGamma is keras_slim.callbacks.ISTAGamma
    assert GammaProx is keras_slim.constraints.GammaProx
    assert GammaL1 is keras_slim.regularizers.GammaL1
    assert prune is keras_slim.prune and callable(plan_for)
    assert attach_ista is keras_slim.attach_ista


def test_old_helpers_of_namespaces_warn():
    with pytest.warns(DeprecationWarning, match="copy_model"):
        copy_model = keras_slim.regularizers.copy_model
    assert copy_model is importlib.import_module(
        "keras_slim.sparsity.regularizers").copy_model
    with pytest.warns(DeprecationWarning, match="zero_border"):
        assert callable(keras_slim.rules.zero_border)
    with pytest.raises(AttributeError):
        keras_slim.rules.no_such_name


def test_verbs_stay_functions_after_an_old_module_import():
    for old in ("export", "report"):
        sys.modules.pop(f"keras_slim.{old}", None)
        with pytest.warns(DeprecationWarning):
            importlib.import_module(f"keras_slim.{old}")
    assert callable(keras_slim.export) and callable(keras_slim.report)
    assert keras_slim.export.__name__ == "export"


def test_every_old_module_file_is_listed():
    root = keras_slim.__path__[0]
    import pathlib

    shims = {path.stem for path in pathlib.Path(root).glob("*.py")
             if "_alias(__name__" in path.read_text()}
    assert shims == set(MOVED)
