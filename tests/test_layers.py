"""The library's layers: no package imports one above it, no cycle between
packages, and no cycle between files.

Every module under src/crossemotion is parsed (ast, so imports inside
functions and under TYPE_CHECKING count too: a lazy import is still a
dependency) and each import of another crossemotion unit (a subpackage or a
top-level module) is checked against LAYERS, bottom first.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "crossemotion"

# bottom first; a unit may import units of its own layer or below
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer)
    for layer in (
        # leaf modules: they import no other crossemotion unit
        {
            "labels",
            "io",
            "config",
            "schemas",
            "layout",
            "logs",
            "codec",
            "device",
            "checkpoint",
            "resources",
        },
        {"ingest", "synth", "model_config"},
        {"datasets"},
        {"models"},
        {"training", "evaluation", "inference"},
        {"reporting", "serving", "predict_cli"},
        {"cli", "__init__"},
    )
)
RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}


def unit_of(module: str) -> str:
    """``crossemotion.training.loop`` -> ``training``; ``crossemotion`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imported(source: str, name: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in module ``name``'s source, relative ones resolved."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = resolved_base(node, package)
            if base == "crossemotion":
                # ``from crossemotion import labels`` imports the unit ``labels``
                for alias in node.names:
                    yield node.lineno, f"crossemotion.{alias.name}"
            else:
                yield node.lineno, base


def resolved_base(node: ast.ImportFrom, package: str) -> str:
    """The module ``from X import ...`` names, a relative ``X`` made absolute."""
    base = node.module or ""
    if node.level:
        anchor = package.split(".")
        anchor = anchor[: len(anchor) - node.level + 1]
        base = ".".join([*anchor, base] if base else anchor)
    return base


def edges() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, where) for imports between different units."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        src_unit = unit_of(module_name(path))
        source = path.read_text(encoding="utf-8")
        for line, target in imported(source, module_name(path), path.name == "__init__.py"):
            if target.split(".")[0] != "crossemotion":
                continue
            dst_unit = unit_of(target)
            if dst_unit != src_unit:
                out.append((src_unit, dst_unit, f"{path.relative_to(SRC.parent)}:{line}"))
    return out


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(module_name(p)) for p in SRC.rglob("*.py")}
    assert units - set(RANK) == set(), "add new packages/modules to LAYERS"


def test_no_import_from_a_layer_above() -> None:
    upward = [
        f"{where}: {src} imports {dst}"
        for src, dst, where in edges()
        if RANK.get(dst, len(LAYERS)) > RANK.get(src, -1)
    ]
    assert upward == []


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for src, dst, _ in edges():
        graph.setdefault(src, set()).add(dst)
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module (a package is its __init__.py)."""
    return {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def file_edges() -> dict[str, set[str]]:
    """Module -> the crossemotion modules it imports, each resolved to its file:
    ``from crossemotion.synth import clips`` is an import of the file
    synth/clips.py (a submodule), ``from crossemotion.synth import X`` of
    synth/__init__.py otherwise."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = resolved_base(node, package)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                # `import crossemotion.a.b` with no a/b.py: the deepest file that exists
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one node: the circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_cycle_between_files() -> None:
    """A circle inside one package (synth's meld <-> ifeed was one) is a circle too."""
    graph = file_edges()
    circles = strongly_connected(graph)
    assert circles == [], "\n".join(
        " <-> ".join(c) + ": " + "; ".join(f"{a} imports {sorted(graph[a] & set(c))}" for a in c)
        for c in circles
    )


def test_file_graph_finds_a_circle() -> None:
    """The check above can fail: two modules importing each other are one component."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_file_edges_resolve_submodules() -> None:
    graph = file_edges()
    # registry.py: `from crossemotion.resources import Sizing, sizing` -> resources.py
    assert "crossemotion.resources" in graph["crossemotion.models.registry"]
    assert "crossemotion.models" not in graph["crossemotion.models.registry"]


def test_serving_needs_no_training_code() -> None:
    """What loads and serves a checkpoint reaches no training or transfer module."""
    graph: dict[str, set[str]] = {}
    for src, dst, _ in edges():
        graph.setdefault(src, set()).add(dst)
    for start in ("serving", "inference", "predict_cli"):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert "training" not in seen, start


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from crossemotion.training.loop import fit\n", "crossemotion.training.loop"),
        ("from crossemotion import labels\n", "crossemotion.labels"),
        ("def f():\n    import crossemotion.serving.app\n", "crossemotion.serving.app"),
        ("from ..training import loop\n", "crossemotion.training"),
    ],
)
def test_imports_are_found(source: str, expected: str) -> None:
    assert expected in [m for _, m in imported(source, "crossemotion.models.probe")]
