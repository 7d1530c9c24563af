"""The Dockerfile builds the image a user runs, from the lock, on a fresh Debian image.

Needs a container engine: skipped with the reason where `docker info` cannot reach one (the
machine this project is developed on has the client only)."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from tests.e2e.conftest import REPO_ROOT


def _engine_missing() -> str:
    """Return why no image can be built here, or "" when a Docker engine answers."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    proc = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return f"no container engine reachable: {first[:160]}"
    return ""


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_dockerfile_builds_from_the_lock_and_the_image_holds_the_locked_versions() -> None:
    reason = _engine_missing()
    if reason:
        pytest.skip(reason)
    tag = f"slt-test-{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(["docker", "build", "-t", tag, str(REPO_ROOT)], check=True, timeout=1700)
        # The image's venv must match the lock exactly: pip check passes and msgspec (the package
        # whose float broke a fresh clone) is the locked version.
        locked = next(
            line.split("==")[1].split()[0]
            for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()
            if line.startswith("msgspec==")
        )
        script = (
            ".venv/bin/python -m pip check && "
            ".venv/bin/python -c 'import importlib.metadata as m; print(m.version(\"msgspec\"))'"
        )
        proc = subprocess.run(
            ["docker", "run", "--rm", tag, "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == locked
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)
