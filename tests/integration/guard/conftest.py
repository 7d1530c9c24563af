"""Fixtures of the guard tests: a fresh paper exchange per test (a fresh account), and
`start_guard`, which runs `python -m procs.guard` as a real subprocess pointed at it, with a run
dir in tmp and shrunk intervals. No feed runs unless a test starts one: the guard must stand alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from shared.shm.segment import unlink_segments
from tests.integration.feed.conftest import FeedProcess, feed_overlay
from tests.paper_exchange_fixture import (
    BinanceTestClient,
    PaperExchangeProcess,
    call,
    start_paper_exchange,
    write_overlay,
)
from tests.services import RedisServer

GUARD_FAST = {
    "heartbeat_interval_s": 0.2,
    "check_interval_s": 0.1,
    "reconcile_interval_s": 1.0,
    "feed_silent_after_s": 1.0,
    "marks_stale_after_s": 1.0,
    "trader_silent_after_s": 1.0,
    "rest_poll_interval_s": 0.2,
    "flatten_round_s": 0.2,
    "flatten_max_rounds": 20,
    "call_timeout_s": 5.0,
}


@pytest.fixture
def px(tmp_path: Path) -> Iterator[PaperExchangeProcess]:
    """A paper exchange at --speed 60 with a fresh account."""
    process = start_paper_exchange(tmp_path / "paper", speed=60.0)
    yield process
    process.stop()


@pytest.fixture
def start_guard(
    px: PaperExchangeProcess, redis_instance: RedisServer, tmp_path: Path
) -> Iterator[Callable[..., FeedProcess]]:
    """Return `start(guard=, dms=, exits=, kill_switch=, redis=)` (config tables, each optional):
    a running guard of the
    test's instance; every one started is stopped afterwards."""
    guards: list[FeedProcess] = []
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def start(**sections: dict[str, Any]) -> FeedProcess:
        overlay = feed_overlay(px, redis_instance.url, run_dir)
        overlay["guard"] = {**GUARD_FAST, **sections.get("guard", {})}
        overlay["dms"] = {
            "silence_after_s": 600.0,
            "blind_after_s": 600.0,
            **sections.get("dms", {}),
        }
        for name in ("exits", "kill_switch", "redis"):
            if name in sections:
                overlay[name] = {**overlay.get(name, {}), **sections[name]}
        config = tmp_path / f"guard-{len(guards)}.toml"
        write_overlay(config, overlay)
        guard = FeedProcess(
            config, tmp_path / f"guard-{len(guards)}.log", run_dir, {}, module="procs.guard"
        ).start()
        guards.append(guard)
        return guard

    yield start
    for guard in guards:
        guard.stop()
    if guards:
        unlink_segments(guards[0].instance)


def rest(px: PaperExchangeProcess, method: str, path: str, **params: Any) -> Any:
    """One signed request to the paper exchange; return the decoded reply (asserts 200)."""

    async def use(client: BinanceTestClient) -> Any:
        reply = await client.signed(method, path, params)
        assert reply.status == 200, reply.text
        return reply.body

    return call(px, use)


def control(px: PaperExchangeProcess, path: str, **params: Any) -> Any:
    async def use(client: BinanceTestClient) -> Any:
        reply = await client.control("POST", path, **params)
        assert reply.status == 200, reply.text
        return reply.body

    return call(px, use)


def position(px: PaperExchangeProcess, symbol: str = "BTCUSDT") -> Decimal:
    rows = rest(px, "GET", "/fapi/v3/positionRisk", symbol=symbol)
    return sum((Decimal(r["positionAmt"]) for r in rows), Decimal(0))


def algo_orders(px: PaperExchangeProcess, symbol: str = "BTCUSDT") -> list[dict[str, Any]]:
    return list(rest(px, "GET", "/fapi/v1/openAlgoOrders", symbol=symbol))


def mark(px: PaperExchangeProcess, symbol: str = "BTCUSDT") -> Decimal:
    async def use(client: BinanceTestClient) -> Any:
        return (await client.public("/fapi/v1/premiumIndex", symbol=symbol)).body

    return Decimal(call(px, use)["markPrice"])


def open_position(
    px: PaperExchangeProcess, side: str = "BUY", qty: str = "0.02", symbol: str = "BTCUSDT"
) -> None:
    rest(px, "POST", "/fapi/v1/order", symbol=symbol, side=side, type="MARKET", quantity=qty)


def run(coro: Any) -> Any:
    return asyncio.run(coro)
