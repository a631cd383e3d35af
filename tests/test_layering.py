"""The package layout is the architecture: imports point down only.

Parses the imports of every keras_slim module (no import is executed) and
checks the arrows of docs/architecture.md:

- `core` imports nothing of keras_slim outside `core`;
- planners never cut: no planner imports `core.surgery` (two lazy,
  documented exceptions below: both time slim models);
- `sparsity` knows nothing of `deploy` or `tools`;
- nothing in keras_slim imports `recipes` or `examples`;
- neither keras_slim nor the recipes import `studies`;
- the imports among keras_slim modules, and among the recipes, form no
  cycle, counting the imports inside functions too (a lazy import hides a
  cycle from Python, not from a reader);
- `deploy` never reaches up into `tools`.
"""

import ast
import pathlib
import re

import keras_slim

ROOT = pathlib.Path(keras_slim.__file__).parent

# (importer, imported) pairs allowed against the rules above, with why.
EXCEPTIONS = {
    # `plan_for_budget(latency=...)` confirms its plan by timing the slim
    # model against the dense one; the import is lazy, inside `_slim`.
    ("keras_slim.planners.budget", "keras_slim.core.surgery"),
    # `calibrate_latency_table` times random slim models end to end, for
    # the same reason; lazy, inside the function.
    ("keras_slim.planners.latency_fit", "keras_slim.core.surgery"),
}


def _module_name(path):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module, node):
    """The absolute module an `ImportFrom` names (relative ones resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    is_package = (ROOT.parent / pathlib.Path(*package) / "__init__.py").exists()
    base = package if is_package else package[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path):
    """[(imported module, module_level)] of the file at `path`.

    `from a import b` counts as importing `a.b` when that is a module, else
    `a`.
    """
    module = _module_name(path)
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        at_top = id(node) in top
        if isinstance(node, ast.Import):
            found += [(alias.name, at_top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((candidate if candidate in MODULES else base,
                              at_top))
    return found


PATHS = sorted(ROOT.rglob("*.py"))
RECIPE_PATHS = sorted((ROOT.parent / "recipes").glob("*.py"))
STUDY_PATHS = sorted((ROOT.parent / "studies").rglob("*.py"))
MODULES = {_module_name(path) for path in PATHS + RECIPE_PATHS + STUDY_PATHS}
IMPORTS = {_module_name(path): _imports(path)
           for path in PATHS + RECIPE_PATHS + STUDY_PATHS}


def _internal(name):
    return name == "keras_slim" or name.startswith("keras_slim.")


def _violations(importers, forbidden):
    bad = []
    for module, imports in IMPORTS.items():
        if not any(module == p or module.startswith(p + ".") for p in importers):
            continue
        for imported, _ in imports:
            if forbidden(imported) and (module, imported) not in EXCEPTIONS:
                bad.append((module, imported))
    return bad


def test_every_subpackage_is_parsed():
    for package in ("core", "planners", "sparsity", "protocols", "deploy",
                    "tools"):
        assert f"keras_slim.{package}" in MODULES
    assert "keras_slim.core.graph" in MODULES
    assert ("keras_slim.core.rule_registry", True) in IMPORTS["keras_slim.core.graph"]


def test_core_imports_nothing_of_keras_slim_outside_core():
    assert _violations(
        ["keras_slim.core"],
        lambda name: _internal(name) and not (
            name == "keras_slim.core" or name.startswith("keras_slim.core."))
    ) == []


def test_planners_never_cut():
    assert _violations(
        ["keras_slim.planners"],
        lambda name: name.startswith("keras_slim.core.surgery")) == []


def test_sparsity_knows_nothing_of_deploy_or_tools():
    assert _violations(
        ["keras_slim.sparsity"],
        lambda name: name.startswith(("keras_slim.deploy", "keras_slim.tools"))
    ) == []


def test_deploy_never_reaches_up_into_tools():
    assert _violations(
        ["keras_slim.deploy"],
        lambda name: name.startswith("keras_slim.tools")) == []


def test_nothing_in_the_library_imports_recipes_or_examples():
    assert _violations(
        ["keras_slim"],
        lambda name: name.split(".")[0] in ("recipes", "examples")) == []


def test_neither_library_nor_recipes_import_the_studies():
    assert "studies.fashion_mnist.study" in MODULES
    assert _violations(
        ["keras_slim", "recipes"],
        lambda name: name.split(".")[0] == "studies") == []


def _cycle():
    """A cycle of imports (at module level or inside functions) among the
    keras_slim and recipes modules, or None.

    A module imports its package's `__init__` too when Python runs it, but
    that edge is left out: a package that re-exports its modules would
    otherwise be a cycle with each of them.
    """
    edges = {
        module: sorted({name for name, _ in imports
                        if name in MODULES and name != module
                        and not module.startswith(name + ".")})
        for module, imports in IMPORTS.items()
    }
    state = {}  # module -> 1 on the stack, 2 done

    def visit(module, stack):
        state[module] = 1
        stack.append(module)
        for child in edges[module]:
            if state.get(child) == 1:
                return stack[stack.index(child):] + [child]
            if child not in state:
                found = visit(child, stack)
                if found:
                    return found
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state:
            found = visit(module, [])
            if found:
                return found
    return None


def test_no_import_cycle():
    assert _cycle() is None, " -> ".join(_cycle())


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    # The check above could pass by never looking: plant a cycle.
    monkeypatch.setitem(IMPORTS, "keras_slim.core.rule_registry",
                        IMPORTS["keras_slim.core.rule_registry"]
                        + [("keras_slim.core.graph", True)])
    assert _cycle() is not None


def test_the_cycle_finder_sees_imports_inside_functions(monkeypatch):
    # A lazy import, the way the old cycles hid, in the recipes too.
    monkeypatch.setitem(IMPORTS, "recipes.inputs",
                        IMPORTS["recipes.inputs"] + [("recipes.common", False)])
    assert "recipes.inputs" in _cycle()


PRIVATE_KERAS = re.compile(
    r"(?<!self)\._(flatten_layers|keras_history|inbound_nodes|outbound_nodes|"
    r"nodes_by_depth|functional|inputs_struct|outputs_struct|layers)\b"
    r"|[\"'](_functional|_nodes_by_depth|_iterations)[\"']|keras\.src\b")


def test_private_keras_api_is_used_in_keras_compat_only():
    users = sorted(
        _module_name(path) for path in PATHS
        if path.name != "keras_compat.py"
        and PRIVATE_KERAS.search(path.read_text()))
    assert users == []
    compat = (ROOT / "core" / "keras_compat.py").read_text()
    assert PRIVATE_KERAS.search(compat)  # the pattern does find them


def test_every_module_declares_all():
    missing = []
    for path in PATHS:
        tree = ast.parse(path.read_text())
        if not any(isinstance(node, ast.Assign) and any(
                getattr(target, "id", None) == "__all__"
                for target in node.targets) for node in tree.body):
            missing.append(_module_name(path))
    assert missing == []


def test_all_names_exist():
    import importlib

    for module_name in sorted(map(_module_name, PATHS)):
        module = importlib.import_module(module_name)
        for name in module.__all__:
            assert hasattr(module, name), (module_name, name)


def test_no_module_is_much_over_400_lines():
    long = {_module_name(path): len(path.read_text().splitlines())
            for path in PATHS}
    assert {name: n for name, n in long.items() if n > 415} == {}
