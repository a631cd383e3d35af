"""Which tests run on which Keras backend, and the backend in every test id.

Keras picks its backend once per process (`KERAS_BACKEND`), so `make test`
runs pytest once per backend. Under TensorFlow everything runs. Under JAX and
PyTorch only the modules of `ALL_BACKENDS` are collected (the others import
TensorFlow, LiteRT or the recipes, and are never imported there), and in
those modules a test marked `@pytest.mark.tensorflow` (it calls TensorFlow
itself) is deselected. A test marked `@pytest.mark.backend("jax")` runs
under the backends it names only. Every test id ends with the backend,
e.g. `test_slim_matches_masked[residual-jax]`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()

# Test modules that need nothing but Keras and NumPy (plus scikit-learn's
# bundled digits): graph, surgery, plans, criteria, counting, sparsity
# training, rescaling, masks, protocols and .keras saving.
ALL_BACKENDS = frozenset({
    "test_core_imports.py",
    "test_layering.py",
    "test_exactness_regressions.py",
    "test_exactness_round3.py",
    "test_verification_reference.py",
    "test_extending.py",
    "test_blocks.py",
    "test_reduction.py",
    "test_keras_hub.py",
    "test_keras_hub_tasks.py",
    "test_user_code.py",
    "test_keras_hub_transformers.py",
    "test_folding.py",
    "test_verification.py",
    "test_counting.py",
    "test_graph.py",
    "test_guidance.py",
    "test_ista.py",
    "test_magnitude.py",
    "test_penalties.py",
    "test_plan.py",
    "test_protocols.py",
    "test_pruning.py",
    "test_regularizers.py",
    "test_rescaling.py",
    "test_saving.py",
    "test_selection.py",
    "test_scores.py",
    "test_rule_registry.py",
    "test_surgery.py",
    "test_backends.py",
    "test_recipes_jax.py",
    "test_latency_fit.py",
    "test_attention.py",
    "test_attention_fuzz.py",
})


def pytest_ignore_collect(collection_path, config):
    if BACKEND == "tensorflow" or collection_path.is_dir():
        return None
    name = collection_path.name
    if name.startswith("test_") and name.endswith(".py"):
        return name not in ALL_BACKENDS
    return None


def _runs_here(item):
    if BACKEND != "tensorflow" and item.get_closest_marker("tensorflow"):
        return False
    only = item.get_closest_marker("backend")
    return only is None or BACKEND in only.args


def pytest_collection_modifyitems(config, items):
    kept, dropped = [], []
    for item in items:
        (kept if _runs_here(item) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session", autouse=True, params=[BACKEND], ids=[BACKEND])
def keras_backend(request):
    """The Keras backend of this run; its name ends every test id."""
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture(scope="module")
def benchmark_module():
    """`benchmark_module(name)`: a script of benchmarks/ imported as a
    module (the folder on `sys.path` until the test module ends)."""
    import importlib
    import sys

    folder = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "benchmarks")
    sys.path.insert(0, folder)
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(folder)
