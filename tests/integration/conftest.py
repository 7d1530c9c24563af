"""Fixtures for the shared-memory and bus tests: a unique instance id whose segments are removed
after the test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shared.segment import unlink_segments


@pytest.fixture
def instance() -> Iterator[str]:
    instance_id = "t" + uuid.uuid4().hex[:12]
    yield instance_id
    unlink_segments(instance_id)
