"""Issue 13, holes 10 and 2: one symbol's bad number must not take the guard down for every symbol.

The guard runs as a real subprocess against the paper exchange and a real Redis. BTCUSDT's exit
plan in Redis, bound to the order that opened it, carries a NaN stop distance (as a buggy writer
could store it: msgspec decodes "NaN" into a Decimal, and every comparison with it raises
InvalidOperation); ETHUSDT's position has no plan. Since hole 2 the plan is checked before use:
BTCUSDT gets the default plan (`exit_plan_rejected`, then its default stop), no `symbol_error`,
and ETHUSDT stays protected: its stop rests, its exit rules close it, and the guard runs on.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import pytest

from shared.cache import Cache
from shared.schemas import guard as g
from shared.stack import instance_id
from tests.integration.feed.conftest import wait_for_log
from tests.integration.guard.conftest import algo_orders, control, open_position, position, rest
from tests.services import RedisServer, eventually

pytestmark = pytest.mark.slow


def _our_stops(px: object, symbol: str) -> list[dict[str, object]]:
    return [o for o in algo_orders(px, symbol) if str(o["clientAlgoId"]).startswith("slt-")]  # type: ignore[arg-type]


def _store_plan(redis: RedisServer, instance: str, plan: g.ExitPlan) -> None:
    async def store() -> None:
        async with Cache(redis.url, instance, 2.0) as cache:
            await cache.set_field(cache.keys.exit_plans(), plan.client_id, g.encode(plan))

    asyncio.run(store())


def test_a_symbol_with_a_nan_plan_gets_the_default_stop_and_the_others_stay_protected(
    px, start_guard, redis_instance, tmp_path: Path
):
    cid = "slt-BTCUSDT_1_B-entry-0"
    rest(
        px,
        "POST",
        "/fapi/v1/order",
        symbol="BTCUSDT",
        side="BUY",
        type="MARKET",
        quantity="0.02",
        newClientOrderId=cid,
    )
    open_position(px, "BUY", "1", symbol="ETHUSDT")
    bad = g.ExitPlan(
        symbol="BTCUSDT",
        client_id=cid,
        signal_id="BTCUSDT_1_B",
        side="BUY",
        stop_loss_pct=Decimal("NaN"),
        created_ms=time.time_ns() // 1_000_000,
    )
    _store_plan(redis_instance, instance_id(tmp_path / "run"), bad)
    guard = start_guard()
    # ETHUSDT: protected by a resting stop; BTCUSDT too, with the default plan's stop (2 %).
    eventually(lambda: len(_our_stops(px, "ETHUSDT")) == 1, 20.0, 0.3)  # polls cost weight
    btc = eventually(lambda: _our_stops(px, "BTCUSDT"), 20.0, 0.3)
    wait_for_log(guard, "guard_started", timeout_s=10.0)
    btc_entry = Decimal(rest(px, "GET", "/fapi/v3/positionRisk", symbol="BTCUSDT")[0]["entryPrice"])
    trigger = Decimal(btc[0]["triggerPrice"])  # type: ignore[index]
    assert btc_entry * Decimal("0.98") <= trigger < btc_entry * Decimal("0.981")
    rejected = eventually(lambda: guard.log_events("exit_plan_rejected"), 10.0)
    assert "symbol=BTCUSDT" in rejected[0] and "NaN" in rejected[0], rejected
    # ETHUSDT's exit rules still work: through its take-profit (default plan: 4 %) it is reduced.
    entry = Decimal(rest(px, "GET", "/fapi/v3/positionRisk", symbol="ETHUSDT")[0]["entryPrice"])
    control(px, "/_sim/price", symbol="ETHUSDT", price=str((entry * Decimal("1.06")).quantize(1)))
    sent = eventually(
        lambda: [line for line in guard.log_events("exit_sent") if "symbol=ETHUSDT" in line], 20.0
    )
    assert "reason=take_profit" in sent[0] and "status=FILLED" in sent[0], sent
    assert position(px, "ETHUSDT") < 1
    time.sleep(1.5)  # more full reconciles and checks
    assert guard.is_running(), guard.log_text()[-3000:]
    assert not guard.log_events("symbol_error")
    assert position(px, "BTCUSDT") == Decimal("0.02")  # protected, not closed
