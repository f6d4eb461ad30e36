"""The package's import graph: acyclic, and the fast path never imports the reference.

Every module of ``python/rnnkit`` is parsed with :mod:`ast` (not imported), every
``import`` / ``from ... import`` statement is read, function-local ones included,
and resolved to the package modules it loads. The graph must be acyclic (the house
direction: kernels <- bindings <- layers <- blocks/models <- fit <- text <- cli) and
only ``rnnkit.reference.*`` may import ``rnnkit.reference``, besides the two tools
that time or demonstrate the reference against the kernels (:data:`TOOLS`).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "python" / "rnnkit"
REF = "rnnkit.reference"

TOOLS = {
    # ``rnnkit bench`` times the NumPy reference next to the kernels.
    "rnnkit.bench",
    # ``rnnkit demo`` shows the kernels agreeing with the reference.
    "rnnkit.cli",
}
"""Documented exceptions: tools that import the reference to compare against it."""


def _module_names() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _module_names()
NATIVE = {"rnnkit._core"}
"""Compiled modules: leaves of the graph (they import nothing of the package)."""


def _resolve(name: str) -> str | None:
    """The package module ``name`` loads: itself, or the nearest package above."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    """Package modules imported anywhere in ``path`` (function bodies included)."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # ``from . import layers`` loads rnnkit.layers; ``from .x import f``
            # loads rnnkit.x
            targets = [f"{prefix}.{a.name}" for a in node.names]
            targets = [t if t in MODULES or t in NATIVE else prefix for t in targets]
        else:
            continue
        for t in targets:
            if t in NATIVE or t.split(".")[0] != "rnnkit":
                continue
            r = _resolve(t)
            if r is not None and r != module:
                found.add(r)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _cycle() -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(GRAPH):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_parser_sees_the_package():
    assert {"rnnkit", "rnnkit.layers", "rnnkit.models", REF} <= set(MODULES)
    assert "rnnkit._cells" in GRAPH["rnnkit.layers"]
    assert "rnnkit.layers" in GRAPH[REF]  # the reference builds on the layers


def test_import_graph_is_acyclic():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_fast_path_never_imports_the_reference(module):
    if module == REF or module.startswith(REF + ".") or module in TOOLS:
        return
    assert REF not in GRAPH[module], f"{module} imports {REF}"


def test_package_import_leaves_the_reference_unloaded():
    code = (
        "import sys, rnnkit; print(sorted(m for m in sys.modules if '.reference' in m))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


DOCUMENTED = [
    "rnnkit",
    "rnnkit._atomic",
    "rnnkit._cells",
    "rnnkit._config",
    "rnnkit._layernorm",
    "rnnkit._lstmp",
    "rnnkit._options",
    "rnnkit._params",
    "rnnkit._safetensors",
    "rnnkit._serial",
    "rnnkit._workspace",
    "rnnkit.io",
    "rnnkit.layers",
    "rnnkit.losses",
    "rnnkit.models",
    "rnnkit.modules",
    "rnnkit.optim",
    "rnnkit.reference",
]


@pytest.mark.parametrize("name", DOCUMENTED)
def test_docstring_examples_run(name):
    import doctest
    import importlib

    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize("cls_name", ["RNN", "LSTM", "GRU"])
def test_layer_docstrings_document_every_argument(cls_name):
    import inspect

    import rnnkit as rk

    cls = getattr(rk, cls_name)
    doc = inspect.getdoc(cls) or ""
    for section in ("Parameters", "Shapes", "Examples"):
        assert f"\n{section}\n" in doc, f"{cls_name} lacks {section}"
    for arg in inspect.signature(cls).parameters:
        assert f"\n{arg} :" in doc, f"{cls_name} does not document {arg}"
    for method in ("forward", "backward", "stepper", "state_dict"):
        assert "Returns" in (inspect.getdoc(getattr(cls, method)) or "")
