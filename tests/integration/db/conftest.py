"""Fixtures for the database tests (a fresh database per test is `database_dsn` in
tests/integration/conftest.py): a short private directory for servers a test stops."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # A short path: unix socket paths are limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="slt-db-") as d:
        os.chmod(d, 0o755)
        yield Path(d)
