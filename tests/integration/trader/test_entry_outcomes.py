"""An entry's outcome is never guessed, a symbol with a position is never added to, and trades done
while the trader was away are recorded (issue 13, hole 7).

Real parts: a fresh paper exchange at speed 1 (its `/_sim/latency` fault makes the entry's reply
and every look-up arrive after the client's deadline, while the order itself executes), the
session's
Redis and PostgreSQL, the guard as a real subprocess (its lease lets entries out); the trader's
own code (`Trader.enter`, `settle_unknown`, `reconcile`) runs in the test's event loop with the
production client, cache and recorder. Verdicts come from the exchange and from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from procs.trader.learning import ModelHolder
from procs.trader.outbox import Recorder
from procs.trader.trading import Trader, signal_id
from shared import log
from shared.cache import Cache
from shared.config import load_config
from shared.core.ids import client_order_id
from shared.exchange.rest import ExchangeClient, load_specs
from shared.stack import instance_id
from shared.store.db import connect_until_up
from tests.integration.feed.conftest import FeedProcess, feed_overlay, wait_for_log
from tests.integration.guard.conftest import control, mark, open_position, position, rest
from tests.integration.trader.test_entry_gate import (
    GUARD,
    MINUTE_MS,
    candidate,
    entry_id,
    exchange,
    exchange_order,
    until,
)
from tests.paper_exchange_fixture import PaperExchangeProcess, start_paper_exchange
from tests.services import RedisServer

pytestmark = pytest.mark.slow

TIMEOUT_S = 1.0  # the trader's REST deadline in these tests
LATE_MS = 2_500  # the paper exchange's reply delay: past the deadline, so the outcome is unknown


@pytest.fixture
def px(tmp_path: Path) -> Iterator[PaperExchangeProcess]:
    """A paper exchange at speed 1 with a fresh account. At speed 60 its clock outruns the
    client's synced offset within ~0.1 s, so a send could be refused (-1021) instead of executed,
    and its late refusal would look just like a late fill."""
    process = start_paper_exchange(tmp_path / "paper", speed=1.0)
    yield process
    process.stop()


@contextlib.asynccontextmanager
async def trader_of(
    px: PaperExchangeProcess, redis: RedisServer, run_dir: Path, dsn: str, tmp_path: Path
) -> AsyncIterator[Trader]:
    """The production Trader on the paper exchange (a 1 s REST deadline), PostgreSQL, Redis."""
    overlay = feed_overlay(px, redis.url, run_dir)
    overlay["exchange"] = {**overlay["exchange"], "request_timeout_s": TIMEOUT_S}
    cfg = load_config("paper", overlay=overlay, env={})
    logger = log.EventLogger("trader")
    db = await connect_until_up(dsn, 5.0, logger, 0.5)
    cache = Cache(redis.url, instance_id(run_dir), 0.25)
    try:
        recorder = Recorder(db, cache, logger, tmp_path / "outbox.journal")
        async with ExchangeClient(cfg.exchange, cache, logger=logger) as client:
            specs = await load_specs(client, logger, 0.5)
            yield Trader(cfg, client, specs, recorder, cache, ModelHolder(run_dir, logger), logger)
    finally:
        await cache.close()
        await db.close()


def lease_held(trader: Trader) -> Callable[[], Awaitable[bool]]:
    async def held() -> bool:
        return await trader.cache.read_guard_lease() is not None

    return held


def entry_id_at(symbol: str, side: str, minute_ms: int) -> str:
    return client_order_id(signal_id(symbol, minute_ms, side), "entry", 0)


def test_unknown_entry_is_queried_again_and_settled_as_filled_with_its_trade(
    px: PaperExchangeProcess,
    start_guard: Callable[..., FeedProcess],
    redis_instance: RedisServer,
    database_dsn: str,
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    guard = start_guard(guard=GUARD)
    wait_for_log(guard, "guard_lease_granted", 1, 20.0)

    async def scenario() -> None:
        async with trader_of(px, redis_instance, run_dir, database_dsn, tmp_path) as trader:
            db = trader.recorder.db
            price = await exchange(mark, px, "BTCUSDT")
            await asyncio.to_thread(control, px, "/_sim/price", symbol="BTCUSDT", price=price)
            # The entry executes, but its reply and every look-up come after the deadline.
            prepare = trader._prepare

            async def prepare_then_slow_down(symbol: str, leverage: int) -> None:
                await prepare(symbol, leverage)
                await asyncio.to_thread(control, px, "/_sim/latency", ms=LATE_MS)

            trader._prepare = prepare_then_slow_down  # type: ignore[method-assign]
            await trader.enter(await candidate(px, "BTCUSDT", "BUY"), MINUTE_MS, (), 1)
            await asyncio.to_thread(control, px, "/_sim/latency", ms=0)
            trader._prepare = prepare  # type: ignore[method-assign]
            cid = entry_id("BTCUSDT", "BUY")
            sid = signal_id("BTCUSDT", MINUTE_MS, "BUY")
            order = await exchange(exchange_order, px, "BTCUSDT", cid)
            assert order is not None and order["status"] == "FILLED", order
            held = await exchange(position, px, "BTCUSDT")
            assert held == Decimal(order["executedQty"])  # the price is pinned: no stop fires
            intent = await db.load_order_intent(cid)
            assert intent is not None and intent.status == "unknown", intent
            assert await db.load_trade(sid) is None

            # While unknown, the symbol is not entered again (the next minute's signal), with
            # the guard protecting again (the slow replies cost it its lease meanwhile).
            await until(lease_held(trader), 20.0)
            await trader.enter(await candidate(px, "BTCUSDT", "BUY"), MINUTE_MS + 60_000, (), 1)
            assert await exchange(position, px, "BTCUSDT") == held
            later = entry_id_at("BTCUSDT", "BUY", MINUTE_MS + 60_000)
            assert await exchange(exchange_order, px, "BTCUSDT", later) is None

            # Asked again each position check until settled: filled, with its trade record,
            # from the exchange's order.
            async def settled() -> bool:
                await trader.settle_unknown()
                found = await db.load_order_intent(cid)
                return found is not None and found.status != "unknown"

            await until(settled, 20.0)
            intent = await db.load_order_intent(cid)
            assert intent is not None and intent.status == "filled", intent
            trade = await db.load_trade(sid)
            assert trade is not None and not trade.is_closed
            assert trade.quantity == held == Decimal(order["executedQty"])
            assert trade.entry_price == Decimal(order["avgPrice"])
            assert "BTCUSDT" in trader.open_trades

    asyncio.run(scenario())


def test_a_symbol_with_an_exchange_position_is_never_entered(
    px: PaperExchangeProcess,
    start_guard: Callable[..., FeedProcess],
    redis_instance: RedisServer,
    database_dsn: str,
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    guard = start_guard(guard=GUARD)
    wait_for_log(guard, "guard_lease_granted", 1, 20.0)

    async def scenario() -> None:
        async with trader_of(px, redis_instance, run_dir, database_dsn, tmp_path) as trader:
            # A position opened by hand (not the trader's): never entered, in either direction.
            await exchange(open_position, px, "SELL", "0.5", "ETHUSDT")
            for side in ("SELL", "BUY"):
                await trader.enter(await candidate(px, "ETHUSDT", side), MINUTE_MS, (), 1)
                assert (
                    await exchange(exchange_order, px, "ETHUSDT", entry_id("ETHUSDT", side)) is None
                )
            assert await exchange(position, px, "ETHUSDT") == Decimal("-0.5")
            await trader.refresh_account()  # and the decision leaves it out before that
            assert "ETHUSDT" in trader.busy_symbols()

    asyncio.run(scenario())


def test_trades_done_while_the_trader_was_away_are_rebuilt_from_fills(
    px: PaperExchangeProcess, redis_instance: RedisServer, database_dsn: str, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    # While no trader runs: a short opened and closed in two steps, and a long still open.
    open_position(px, "SELL", "0.3", "ETHUSDT")
    open_position(px, "BUY", "0.1", "ETHUSDT")
    open_position(px, "BUY", "0.2", "ETHUSDT")
    open_position(px, "BUY", "0.02", "BTCUSDT")
    fills = rest(px, "GET", "/fapi/v1/userTrades", symbol="ETHUSDT")
    assert len(fills) == 3

    def vwap(rows: list[dict[str, str]]) -> Decimal:
        qty = sum(Decimal(f["qty"]) for f in rows)
        return sum(Decimal(f["price"]) * Decimal(f["qty"]) for f in rows) / qty

    async def scenario() -> None:
        for _start in range(2):  # a second start records nothing twice
            async with trader_of(px, redis_instance, run_dir, database_dsn, tmp_path) as trader:
                await trader.reconcile()
                rows = [t for t in await trader.recorder.db.trade_samples(100) if not t.is_virtual]
                assert len(rows) == 1, rows
                t = rows[0]
                assert (t.symbol, t.side, t.quantity) == ("ETHUSDT", "SELL", Decimal("0.3"))
                assert t.is_closed and t.exit_reason == "while_trader_away"
                tick = trader.specs["ETHUSDT"].tick_size / 100
                assert t.entry_price == vwap(fills[:1]).quantize(tick)
                assert t.exit_price == vwap(fills[1:]).quantize(tick)
                assert t.gross_pnl_usdt == sum(Decimal(f["realizedPnl"]) for f in fills)
                assert t.fees_usdt == sum(Decimal(f["commission"]) for f in fills)
                assert t.entry_ms == fills[0]["time"] and t.exit_ms == fills[2]["time"]
                # The open long is the exchange's: never entered while it is there.
                assert "BTCUSDT" in trader.busy_symbols()

    asyncio.run(scenario())
