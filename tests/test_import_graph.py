"""Imports point downward: no module of the package takes part in an import circle, and the leaf packages never
import the top (the config assembler, the module, the run, the entry points). Function-level imports count too, so a
circle cannot hide behind an import inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "medzero_pl"
LEAVES = ("grpo", "rewards", "data", "rollout", "eval", "model")
TOP = {
    "medzero_pl.config",
    "medzero_pl.module",
    "medzero_pl.run",
    "medzero_pl.fit",
    "medzero_pl.__main__",
    "medzero_pl.callbacks",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules `name` imports anywhere in its file, plus the packages Python runs first to import them (a
    package's `__init__`), except the importer's own enclosing packages."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
    edges = set()
    for target in targets:
        parts = target.split(".")
        for depth in range(2, len(parts) + 1):  # medzero_pl.x, medzero_pl.x.y, ...: each runs when imported
            prefix = ".".join(parts[:depth])
            if prefix in known and prefix != name and not name.startswith(prefix + "."):
                edges.add(prefix)
    return edges


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_sees_function_level_imports_and_package_inits():
    edges = graph()
    assert "medzero_pl.eval.judge" in edges["medzero_pl.eval.__main__"]  # imported inside main()
    assert "medzero_pl.rewards.registry" in edges["medzero_pl.rewards"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_module_takes_part_in_an_import_circle():
    assert find_cycle(graph()) is None


def test_leaf_packages_never_import_the_top():
    upward = [
        f"{name} imports {target}"
        for name, targets in graph().items()
        if name.split(".")[1:2] and name.split(".")[1] in LEAVES
        for target in targets
        if target in TOP or target.startswith("medzero_pl.callbacks.")
    ]
    assert upward == []
