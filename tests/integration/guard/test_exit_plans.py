"""Issue 13, hole 2: an exit plan is used only for the fill it was written for, its levels derived
from that fill and checked, else the default plan; and it is deleted when the position closes.

Real parts: the paper exchange, the session's Redis, the guard as a subprocess. Plans are stored
as the trader stores them (Redis hash `Keys.exit_plans`), each also carrying a `stop_price` level
as the plans of before did (a decoder that knows only distances ignores it). Verdicts come from
the exchange (positions, resting stops) and Redis.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from shared.cache import Cache
from shared.stack import instance_id
from tests.integration.feed.conftest import wait_for_log
from tests.integration.guard.conftest import algo_orders, mark, position, rest
from tests.services import RedisServer, eventually

pytestmark = pytest.mark.slow


def _our_stops(px: Any, symbol: str = "BTCUSDT") -> list[dict[str, Any]]:
    return [o for o in algo_orders(px, symbol) if str(o["clientAlgoId"]).startswith("slt-")]


def _plans(redis: RedisServer, run_dir: Path) -> dict[str, bytes]:
    async def read() -> dict[str, bytes]:
        async with Cache(redis.url, instance_id(run_dir), 2.0) as cache:
            return await cache.get_fields(cache.keys.exit_plans())

    return asyncio.run(read())


def _store_plan(redis: RedisServer, run_dir: Path, field: str, **plan: Any) -> None:
    """Store a plan as the trader does (msgpack; Decimals as strings)."""
    body = {"v": 2, "created_ms": time.time_ns() // 1_000_000, **plan}

    async def store() -> None:
        async with Cache(redis.url, instance_id(run_dir), 2.0) as cache:
            await cache.set_field(cache.keys.exit_plans(), field, msgspec.msgpack.encode(body))

    asyncio.run(store())


def _order(px: Any, symbol: str, side: str, qty: str, client_id: str = "", **extra: Any) -> None:
    params = {"symbol": symbol, "side": side, "type": "MARKET", "quantity": qty, **extra}
    if client_id:
        params["newClientOrderId"] = client_id
    rest(px, "POST", "/fapi/v1/order", **params)


def _entry(px: Any, symbol: str = "BTCUSDT") -> Decimal:
    return Decimal(rest(px, "GET", "/fapi/v3/positionRisk", symbol=symbol)[0]["entryPrice"])


def _rejected(guard: Any, symbol: str) -> list[str]:
    return [x for x in guard.log_events("exit_plan_rejected") if f"symbol={symbol} " in x + " "]


def test_a_stale_plan_is_not_used_for_a_position_opened_by_hand(
    px, start_guard, redis_instance, tmp_path: Path
):
    run_dir = tmp_path / "run"
    # An earlier entry of the trader filled and closed while no guard ran; its plan stayed.
    cid = "slt-BTCUSDT_1_B-entry-0"
    _order(px, "BTCUSDT", "BUY", "0.02", cid)
    _order(px, "BTCUSDT", "SELL", "0.02", reduceOnly="true")
    assert position(px) == 0
    stale_stop = (mark(px) * Decimal("1.05")).quantize(Decimal(1))  # set when prices were higher
    guard = start_guard()
    wait_for_log(guard, "guard_started", timeout_s=15.0)
    _store_plan(
        redis_instance,
        run_dir,
        "BTCUSDT",
        symbol="BTCUSDT",
        client_id=cid,
        signal_id="BTCUSDT_1_B",
        side="BUY",
        stop_price=str(stale_stop),
        stop_loss_pct="1",
        take_profit_pct="3",
    )
    _order(px, "BTCUSDT", "BUY", "0.02")  # by hand: no plan is this position's
    entry = _entry(px)
    eventually(lambda: _our_stops(px) or position(px) == 0, 15.0, 0.3)
    time.sleep(1.5)  # reconciles and exit checks: nothing closes it
    stops = _our_stops(px)
    assert position(px) == Decimal("0.02"), guard.log_text()[-3000:]
    trigger = Decimal(stops[0]["triggerPrice"])
    assert entry * Decimal("0.98") <= trigger < entry * Decimal("0.981")  # the default plan's 2 %
    assert [Decimal(s["triggerPrice"]) for s in _our_stops(px)] == [trigger]
    assert "no plan bound to the opening fill" in _rejected(guard, "BTCUSDT")[0]
    assert not guard.log_events("exit_sent")


def test_a_plan_with_its_stop_on_the_wrong_side_or_past_liquidation_gets_the_default(
    px, start_guard, redis_instance, tmp_path: Path
):
    run_dir = tmp_path / "run"
    redis = redis_instance
    btc, eth = "slt-BTCUSDT_2_B-entry-0", "slt-ETHUSDT_2_B-entry-0"
    _order(px, "BTCUSDT", "BUY", "0.02", btc)
    rest(px, "POST", "/fapi/v1/marginType", symbol="ETHUSDT", marginType="ISOLATED")
    rest(px, "POST", "/fapi/v1/leverage", symbol="ETHUSDT", leverage=20)
    _order(px, "ETHUSDT", "BUY", "1", eth)
    btc_entry, eth_entry = _entry(px, "BTCUSDT"), _entry(px, "ETHUSDT")
    liquidation = Decimal(
        rest(px, "GET", "/fapi/v3/positionRisk", symbol="ETHUSDT")[0]["liquidationPrice"]
    )
    assert eth_entry * Decimal("0.9") < liquidation < eth_entry * Decimal("0.98")
    # BTCUSDT: a stop above a long's entry (would trigger at once: -2021 and an instant close).
    _store_plan(
        redis,
        run_dir,
        btc,
        symbol="BTCUSDT",
        client_id=btc,
        signal_id="BTCUSDT_2_B",
        side="BUY",
        stop_price=str((btc_entry * Decimal("1.01")).quantize(Decimal(1))),
        stop_loss_pct="-1",
    )
    # ETHUSDT: a stop 10 % away, past the 20x position's liquidation price.
    _store_plan(
        redis,
        run_dir,
        eth,
        symbol="ETHUSDT",
        client_id=eth,
        signal_id="ETHUSDT_2_B",
        side="BUY",
        stop_price=str((eth_entry * Decimal("0.9")).quantize(Decimal("0.01"))),
        stop_loss_pct="10",
    )
    guard = start_guard()
    eventually(lambda: _our_stops(px, "BTCUSDT") or position(px, "BTCUSDT") == 0, 15.0, 0.3)
    eventually(lambda: _our_stops(px, "ETHUSDT"), 15.0, 0.3)
    time.sleep(1.5)
    assert position(px, "BTCUSDT") == Decimal("0.02"), guard.log_text()[-3000:]
    assert position(px, "ETHUSDT") == Decimal("1")
    btc_stops, eth_stops = _our_stops(px, "BTCUSDT"), _our_stops(px, "ETHUSDT")
    btc_trigger = Decimal(btc_stops[0]["triggerPrice"])
    eth_trigger = Decimal(eth_stops[0]["triggerPrice"])
    assert btc_entry * Decimal("0.98") <= btc_trigger < btc_entry * Decimal("0.981")
    assert liquidation < eth_trigger and eth_entry * Decimal("0.98") <= eth_trigger < eth_entry
    assert "stop distance -1% is not within (0, 100)" in _rejected(guard, "BTCUSDT")[0]
    assert "lies beyond the liquidation price" in _rejected(guard, "ETHUSDT")[0]


def test_the_trader_plan_protects_its_own_fill_and_is_deleted_when_the_position_closes(
    px, start_guard, redis_instance, tmp_path: Path
):
    run_dir = tmp_path / "run"
    redis = redis_instance
    guard = start_guard()
    wait_for_log(guard, "guard_started", timeout_s=15.0)
    cid = "slt-BTCUSDT_3_B-entry-0"
    _store_plan(
        redis,
        run_dir,
        cid,
        symbol="BTCUSDT",
        client_id=cid,
        signal_id="BTCUSDT_3_B",
        side="BUY",
        stop_price="1",
        stop_loss_pct="1",
        take_profit_pct="3",
    )
    _order(px, "BTCUSDT", "BUY", "0.02", cid)
    entry = _entry(px)
    stops = eventually(lambda: _our_stops(px), 15.0, 0.3)
    trigger = Decimal(stops[0]["triggerPrice"])
    assert entry * Decimal("0.99") <= trigger < entry * Decimal("0.991")  # 1 % from the fill
    assert "source=trader_plan" in guard.log_events("position_protected")[0]
    assert cid in _plans(redis, run_dir)
    _order(px, "BTCUSDT", "SELL", "0.02", reduceOnly="true")  # closed (by hand, or a stop)
    eventually(lambda: cid not in _plans(redis, run_dir), 15.0, 0.3)
    eventually(lambda: not _our_stops(px), 15.0, 0.3)
    assert guard.log_events("exit_plan_removed")
