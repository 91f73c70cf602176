"""The package's shape: imports run only down the layers, and no module imports one that imports it back.

Layers, bottom up: core and infra; agents and data; episodes; training and evaluation; report and
repro; the command line (``finemem_lib.cli``). A module may import its own layer and the ones below.
Front doors (the notebooks' and command lines' entry modules in ``training``) wire the layers together
and may import any of them; nothing but another front door imports a front door. Imports inside
``if TYPE_CHECKING:`` do not run and are not counted; imports inside functions are.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "finemem_lib"
LAYERS = {"core": 0, "infra": 0, "agents": 1, "data": 1, "episodes": 2, "training": 3, "evaluation": 3,
          "report": 4, "repro": 4}  # fmt: skip
TOP = 5  # finemem_lib itself and finemem_lib.cli
FRONT_DOORS = {"finemem_lib.training.runner", "finemem_lib.training.study"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], TOP) if len(parts) > 1 else TOP


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports (a ``from package import name`` naming a module counts as that module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("finemem_lib"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in modules else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("finemem_lib")}
    return found & modules


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(paths)
    return {m: imports_of(p, modules) - {m} for m, p in paths.items()}


def test_the_scan_sees_the_package(graph):
    assert {"finemem_lib.core.rewards", "finemem_lib.training.run", "finemem_lib.cli"} <= set(graph)
    assert "finemem_lib.core.reward_spec" in graph["finemem_lib.core.rewards"]
    assert "finemem_lib.agents.reasoner" in graph["finemem_lib.agents.reasoner_factory"]


def test_imports_only_run_down_the_layers(graph):
    upward = sorted(
        (m, t) for m, targets in graph.items() for t in targets if layer(t) > layer(m) and m not in FRONT_DOORS
    )
    assert upward == [], "imports running from a lower layer up: " + ", ".join(f"{m} -> {t}" for m, t in upward)


def test_only_front_doors_import_front_doors(graph):
    callers = sorted((m, t) for m, targets in graph.items() for t in targets & FRONT_DOORS if m not in FRONT_DOORS)
    allowed = {"finemem_lib.training.cli"}  # the training command line is itself an entry point
    assert [(m, t) for m, t in callers if m not in allowed and layer(m) < TOP] == []


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_import_circle(graph):
    assert circles(graph) == []


def test_a_circle_and_an_upward_import_would_be_seen(tmp_path):
    """The checks are not vacuous: a two-module circle and a core -> training import are found."""
    graph = {"finemem_lib.core.a": {"finemem_lib.training.b"}, "finemem_lib.training.b": {"finemem_lib.core.a"}}
    assert circles(graph) == [["finemem_lib.core.a", "finemem_lib.training.b"]]
    assert layer("finemem_lib.training.b") > layer("finemem_lib.core.a")
    fake = tmp_path / "m.py"
    fake.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import finemem_lib.core.a\n"
                    "def f():\n    from finemem_lib.training import b\n")  # fmt: skip
    assert imports_of(fake, set(graph)) == {"finemem_lib.training.b"}
