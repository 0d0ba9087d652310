"""The package's import graph, read from the source (every `import acml_dist...`, at the top of a file or
inside a function): no cycles, and imports point one way through the layers of ARCHITECTURE.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "acml_dist"

# Layer of each top-level module or subpackage: a module imports from its own layer or those below it.
LAYERS = {
    **dict.fromkeys(("config", "context", "errors", "log", "redact", "ray_runtime"), 0),  # under everything
    "chem": 1,
    "data": 2,
    **dict.fromkeys(("teachers", "models"), 3),
    **dict.fromkeys(
        (
            "losses",
            "train",
            "training",
            "engine",
            "train_metrics",
            "evaluate",
            "tracking",
            "embedder",
            "serving",
        ),
        4,
    ),  # fmt: skip
    **dict.fromkeys(("cli", "pipeline"), 5),
}
# Known upward imports, each with the reason it stays for now.
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the acml_dist modules it imports (`from pkg import name`: the submodule when `name` is one,
    else the package)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}

    def owner(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {owner(a.name) for a in node.names if a.name.startswith("acml_dist")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("acml_dist"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else owner(node.module))
        graph[name] = targets - {name, ""}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    assert "acml_dist.teachers.registry" in graph["acml_dist.teachers"]  # `load_teacher` fetches from it
    assert "acml_dist.data.featurize_tasks" in graph["acml_dist.data.featurize"]  # a function-level import
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_imports_point_down_the_layers():
    graph = import_graph()
    unlayered = sorted(m for m in graph if m != "acml_dist" and _layer(m) is None)
    assert not unlayered, f"modules without a layer in LAYERS: {unlayered}"
    upward = sorted(
        (m, t) for m, targets in graph.items() for t in targets
        if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m)
    )  # fmt: skip
    assert [e for e in upward if e not in ALLOWED_UPWARD] == []


def test_every_module_has_a_row_in_the_architecture_table():
    """ARCHITECTURE.md's module table is the map a new reader starts from: a module without a row is
    invisible there, and a row without a module misleads."""
    import re

    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    rows = set(re.findall(r"^\| `(acml_dist[\w.]*)` \|", text, re.MULTILINE))
    modules = {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py"
    }
    packages = {".".join(p.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("*") if p.is_dir()}
    assert sorted(modules - rows) == []
    assert sorted(rows - modules - packages) == []
