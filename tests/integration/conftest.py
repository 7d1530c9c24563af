"""Fixtures for the integration tests: a unique instance id whose shared-memory segments are
removed after the test, and a fresh PostgreSQL database per test on the session's private server
(dropped after it), so each test starts from an empty schema."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from shared.shm.segment import unlink_segments
from tests.services import PostgresServer


@pytest.fixture
def instance() -> Iterator[str]:
    instance_id = "t" + uuid.uuid4().hex[:12]
    yield instance_id
    unlink_segments(instance_id)


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(sql, timeout=30)
    finally:
        await conn.close()


@pytest.fixture
def database_dsn(postgres_instance: PostgresServer) -> Iterator[str]:
    name = "t" + uuid.uuid4().hex[:12]
    asyncio.run(_admin(postgres_instance.dsn, f'CREATE DATABASE "{name}"'))
    yield f"postgresql://{postgres_instance.user}@127.0.0.1:{postgres_instance.port}/{name}"
    asyncio.run(_admin(postgres_instance.dsn, f'DROP DATABASE "{name}" WITH (FORCE)'))
