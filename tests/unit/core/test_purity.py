"""Pure logic is pure: no module in shared/core, shared/report or a program's logic/ package
(procs/<program>/logic/) imports an I/O or event-loop library (STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PURE = sorted(
    [
        *(REPO / "shared" / "core").glob("*.py"),
        *(REPO / "shared" / "report").glob("*.py"),
        *(REPO / "procs").glob("*/logic/*.py"),
    ]
)
FORBIDDEN = {
    "asyncio",
    "zmq",
    "redis",
    "asyncpg",
    "aiohttp",
    "websockets",
    "socket",
    "time",
    "os",
    "uvloop",
    "subprocess",
    "shared.exchange",
    "shared.cache",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(REPO)))
def test_pure_module_imports_no_io_library(path: Path) -> None:
    bad = {n for n in _imports(path) if n in FORBIDDEN or n.split(".")[0] in FORBIDDEN}
    assert bad == set(), f"{path.name} imports {sorted(bad)}"
