"""The trader sends an entry only while the guard demonstrably protects, and only while entries
are not halted, both checked right before each send (issue 13, holes 1 and 11).

Real parts: a fresh paper exchange, the session's Redis and PostgreSQL, and the guard as a real
subprocess (`python -m procs.guard`, stopped with SIGTERM as `supervisorctl stop guard` does, or
killed with -9); the trader's own entry path (`Trader.enter`) runs in the test's event loop with
the production client, cache and recorder. Every verdict comes from the paper exchange's truth:
the position, and the order looked up by its client id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from procs.trader.learning import ModelHolder
from procs.trader.logic.signals import Candidate
from procs.trader.outbox import Recorder
from procs.trader.trading import Trader, signal_id
from shared import log
from shared.cache import Cache
from shared.config import load_config
from shared.core.ids import client_order_id
from shared.exchange.rest import ExchangeClient, load_specs
from shared.stack import instance_id
from shared.store.db import connect_until_up
from shared.store.halt import halt_path, halted, save_halt
from tests.integration.feed.conftest import FeedProcess, feed_overlay, wait_for_log
from tests.integration.guard.conftest import algo_orders, mark, position, rest
from tests.paper_exchange_fixture import PaperExchangeProcess
from tests.services import RedisServer

pytestmark = pytest.mark.slow

# The guard in these tests: no trader heartbeat exists, so its trader-silence halt is pushed out
# of the way; a 3 s lease so a killed guard's lease runs out within the test.
GUARD = {"trader_silent_after_s": 600.0, "lease_ttl_s": 3.0}
MINUTE_MS = 29_000_000 * 60_000


async def until(predicate: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    """Wait (without blocking the loop) until `predicate` holds; fail after timeout_s."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def trader_of(
    px: PaperExchangeProcess, redis: RedisServer, run_dir: Path, dsn: str, tmp_path: Path
) -> AsyncIterator[Trader]:
    """The production Trader of the guard's stack (same run dir, so same halt file and Redis
    keys), on the paper exchange, PostgreSQL and Redis."""
    overlay = feed_overlay(px, redis.url, run_dir)
    cfg = load_config("paper", overlay=overlay, env={})
    logger = log.EventLogger("trader")
    db = await connect_until_up(dsn, 5.0, logger, 0.5)
    cache = Cache(redis.url, instance_id(run_dir), 0.25)
    try:
        recorder = Recorder(db, cache, logger, tmp_path / "outbox.journal")
        async with ExchangeClient(cfg.exchange, cache, logger=logger) as client:
            specs = await load_specs(client, logger, 0.5)
            models = ModelHolder(run_dir, logger)
            yield Trader(cfg, client, specs, recorder, cache, models, logger)
    finally:
        await cache.close()
        await db.close()


async def candidate(px: PaperExchangeProcess, symbol: str, side: str) -> Candidate:
    """A confident candidate at the symbol's mark price."""
    return Candidate(symbol, side, 0.8, float(await exchange(mark, px, symbol)))


def entry_id(symbol: str, side: str) -> str:
    return client_order_id(signal_id(symbol, MINUTE_MS, side), "entry", 0)


def exchange_order(px: PaperExchangeProcess, symbol: str, client_id: str) -> Any:
    """The order with this client id at the exchange, or None when it never got there."""
    orders = rest(px, "GET", "/fapi/v1/allOrders", symbol=symbol)
    return next((o for o in orders if o["clientOrderId"] == client_id), None)


async def exchange(fn: Callable[..., Any], *args: Any) -> Any:
    """Ask the paper exchange with the test's own client (off the loop: it runs its own)."""
    return await asyncio.to_thread(fn, *args)


async def stops_resting(px: PaperExchangeProcess, symbol: str, count: int) -> bool:
    return len(await exchange(algo_orders, px, symbol)) == count


async def lease_gone(trader: Trader) -> bool:
    return await trader.cache.read_guard_lease() is None


def blocked(caplog: pytest.LogCaptureFixture, symbol: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if " entry_blocked " in r.getMessage() and f"symbol={symbol} " in r.getMessage()
    ]


def test_no_entry_is_sent_while_the_guard_is_not_protecting(
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

    async def scenario() -> None:
        async with trader_of(px, redis_instance, run_dir, database_dsn, tmp_path) as trader:
            # No guard has run yet: nothing would protect the fill.
            await trader.enter(await candidate(px, "BTCUSDT", "BUY"), MINUTE_MS, (), 1)
            assert await exchange(position, px, "BTCUSDT") == 0
            assert await exchange(exchange_order, px, "BTCUSDT", entry_id("BTCUSDT", "BUY")) is None
            assert "reason=guard_lease_missing" in blocked(caplog, "BTCUSDT")[0]

            # The guard runs and has reconciled: the entry goes out and is protected.
            guard = start_guard(guard=GUARD)
            await asyncio.to_thread(wait_for_log, guard, "guard_lease_granted", 1, 20.0)
            await trader.enter(await candidate(px, "BTCUSDT", "BUY"), MINUTE_MS, (), 1)
            assert await exchange(position, px, "BTCUSDT") > 0
            await until(lambda: stops_resting(px, "BTCUSDT", 1), 15.0)

            # `supervisorctl stop guard` (SIGTERM): the lease goes with it, at once.
            guard.stop()
            assert guard.process is not None and guard.process.returncode == 0
            assert guard.log_events("guard_lease_revoked")
            await trader.enter(await candidate(px, "ETHUSDT", "SELL"), MINUTE_MS, (), 1)
            assert await exchange(position, px, "ETHUSDT") == 0
            assert (
                await exchange(exchange_order, px, "ETHUSDT", entry_id("ETHUSDT", "SELL")) is None
            )
            assert "reason=guard_lease_missing" in blocked(caplog, "ETHUSDT")[0]

            # A guard killed with -9 revokes nothing: its lease runs out by its TTL (3 s).
            again = start_guard(guard=GUARD)
            await asyncio.to_thread(wait_for_log, again, "guard_lease_granted", 1, 20.0)
            again.kill()
            await until(lambda: lease_gone(trader), 10.0)
            await trader.enter(await candidate(px, "ETHUSDT", "SELL"), MINUTE_MS + 60_000, (), 1)
            assert await exchange(position, px, "ETHUSDT") == 0
            assert len(blocked(caplog, "ETHUSDT")) == 2
            assert trader.stats["entries_blocked"] == 3
            assert trader.stats["entries"] == 1

    asyncio.run(scenario())


def test_halt_set_after_the_decision_stops_the_entries_still_to_be_sent(
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
    guard = start_guard(guard={"trader_silent_after_s": 600.0})
    wait_for_log(guard, "guard_started", 1, 20.0)  # its lease is granted before it says so

    async def scenario() -> None:
        async with trader_of(px, redis_instance, run_dir, database_dsn, tmp_path) as trader:
            # One decision, two entries: the first goes out.
            await trader.enter(await candidate(px, "BTCUSDT", "BUY"), MINUTE_MS, (), 1)
            assert await exchange(position, px, "BTCUSDT") > 0

            # The kill switch halts while the second entry is being prepared (its leverage
            # round trip): the send that follows must see it.
            prepare = trader._prepare

            async def prepare_then_halt(symbol: str, leverage: int) -> None:
                await prepare(symbol, leverage)
                save_halt(halt_path(run_dir), halted("kill_switch_drawdown", 1))

            trader._prepare = prepare_then_halt  # type: ignore[method-assign]
            await trader.enter(await candidate(px, "ETHUSDT", "SELL"), MINUTE_MS, (), 1)
            assert await exchange(position, px, "ETHUSDT") == 0
            cid = entry_id("ETHUSDT", "SELL")
            assert await exchange(exchange_order, px, "ETHUSDT", cid) is None
            assert "reason=halted" in blocked(caplog, "ETHUSDT")[0]
            intent = await trader.recorder.db.load_order_intent(cid)
            assert intent is not None and intent.status == "rejected"
            assert intent.detail == "entry_blocked: halted"
            plans = await trader.cache.get_fields(trader.cache.keys.exit_plans())
            assert cid not in plans  # withdrawn: the entry was never sent

    asyncio.run(scenario())
