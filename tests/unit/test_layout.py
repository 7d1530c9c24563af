"""The folders show the process boundaries (STYLE.md "Layout"), and a test keeps them honest.

- `procs/<program>/` holds one supervised program's private code; no program package imports
  another. `procs/cli/` (the `slt` command) may use the packages whose jobs it runs, but never a
  program's entry module (`procs.<program>.main`).
- `shared/` never imports `procs`, and holds only what two or more programs use (counting `slt`,
  with what it reaches through the program packages it uses).
- Every repository path the README names exists.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = ("feed", "guard", "trader", "watchdog", "reporter", "paper_exchange")
CLI = "cli"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p
        for top in ("procs", "shared")
        for p in (REPO / top).rglob("*.py")
        if "__pycache__" not in p.parts
    }


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """Return the module a dotted import name refers to (a module, or the module of a name)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """Return the project modules `module` imports, anywhere in its body (TYPE_CHECKING too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.add(target)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def program_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "procs" and len(parts) > 1:
        return parts[1]
    return None


def _reach(start: set[str], through_procs: bool) -> Iterator[str]:
    """Yield what `start` imports, transitively through shared/ (and procs/ if asked)."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        yield m
        if m in start or m.startswith("shared") or through_procs:
            todo.extend(GRAPH[m])


def users_of(targets: set[str]) -> dict[str, set[str]]:
    """Return, for each target module, the programs (and `slt`) that reach it."""
    users: dict[str, set[str]] = {m: set() for m in targets}
    for program in (*PROGRAMS, CLI):
        own = {m for m in MODULES if program_of(m) == program}
        # slt reaches shared code through the program packages whose jobs it runs, too.
        for m in _reach(own, through_procs=program == CLI):
            if m in users:
                users[m].add(program)
    return users


def test_no_program_package_imports_another() -> None:
    crossings = sorted(
        f"{m} imports {d}"
        for m, deps in GRAPH.items()
        for d in deps
        if program_of(m) in PROGRAMS and program_of(d) not in (None, program_of(m))
    )
    assert crossings == []


def test_slt_uses_program_packages_but_never_a_program_entry_module() -> None:
    entries = sorted(
        f"{m} imports {d}"
        for m, deps in GRAPH.items()
        if program_of(m) == CLI
        for d in deps
        if program_of(d) in PROGRAMS and d.endswith(".main")
    )
    assert entries == []


def test_shared_never_imports_a_program() -> None:
    bad = sorted(
        f"{m} imports {d}"
        for m, deps in GRAPH.items()
        if m.startswith("shared")
        for d in deps
        if d.startswith("procs")
    )
    assert bad == []


def test_every_shared_module_serves_two_programs_or_more() -> None:
    shared = {m for m in MODULES if m.startswith("shared") and MODULES[m].name != "__init__.py"}
    single = sorted(
        f"{m} is used only by {sorted(users) or 'nobody'}"
        for m, users in users_of(shared).items()
        if len(users) < 2
    )
    assert single == []


def test_the_count_of_users_tells_a_private_module_from_a_shared_one() -> None:
    # The rule above cannot pass by accident: it sees that the guard alone uses its state module
    # and the stop-placing module that slt flatten shares, and that every program logs.
    users = users_of({"procs.guard.state", "procs.guard.protect", "shared.log"})
    assert users["procs.guard.state"] == {"guard"}
    assert users["procs.guard.protect"] == {"guard", CLI}
    assert users["shared.log"] == {*PROGRAMS, CLI}


_README_PATH = re.compile(
    r"(?<![\w./-])((?:procs|shared|config|scripts|tests|\.ci)/[\w./-]*[\w/])(?![\w*<])"
)


def test_every_repository_path_the_readme_names_exists() -> None:
    text = (REPO / "README.md").read_text()
    missing = sorted({p for p in _README_PATH.findall(text) if not (REPO / p.rstrip("/")).exists()})
    assert missing == []
