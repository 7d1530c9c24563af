"""Issue 13, hole 2: no entry is sent without its exit plan stored.

Real parts: the paper exchange, the session's Redis and PostgreSQL, the guard as a subprocess, and
the trader's own entry path (`Trader.enter`). Redis refuses writes while it still answers reads
(made a replica of a master that does not exist: `READONLY` on every write), so the guard's lease
stays readable and the entry gate allows the entry: only the plan cannot be stored. The verdict
comes from the exchange (no order with the entry's client id, no position) and Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.integration.feed.conftest import FeedProcess, wait_for_log
from tests.integration.guard.conftest import position
from tests.integration.trader.test_entry_gate import (
    MINUTE_MS,
    candidate,
    entry_id,
    exchange,
    exchange_order,
    trader_of,
)
from tests.paper_exchange_fixture import PaperExchangeProcess
from tests.services import RedisServer, free_port

pytestmark = pytest.mark.slow


def test_no_entry_is_sent_when_its_exit_plan_cannot_be_stored(
    px: PaperExchangeProcess,
    start_guard: Callable[..., FeedProcess],
    redis_instance: RedisServer,
    database_dsn: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="slt.trader")
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    guard = start_guard(guard={"trader_silent_after_s": 600.0, "lease_ttl_s": 60.0})
    wait_for_log(guard, "guard_lease_granted", 1, 20.0)

    async def scenario() -> None:
        admin = aioredis.from_url(redis_instance.url)
        async with trader_of(px, redis_instance, run_dir, database_dsn, tmp_path) as trader:
            try:
                await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
                await trader.enter(await candidate(px, "BTCUSDT", "BUY"), MINUTE_MS, (), 1)
            finally:
                await admin.execute_command("REPLICAOF", "NO", "ONE")
                await admin.aclose()
            cid = entry_id("BTCUSDT", "BUY")
            assert await exchange(exchange_order, px, "BTCUSDT", cid) is None
            assert await exchange(position, px, "BTCUSDT") == 0
            unstored = [
                r.getMessage() for r in caplog.records if "exit_plan_unstored" in r.getMessage()
            ]
            assert unstored and "action=entry_not_sent" in unstored[0], unstored
            intent = await trader.recorder.db.load_order_intent(cid)
            assert intent is not None and intent.status == "rejected"
            assert intent.detail == "exit_plan_unstored"
            assert cid not in await trader.cache.get_fields(trader.cache.keys.exit_plans())

    asyncio.run(scenario())
