"""The guard trails its stop at the paper exchange, which refuses a second closePosition stop in
one direction (-4130) exactly as Binance does, and a watcher polling the exchange's own REST all
the while finds, at every poll, a resting stop covering the whole position, and never two
closePosition stops in one direction (which Binance would not hold). Also when the exchange fails
the move's placements half-way (/_sim/http/fail on POST /fapi/v1/algoOrder)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.integration.feed.conftest import wait_for_log
from tests.integration.guard.conftest import algo_orders, control, position, rest
from tests.paper_exchange_fixture import (
    API_KEY,
    BinanceTestClient,
    PaperExchangeProcess,
    call,
    start_paper_exchange,
)
from tests.services import eventually

pytestmark = pytest.mark.slow

SYMBOL = "BTCUSDT"
TRAILING = {  # the stop trails 1 % behind the best mark from 0.5 % in profit; no take-profit
    "trailing_activation_pct": 0.5,
    "trailing_distance_pct": 1.0,
    "take_profit_pct": 50.0,
}
MOVES = {"stop_move_min_ticks": 5, "stop_move_min_interval_s": 0.3}


@dataclass
class Watch:
    polls: int = 0
    violations: list[str] = field(default_factory=list)
    close_triggers: list[Decimal] = field(default_factory=list)  # each new one seen, in order
    bridge_alone: int = 0  # polls where a bridge was the only cover
    seen_ids: set[str] = field(default_factory=set)


def _cover(amount: Decimal, orders: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """Return the closePosition stops on the closing side and whether some order covers all."""
    closing = "SELL" if amount > 0 else "BUY"
    stops = [o for o in orders if o["orderType"] == "STOP_MARKET" and o["side"] == closing]
    closers = [o for o in stops if o["closePosition"] in (True, "true")]
    sized = [
        o
        for o in stops
        if o["reduceOnly"] in (True, "true") and Decimal(o["quantity"]) >= abs(amount)
    ]
    return closers, bool(closers or sized)


@pytest.fixture
def px(tmp_path: Path) -> Iterator[PaperExchangeProcess]:
    """A paper exchange at --speed 1 (a fresh account): the test pins the price, and a reply
    delayed by /_sim/latency must not age a request's timestamp by 60 simulated seconds each."""
    process = start_paper_exchange(tmp_path / "paper", speed=1.0)
    yield process
    process.stop()


WATCH_IP = "127.0.0.2"  # the watcher's own request-weight counter: the guard's is not touched
WATCH_PAUSE_S = 0.025  # openAlgoOrders weighs 1: about 1 500 a minute, within the 2 400


@contextmanager
def watching(px: PaperExchangeProcess) -> Iterator[Watch]:
    """Poll openAlgoOrders (and every tenth time positionRisk) as fast as the rate limit lets,
    over one session from its own address, in a thread of its own."""
    watch, done = Watch(), threading.Event()

    async def poll(client: BinanceTestClient) -> None:
        amount = Decimal(0)
        while not done.is_set():
            if watch.polls % 10 == 0:
                reply = await client.signed("GET", "/fapi/v3/positionRisk", {"symbol": SYMBOL})
                assert reply.status == 200, reply.text
                amount = sum((Decimal(r["positionAmt"]) for r in reply.body), Decimal(0))
            reply = await client.signed("GET", "/fapi/v1/openAlgoOrders", {"symbol": SYMBOL})
            assert reply.status == 200, reply.text
            orders: list[dict[str, Any]] = reply.body
            watch.polls += 1
            watch.seen_ids |= {o["clientAlgoId"] for o in orders}
            if amount != 0:
                closers, is_covered = _cover(amount, orders)
                if not is_covered:
                    watch.violations.append(f"poll {watch.polls}: {amount} uncovered: {orders}")
                if len(closers) > 1:
                    watch.violations.append(f"poll {watch.polls}: 2 closePosition: {closers}")
                if closers:
                    trigger = Decimal(closers[0]["triggerPrice"])
                    if not watch.close_triggers or watch.close_triggers[-1] != trigger:
                        watch.close_triggers.append(trigger)
                elif is_covered:
                    watch.bridge_alone += 1
            await asyncio.sleep(WATCH_PAUSE_S)

    def loop() -> None:
        try:
            call(px, poll, ip=WATCH_IP)
        except BaseException as e:  # reported by the test, not lost in the thread
            watch.violations.append(f"watcher stopped: {e!r}")

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        eventually(lambda: watch.polls > 0 or watch.violations, 10.0)
        yield watch
    finally:
        done.set()
        thread.join(10)


def http_fail(px: PaperExchangeProcess, **params: Any) -> None:
    """/_sim/http/fail with its `method` and `path` filters (names the helpers cannot take)."""
    headers = {"X-MBX-APIKEY": API_KEY}
    query = urlencode(params)
    reply = call(px, lambda c: c.raw("POST", "/_sim/http/fail", query, headers=headers))
    assert reply.status == 200, reply.text


def entry_of(px: PaperExchangeProcess) -> Decimal:
    return Decimal(rest(px, "GET", "/fapi/v3/positionRisk", symbol=SYMBOL)[0]["entryPrice"])


def our_close_stop(px: PaperExchangeProcess) -> dict[str, Any] | None:
    closers = [o for o in algo_orders(px, SYMBOL) if o["closePosition"] in (True, "true")]
    return closers[0] if len(closers) == 1 else None


def settled_at(px: PaperExchangeProcess, trigger: Decimal) -> bool:
    """Exactly one order rests: our closePosition stop at `trigger` (the bridge is gone)."""
    orders = algo_orders(px, SYMBOL)
    return [(o["closePosition"], Decimal(o["triggerPrice"])) for o in orders] == [(True, trigger)]


def pin(px: PaperExchangeProcess, price: Decimal) -> Decimal:
    reply = control(px, "/_sim/price", symbol=SYMBOL, price=str(price))
    return Decimal(reply["price"])


def trailed(pinned: Decimal) -> Decimal:
    """The stop 1 % behind a best mark of `pinned`, rounded up to the 0.1 tick."""
    return (pinned * Decimal("0.99")).quantize(Decimal("0.1"), rounding="ROUND_UP")


def test_trailing_stop_moves_with_a_covering_stop_at_every_poll(px, start_guard):
    rest(px, "POST", "/fapi/v1/order", symbol=SYMBOL, side="BUY", type="MARKET", quantity="0.02")
    entry = entry_of(px)
    guard = start_guard(guard=MOVES, exits=TRAILING)
    wait_for_log(guard, "guard_started", timeout_s=15.0)
    eventually(lambda: our_close_stop(px) is not None, 15.0)
    control(px, "/_sim/latency", ms=150)  # every step takes a while: a gap would be seen
    try:
        with watching(px) as watch:
            for k in range(1, 5):
                pinned = pin(px, entry * (1 + Decimal(k) / 100))
                eventually(lambda p=pinned: settled_at(px, trailed(p)), 30.0, 0.1)
    finally:
        control(px, "/_sim/latency", ms=0)
    assert watch.violations == [], watch.violations[:5]
    assert len(watch.close_triggers) >= 5, watch.close_triggers  # the first stop and 4 moves
    assert watch.close_triggers == sorted(watch.close_triggers)  # it only ever tightened
    assert any("-bridge-" in cid for cid in watch.seen_ids), watch.seen_ids
    assert position(px, SYMBOL) == Decimal("0.02")
    assert len(guard.log_events("stop_bridge_placed")) >= 4
    assert not guard.log_events("stop_rejected") and not guard.log_events("stop_not_moved")
    assert not [a for a in guard.log_events("alert") if "kind=stop_missing" in a]


def test_a_move_whose_new_stop_fails_keeps_a_covering_stop_until_the_exchange_recovers(
    px, start_guard
):
    rest(px, "POST", "/fapi/v1/order", symbol=SYMBOL, side="BUY", type="MARKET", quantity="0.02")
    entry = entry_of(px)
    guard = start_guard(guard=MOVES, exits=TRAILING)
    wait_for_log(guard, "guard_started", timeout_s=15.0)
    first = eventually(lambda: our_close_stop(px), 15.0)
    assert isinstance(first, dict)
    with watching(px) as watch:
        # The bridge fails: the move stops before the old stop is touched.
        http_fail(px, status=503, seconds=2, method="POST", path="/fapi/v1/algoOrder")
        pinned = pin(px, entry * Decimal("1.02"))
        wait_for_log(guard, "stop_not_placed", timeout_s=10.0)
        assert our_close_stop(px) == first  # still resting, untouched
        eventually(lambda: settled_at(px, trailed(pinned)), 30.0, 0.1)
        # The bridge is placed, the old stop cancelled, then the new closePosition stop fails:
        # the bridge alone covers the position until the exchange takes the new stop.
        http_fail(px, status=503, seconds=2, method="POST", path="/fapi/v1/algoOrder", skip=1)
        pinned = pin(px, entry * Decimal("1.03"))
        eventually(lambda: watch.bridge_alone > 0, 10.0)
        eventually(lambda: settled_at(px, trailed(pinned)), 30.0, 0.1)
    assert watch.violations == [], watch.violations[:5]
    assert watch.close_triggers[0] == Decimal(first["triggerPrice"])
    assert watch.close_triggers[-1] == trailed(pinned)
    assert len(guard.log_events("stop_not_moved")) >= 2  # warned, not alerted as missing
    assert not [a for a in guard.log_events("alert") if "kind=stop_missing" in a]
    assert position(px, SYMBOL) == Decimal("0.02")
