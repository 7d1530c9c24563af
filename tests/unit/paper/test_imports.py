"""The paper exchange's import graph: no circles (type-only imports count) and no client code.

Every module of `procs/paper_exchange` is parsed with `ast`, not imported, so an import under
`if TYPE_CHECKING:` or inside a function is an edge like any other (STYLE "Layout": web handlers,
engine and market replay without import circles; the twin shares no code with `shared.exchange`).
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

PACKAGE = "procs.paper_exchange"
ROOT = Path(__file__).resolve().parents[3]
PACKAGE_DIR = ROOT.joinpath(*PACKAGE.split("."))
CLIENT = "shared.exchange"


def parse_package() -> dict[str, tuple[ast.Module, bool]]:
    """Return every module of the paper exchange by dotted name: its tree and is-package flag."""
    modules: dict[str, tuple[ast.Module, bool]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules[".".join(parts)] = (tree, is_package)
    return modules


def imported_names(
    name: str, tree: ast.Module, is_package: bool, modules: Collection[str]
) -> Iterator[str]:
    """Yield the dotted name of everything `tree` imports, anywhere in the file.

    `ast.walk` reaches imports under `if TYPE_CHECKING:` and inside functions. `from pkg import x`
    yields `pkg.x` when that is a module of `modules`, else `pkg` (the module defining `x`).
    Relative imports are resolved against the importing module's package.
    """
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield submodule if submodule in modules else base


def import_graph(modules: Mapping[str, tuple[ast.Module, bool]]) -> dict[str, set[str]]:
    """Return, for each module of the package, the other modules of the package it imports."""
    return {
        name: {
            imported
            for imported in imported_names(name, tree, is_package, modules)
            if imported in modules and imported != name
        }
        for name, (tree, is_package) in modules.items()
    }


def find_cycle(graph: Mapping[str, Collection[str]]) -> list[str] | None:
    """Return one cycle as `[a, b, ..., a]` (depth-first, names in order), or None if none."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        pending = [iter(sorted(graph[start]))]
        while pending:
            successor = next(pending[-1], None)
            if successor is None:
                pending.pop()
                done.add(path.pop())
            elif successor in path:
                return [*path[path.index(successor) :], successor]
            elif successor not in done:
                path.append(successor)
                pending.append(iter(sorted(graph.get(successor, ()))))
    return None


def test_find_cycle_returns_the_modules_of_a_cycle_in_order() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_find_cycle_of_a_graph_without_cycles_returns_none() -> None:
    graph = {"a": {"b", "c"}, "b": {"c"}, "c": set()}
    assert find_cycle(graph) is None


def test_import_graph_counts_type_checking_function_level_and_from_package_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from pkg import sub\n"
        "from pkg.other import Name\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.typed import Thing\n"
        "def late() -> None:\n"
        "    import pkg.lazy\n"
    )
    names = ["pkg", "pkg.mod", "pkg.sub", "pkg.other", "pkg.sibling", "pkg.typed", "pkg.lazy"]
    modules = {name: (ast.parse(""), name == "pkg") for name in names}
    modules["pkg.mod"] = (ast.parse(source), False)
    graph = import_graph(modules)
    assert graph["pkg.mod"] == {"pkg.sub", "pkg.other", "pkg.sibling", "pkg.typed", "pkg.lazy"}


def test_paper_exchange_modules_import_each_other_without_a_cycle() -> None:
    graph = import_graph(parse_package())
    assert f"{PACKAGE}.web.rest" in graph[f"{PACKAGE}.server"]  # the graph is not empty
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(
        m.removeprefix(PACKAGE + ".") for m in cycle or []
    )


def test_paper_exchange_imports_nothing_from_the_exchange_client() -> None:
    offenders = sorted(
        f"{name} imports {imported}"
        for name, (tree, is_package) in parse_package().items()
        for imported in imported_names(name, tree, is_package, {CLIENT})
        if imported == CLIENT or imported.startswith(CLIENT + ".")
    )
    assert offenders == []
