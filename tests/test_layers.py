"""The package's layers, checked on its source: who may take a namespace, who may import whom.

* Only the command layer (the scripts at the repository root, ``options.py`` modules,
  ``facenerf/tools``, ``__main__`` modules and the parser machinery ``facenerf/cli.py``) sees an
  ``argparse.Namespace``: no function below it takes one or a parameter named ``args``, and no
  module below it imports ``argparse`` or ``facenerf.cli``.
* ``facenerf/core`` imports nothing from ``models``, ``data``, ``fitting`` or ``preprocess``;
  ``facenerf/engine`` imports nothing from ``models``.
* Module-level imports inside the package form no cycle.
* The model table names every model that writes checkpoints.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "facenerf"


@functools.cache
def _modules() -> dict[str, Path]:
    """``facenerf.x.y`` -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def is_command_layer(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return name == "facenerf.cli" or name.startswith("facenerf.tools") or leaf in ("options", "__main__")


def _imports(tree: ast.AST, module: str, top_level_only: bool = False) -> set[str]:
    """Names of the facenerf modules ``tree`` imports: ``from a import b`` is ``a.b`` when that is a
    module (a submodule import), else ``a``."""
    known = _modules()
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}: the package uses absolute imports only"
            base = node.module or ""
            names.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return {n for n in names if n == "facenerf" or n.startswith("facenerf.")}


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield node


def namespace_takers(modules: dict[str, Path]) -> list[str]:
    """``module:line function(parameter)`` for every parameter named ``args`` or annotated as a Namespace."""
    found = []
    for name, path in modules.items():
        for node in _functions(ast.parse(path.read_text())):
            arguments = node.args
            for arg in arguments.posonlyargs + arguments.args + arguments.kwonlyargs:
                annotation = ast.unparse(arg.annotation) if arg.annotation is not None else ""
                if arg.arg == "args" or "Namespace" in annotation:
                    found.append(f"{name}:{node.lineno} {getattr(node, 'name', 'lambda')}({arg.arg})")
    return found


def test_nothing_below_the_command_layer_takes_a_namespace():
    library = {name: path for name, path in _modules().items() if not is_command_layer(name)}
    assert namespace_takers(library) == []
    offenders = []
    for name, path in library.items():
        text = path.read_text()
        tree = ast.parse(text)
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        if "argparse" in imported or "facenerf.cli" in imported or "Namespace" in text:
            offenders.append(name)
    assert offenders == [], f"argparse / facenerf.cli / Namespace below the command layer: {offenders}"


def test_the_namespace_check_sees_a_namespace_taker(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import argparse\ndef train(args):\n    pass\ndef fit(ns: argparse.Namespace):\n    pass\n")
    assert namespace_takers({"bad": bad}) == ["bad:2 train(args)", "bad:4 fit(ns)"]


@pytest.mark.parametrize("layer, forbidden", [
    ("facenerf.core", ("facenerf.models", "facenerf.data", "facenerf.fitting", "facenerf.preprocess")),
    ("facenerf.engine", ("facenerf.models",)),
])
def test_import_directions(layer, forbidden):
    offenders = []
    for name, path in _modules().items():
        if name == layer or name.startswith(layer + "."):
            for imported in _imports(ast.parse(path.read_text()), name):
                if imported.startswith(forbidden):
                    offenders.append(f"{name} imports {imported}")
    assert offenders == []


def test_no_import_cycles_between_package_modules():
    modules = _modules()
    graph = {name: {m for m in _imports(ast.parse(path.read_text()), name, top_level_only=True)
                    if m in modules and m != name} for name, path in modules.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_every_model_that_writes_checkpoints_is_in_the_table():
    from facenerf.models.table import MODELS

    names = set()
    for name, path in _modules().items():
        if name.startswith("facenerf.models.") and name.endswith(".model"):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "MODEL_NAME" for t in node.targets):
                    names.add(node.value.value)
    assert names and names == set(MODELS)
