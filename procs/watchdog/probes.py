"""Health probes of the services the stack depends on: Redis, PostgreSQL and the exchange.

The watchdog reports what they say (degraded / recovered) and never restarts anything for them
(DESIGN-RULES 5: readiness problems mean degraded mode and alerts, not restarts). Each probe has
its own deadline; a failure of any kind is an answer ("<ErrorClass>: <message>"), never a raise.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import aiohttp
import asyncpg  # type: ignore[import-untyped]

from shared.cache import Cache
from shared.config import Config
from shared.stack import database_user


async def probe_services(
    cfg: Config, cache: Cache, session: aiohttp.ClientSession
) -> dict[str, str]:
    """Probe Redis, PostgreSQL and the exchange concurrently; return {service: error or ""}."""
    pg = cfg.postgres
    dsn = pg.dsn or (
        f"postgresql://{os.environ.get('SLT_PG_USER') or database_user()}"
        f"@127.0.0.1:{pg.private_port}/{pg.database}"
    )

    async def redis() -> None:
        await cache.ping()

    async def postgres() -> None:
        conn = await asyncpg.connect(dsn, timeout=pg.command_timeout_s)
        try:
            await conn.fetchval("SELECT 1", timeout=pg.command_timeout_s)
        finally:
            await conn.close(timeout=pg.command_timeout_s)

    async def exchange() -> None:
        timeout = aiohttp.ClientTimeout(total=cfg.exchange.request_timeout_s)
        url = f"{cfg.exchange.rest_url.rstrip('/')}/fapi/v1/ping"
        async with session.get(url, timeout=timeout) as reply:
            if reply.status != 200:
                raise aiohttp.ClientResponseError(reply.request_info, (), status=reply.status)

    async def outcome(probe: Callable[[], Awaitable[None]]) -> str:
        try:  # each probe has its own deadline; this one bounds connect plus query plus close
            async with asyncio.timeout(deadline_s):
                await probe()
        except Exception as e:  # any failure of a probe means degraded, never a crash of ours
            return f"{type(e).__name__}: {e}"[:200]
        return ""

    deadline_s = (
        max(cfg.redis.socket_timeout_s, 3 * pg.command_timeout_s, cfg.exchange.request_timeout_s)
        + 1
    )
    probes = {"redis": redis, "postgres": postgres, "exchange": exchange}
    results = await asyncio.gather(*(outcome(probe) for probe in probes.values()))
    return dict(zip(probes, results, strict=True))
