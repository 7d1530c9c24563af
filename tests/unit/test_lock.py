"""requirements.lock must hold what pyproject.toml asks for: every runtime, dev and build
dependency pinned inside its range, with hashes, once for every supported Python and platform.

A dependency added to pyproject.toml, or a range moved, without running scripts/lock fails here,
so the ranges (for people installing the package) and the lock (what every install here uses)
never drift apart.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]

# The Pythons and platforms the README supports; the lock must resolve each of them.
PYTHONS = ("3.11", "3.12", "3.13")
MACHINES = ("x86_64", "aarch64")

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: Version
    marker: Marker | None
    hashes: int  # how many sha256 hashes follow the pin


def parse_lock(text: str) -> list[Pin]:
    """Return the pins of a pip requirements file written with hashes."""
    pins: list[Pin] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--hash=sha256:") and pins:
            last = pins[-1]
            pins[-1] = Pin(last.name, last.version, last.marker, last.hashes + 1)
            continue
        if not line or line[0] in " #\t-":
            continue
        m = _PIN.match(line)
        assert m, f"requirements.lock: line {line!r} is not name==version [; marker]"
        marker = Marker(m.group(3)) if m.group(3) else None
        pins.append(Pin(canonicalize_name(m.group(1)), Version(m.group(2)), marker, 0))
    return pins


def wanted(pyproject: dict[str, Any]) -> list[Requirement]:
    """Return every requirement the lock must cover: runtime, every extra, build system."""
    project = pyproject["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    reqs.extend(pyproject.get("build-system", {}).get("requires", []))
    return [Requirement(r) for r in reqs]


def environment(python: str, machine: str) -> dict[str, str]:
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "platform_machine": machine,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def lock_problems(pyproject: dict[str, Any], lock_text: str) -> list[str]:
    """Return one sentence per way the lock fails pyproject; empty when they agree."""
    problems: list[str] = []
    pins = parse_lock(lock_text)
    if "scripts/lock" not in lock_text.split("\n", 3)[1]:
        problems.append("requirements.lock was not written by scripts/lock")
    for pin in pins:
        if pin.hashes == 0:
            problems.append(f"{pin.name}=={pin.version} has no hash")
    for python in PYTHONS:
        for machine in MACHINES:
            env = environment(python, machine)
            here = [p for p in pins if p.marker is None or p.marker.evaluate(env)]
            by_name: dict[str, list[Pin]] = {}
            for p in here:
                by_name.setdefault(p.name, []).append(p)
            for name, same in by_name.items():
                if len(same) > 1:
                    problems.append(f"{name} is pinned {len(same)} times for {python}/{machine}")
            for req in wanted(pyproject):
                if req.marker is not None and not req.marker.evaluate(env):
                    continue
                name = canonicalize_name(req.name)
                found = by_name.get(name)
                if not found:
                    problems.append(
                        f"{req} is in pyproject.toml but not locked for {python}/{machine}; "
                        "run scripts/lock"
                    )
                    continue
                if not req.specifier.contains(found[0].version, prereleases=True):
                    problems.append(
                        f"{name}=={found[0].version} in requirements.lock is outside "
                        f"pyproject.toml's {req}; run scripts/lock"
                    )
    return sorted(set(problems))


def _pyproject() -> dict[str, Any]:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _lock() -> str:
    return (REPO / "requirements.lock").read_text()


def test_the_lock_pins_every_dependency_of_pyproject_inside_its_range_with_hashes() -> None:
    assert lock_problems(_pyproject(), _lock()) == []


def test_a_dependency_added_to_pyproject_without_relocking_is_reported() -> None:
    pyproject = _pyproject()
    pyproject["project"]["dependencies"].append("hypothesis>=6")
    assert lock_problems(pyproject, _lock()) == sorted(
        f"hypothesis>=6 is in pyproject.toml but not locked for {py}/{m}; run scripts/lock"
        for py in PYTHONS
        for m in MACHINES
    )


def test_a_range_moved_past_the_locked_version_is_reported() -> None:
    pyproject = _pyproject()
    deps = pyproject["project"]["dependencies"]
    numpy_at = next(i for i, d in enumerate(deps) if Requirement(d).name == "numpy")
    deps[numpy_at] = "numpy>=99"
    problems = lock_problems(pyproject, _lock())
    assert problems and all("outside pyproject.toml's numpy>=99" in p for p in problems)


def test_a_pin_without_a_hash_is_reported() -> None:
    text = _lock()
    first_hash = re.search(r" \\\n    --hash=sha256:[0-9a-f]{64}", text)
    assert first_hash is not None
    pin_line_end = first_hash.start()
    # Drop every hash of the first pin.
    rest = text[pin_line_end:]
    next_pin = re.search(r"\n[a-z]", rest)
    assert next_pin is not None
    stripped = text[:pin_line_end] + rest[next_pin.start() :]
    problems = lock_problems(_pyproject(), stripped)
    assert any(p.endswith("has no hash") for p in problems)


@pytest.mark.parametrize("name", ["numpy", "xgboost", "msgspec", "scipy"])
def test_the_lock_pins_one_version_of_the_numeric_packages_for_every_python(name: str) -> None:
    # scripts/lock's --fork-strategy fewest: the suite tests the same numerics on every Python.
    pins = parse_lock(_lock())
    versions = {
        p.version
        for p in pins
        for python in PYTHONS
        if p.name == name and (p.marker is None or p.marker.evaluate(environment(python, "x86_64")))
    }
    assert len(versions) == 1, versions
