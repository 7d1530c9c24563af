"""The private service fixtures start real servers that answer, on ports no user's server uses."""

from __future__ import annotations

import asyncio

import asyncpg
import redis

from tests.services import PostgresServer, RedisServer


def test_private_redis_answers_and_persists_with_append_only(redis_instance: RedisServer) -> None:
    client = redis.Redis.from_url(redis_instance.url, socket_timeout=2)
    try:
        client.set("slt:probe", "1")
        assert client.get("slt:probe") == b"1"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert redis_instance.port != 6379
    finally:
        client.close()


def test_private_postgres_accepts_queries(postgres_instance: PostgresServer) -> None:
    async def probe() -> int:
        conn = await asyncpg.connect(postgres_instance.dsn, timeout=10)
        try:
            value: int = await conn.fetchval("SELECT 40 + 2")
            return value
        finally:
            await conn.close()

    assert asyncio.run(probe()) == 42
    assert postgres_instance.port != 5432
