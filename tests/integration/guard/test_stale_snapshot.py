"""A REST snapshot older than a user-data event must not cancel the stop (issue 13, hole 9):
the guard against the paper exchange with REST replies made late, so that a positionRisk read
started before a fill answers after that fill's user-data event."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from shared.shm.heartbeat import read_heartbeats
from tests.integration.guard.conftest import algo_orders, control, open_position, position
from tests.paper_exchange_fixture import BinanceTestClient, call
from tests.services import eventually

pytestmark = pytest.mark.slow
LATENCY_MS = 2000  # REST replies this late (the request is handled at once); < the 3 s timeout
QTY = "0.02"


def our_stops(px: Any) -> list[str]:
    return [o["clientAlgoId"] for o in algo_orders(px) if o["clientAlgoId"].startswith("slt-")]


def test_a_flat_read_from_before_a_reopening_fill_does_not_cancel_its_stop(px, start_guard):
    """Closed, then reopened 1 s later, while the guard's per-symbol read (started right after
    the close, so flat) is still on its way: the old guard believed that read, forgot the
    position and cancelled the stop that now protected the reopened one."""
    # Real-time exchange clock: at speed 60 the 2 s late replies would put the guard's signed
    # timestamps minutes outside the recvWindow (-1021).
    control(px, "/_sim/clock/speed", value=1)
    open_position(px, "BUY", QTY)
    # Quiet periodic reconciles (REST mode reconciles every 2 REST polls): the reads that
    # matter are the ones the user-data events start.
    guard = start_guard(
        guard={"reconcile_interval_s": 60.0, "lease_ttl_s": 120.0, "rest_poll_interval_s": 30.0}
    )
    eventually(lambda: len(our_stops(px)) == 1, 15.0)
    stop = our_stops(px)[0]
    # The user-data stream must be up: the guard learns of the reopening fill from it.
    eventually(lambda: guard.log_events("user_stream_resynced"), 15.0)
    control(px, "/_sim/latency", ms=LATENCY_MS)

    async def close_then_reopen(client: BinanceTestClient) -> None:
        async def send(side: str, delay_s: float, **extra: Any) -> None:
            await asyncio.sleep(delay_s)
            params = {"symbol": "BTCUSDT", "side": side, "type": "MARKET", "quantity": QTY}
            reply = await client.signed("POST", "/fapi/v1/order", {**params, **extra})
            assert reply.status == 200, reply.text

        # Not waiting for the close's (late) reply: the reopen is handled 1 s after the close.
        await asyncio.gather(send("SELL", 0.0, reduceOnly="true"), send("BUY", 1.0))

    try:
        call(px, close_then_reopen)
        # The read started after the close has answered (flat) and has been judged: believed
        # and acted on by the old guard, held back by the new one.
        eventually(
            lambda: guard.log_events("position_gone") or guard.log_events("snapshot_held_back"),
            20.0,
        )
    finally:
        control(px, "/_sim/latency", ms=0)
    prompt_ns = time.monotonic_ns()

    def reconciled_since_prompt() -> bool:  # a read that answered after the latency was off
        beat = read_heartbeats(guard.instance).get("guard")
        return beat is not None and beat.progress_ns.get("reconcile", 0) > prompt_ns

    eventually(reconciled_since_prompt, 10.0, 0.1)
    eventually(lambda: position(px) != 0 and len(our_stops(px)) == 1, 20.0)
    assert our_stops(px) == [stop], guard.log_text()[-3000:]
    assert not guard.log_events("stop_cancelled") and not guard.log_events("position_gone")
