"""Shared fixtures: private Redis and PostgreSQL (real servers, free ports, temp dirs),
strict numpy, asyncio debug mode. No test touches a user's running databases or the repo's run/
directory."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.services import (  # noqa: E402
    PostgresServer,
    RedisServer,
    postgres_server,
    redis_server,
)

numpy.seterr(all="raise")
os.environ.setdefault("PYTHONASYNCIODEBUG", "1")


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    # A short path: unix socket paths are limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="slt-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


@pytest.fixture(scope="session")
def redis_instance(services_dir: Path) -> Iterator[RedisServer]:
    with redis_server(services_dir) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_instance(services_dir: Path) -> Iterator[PostgresServer]:
    with postgres_server(services_dir) as server:
        yield server
