"""The position-guard against the paper exchange, as a real subprocess with no feed running:
adoption and protection, restarts without duplicate orders, exits, the exchange-resident stop
when the guard is dead, and the dead-man's switch."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from shared.bus import Publisher
from shared.schemas import bus
from tests.integration.feed.conftest import wait_for_log
from tests.integration.guard.conftest import (
    algo_orders,
    control,
    mark,
    open_position,
    position,
    rest,
)
from tests.services import eventually, free_port

pytestmark = pytest.mark.slow


def our_stops(px: object) -> list[dict[str, object]]:
    return [o for o in algo_orders(px) if str(o["clientAlgoId"]).startswith("slt-")]  # type: ignore[arg-type]


def test_adopted_position_gets_a_resting_stop_and_a_restart_duplicates_nothing(px, start_guard):
    open_position(px, "BUY", "0.02")
    entry = Decimal(rest(px, "GET", "/fapi/v3/positionRisk", symbol="BTCUSDT")[0]["entryPrice"])
    guard = start_guard()
    eventually(lambda: len(our_stops(px)) == 1, 15.0)
    stop = our_stops(px)[0]
    assert stop["side"] == "SELL" and stop["closePosition"] in (True, "true")
    assert stop["orderType"] == "STOP_MARKET" and stop["workingType"] == "MARK_PRICE"
    # Default plan: 2 % below the entry, rounded toward the entry (never further than configured).
    assert entry * Decimal("0.98") <= Decimal(stop["triggerPrice"]) < entry * Decimal("0.981")
    assert guard.log_events("position_adopted")
    guard.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert guard.process.wait(timeout=15) == 0  # type: ignore[union-attr]
    assert [o["clientAlgoId"] for o in our_stops(px)] == [stop["clientAlgoId"]]  # still resting
    again = start_guard()
    wait_for_log(again, "guard_started", timeout_s=15.0)
    # Its record in run/guard/positions.json: the same position, restored, not adopted again.
    eventually(lambda: len(again.log_events("position_restored")) == 1, 10.0)
    assert not again.log_events("position_adopted")
    assert [o["clientAlgoId"] for o in our_stops(px)] == [stop["clientAlgoId"]]
    assert not again.log_events("stop_placed")


def test_price_through_the_stop_closes_the_position_and_clears_the_stop(px, start_guard):
    open_position(px, "SELL", "0.02")
    guard = start_guard()
    eventually(lambda: len(our_stops(px)) == 1, 15.0)
    trigger = Decimal(our_stops(px)[0]["triggerPrice"])
    control(px, "/_sim/price", symbol="BTCUSDT", price=str(trigger * Decimal("1.01")))
    eventually(lambda: position(px) == 0, 15.0)
    eventually(lambda: our_stops(px) == [], 10.0)
    assert guard.is_running()


def test_max_holding_time_closes_the_position_with_its_reason(px, start_guard):
    open_position(px, "BUY", "0.02")
    guard = start_guard(exits={"max_holding_s": 120.0})  # 2 simulated minutes = 2 s at speed 60
    eventually(lambda: position(px) == 0, 20.0)
    decided = guard.log_events("exit_decided")
    assert decided and "reason=max_holding" in decided[0], guard.log_text()
    assert "client_id=slt-" in decided[0]


def test_killed_guard_leaves_the_exchange_stop_which_closes_and_the_restart_adds_nothing(
    px, start_guard
):
    open_position(px, "BUY", "0.02")
    guard = start_guard()
    eventually(lambda: len(our_stops(px)) == 1, 15.0)
    trigger = Decimal(our_stops(px)[0]["triggerPrice"])
    guard.kill()
    control(px, "/_sim/price", symbol="BTCUSDT", price=str(trigger * Decimal("0.99")))
    eventually(lambda: position(px) == 0, 15.0)  # the resting stop did it, nobody watching
    trades_before = rest(px, "GET", "/fapi/v1/userTrades", symbol="BTCUSDT")
    again = start_guard()
    wait_for_log(again, "guard_started", timeout_s=15.0)
    eventually(lambda: len(again.log_events("exit_sent")) == 0 and again.is_running(), 2.0)
    assert rest(px, "GET", "/fapi/v1/userTrades", symbol="BTCUSDT") == trades_before
    assert our_stops(px) == []
    assert not again.log_events("stop_placed")


def test_dead_mans_switch_flattens_when_feed_and_trader_are_silent(px, start_guard, tmp_path):
    open_position(px, "BUY", "0.02")
    open_position(px, "SELL", "10", symbol="ETHUSDT")
    guard = start_guard(dms={"silence_after_s": 3.0})
    eventually(lambda: position(px) == 0 and position(px, "ETHUSDT") == 0, 20.0)
    eventually(lambda: guard.log_events("flatten_done"), 5.0)
    halt = json.loads((tmp_path / "run" / "guard" / "halt.json").read_text())
    assert halt["is_halted"] and halt["reason"] == "dms_silence" and halt["needs_operator"]
    eventually(lambda: our_stops(px) == [], 10.0)


def test_dead_mans_switch_flattens_when_every_mark_source_goes_stale(px, start_guard, tmp_path):
    open_position(px, "BUY", "0.02")
    guard = start_guard(dms={"blind_after_s": 2.0})
    eventually(lambda: len(our_stops(px)) == 1, 15.0)
    wait_for_log(guard, "rest_mode_entered", timeout_s=10.0)
    assert position(px) != 0
    control(px, "/_sim/clock/pause")  # no mark moves any more: REST answers, but stale
    try:
        eventually(lambda: position(px) == 0, 20.0)
    finally:
        control(px, "/_sim/clock/resume")
    halt = json.loads((tmp_path / "run" / "guard" / "halt.json").read_text())
    assert halt["reason"] == "dms_blind"
    assert mark(px) > 0


def test_kill_switch_flattens_and_halts_on_drawdown_until_rearmed(px, start_guard, tmp_path):
    open_position(px, "BUY", "0.05")
    guard = start_guard(exits={"stop_loss_pct": 10.0}, kill_switch={"max_drawdown_pct": 0.5})
    eventually(lambda: len(our_stops(px)) == 1, 15.0)
    wait_for_log(guard, "guard_started", timeout_s=5.0)
    control(px, "/_sim/price", symbol="BTCUSDT", price=str(mark(px) * Decimal("0.985")))
    eventually(lambda: position(px) == 0, 20.0)
    halt_file = tmp_path / "run" / "guard" / "halt.json"
    halt = json.loads(halt_file.read_text())
    assert halt["reason"] == "kill_switch_drawdown" and halt["needs_operator"]
    eventually(lambda: guard.log_events("flatten_done"), 5.0)
    # The halt stays while the guard runs on; only the operator re-arms (slt rearm clears it).
    eventually(lambda: len(guard.log_events("guard_stats")) == 0 and guard.is_running(), 1.0)
    assert json.loads(halt_file.read_text())["is_halted"]


def test_slt_flatten_closes_everything_and_slt_rearm_clears_the_halt(px, start_guard, tmp_path):
    open_position(px, "BUY", "0.02")
    open_position(px, "SELL", "1", symbol="ETHUSDT")
    guard = start_guard()
    eventually(lambda: len(algo_orders(px)) + len(algo_orders(px, "ETHUSDT")) == 2, 15.0)
    env = {**os.environ, "SLT_CONFIG": str(guard.config_path), "SLT_MODE": "paper"}
    env.pop("PYTHONASYNCIODEBUG", None)
    slt = [sys.executable, "-m", "procs.cli"]
    refused = subprocess.run(
        [*slt, "flatten"], input="no\n", env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1 and position(px) != 0
    done = subprocess.run(
        [*slt, "flatten", "--yes"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert position(px) == 0 and position(px, "ETHUSDT") == 0
    assert algo_orders(px) == [] and algo_orders(px, "ETHUSDT") == []
    halt_file = tmp_path / "run" / "guard" / "halt.json"
    assert json.loads(halt_file.read_text())["reason"] == "operator_flatten"
    rearm = subprocess.run([*slt, "rearm"], env=env, capture_output=True, text=True, timeout=60)
    assert rearm.returncode == 0 and "operator_flatten" in rearm.stdout
    # Re-armed; with no trader program the guard's own trader-silence halt (no operator) remains.
    state = json.loads(halt_file.read_text())
    assert not state["needs_operator"] and state["reason"] in ("", "trader_silent")
    assert guard.is_running()


def test_a_cancelled_stop_is_recreated_from_exchange_truth(px, start_guard):
    open_position(px, "BUY", "0.02")
    guard = start_guard()
    eventually(lambda: len(our_stops(px)) == 1, 15.0)
    first = our_stops(px)[0]
    rest(px, "DELETE", "/fapi/v1/algoOrder", clientAlgoId=first["clientAlgoId"])
    eventually(lambda: len(our_stops(px)) == 1, 15.0)  # the cancel event or the next reconcile
    again = our_stops(px)[0]
    # The same intent gives the same id (Binance refuses only an id that is still open).
    assert again["clientAlgoId"] == first["clientAlgoId"] and again["algoId"] != first["algoId"]
    assert again["triggerPrice"] == first["triggerPrice"]
    assert len(guard.log_events("stop_placed")) == 2
    assert guard.is_running()


def test_guard_protects_without_redis(px, start_guard):
    open_position(px, "SELL", "0.02")
    guard = start_guard(redis={"url": "redis://127.0.0.1:1/0"})  # nothing listens there
    eventually(lambda: len(our_stops(px)) == 1, 20.0)
    wait_for_log(guard, "guard_started", timeout_s=5.0)
    assert guard.is_running()


def test_a_restarted_guard_keeps_a_stop_that_trailed_tighter_than_the_plan(px, start_guard):
    open_position(px, "BUY", "0.02")
    entry = Decimal(rest(px, "GET", "/fapi/v3/positionRisk", symbol="BTCUSDT")[0]["entryPrice"])
    tight = (entry * Decimal("0.995")).quantize(Decimal("0.1"))  # the default plan's is 2 % away
    rest(
        px,
        "POST",
        "/fapi/v1/algoOrder",
        algoType="CONDITIONAL",
        symbol="BTCUSDT",
        side="SELL",
        type="STOP_MARKET",
        triggerPrice=str(tight),
        closePosition="true",
        workingType="MARK_PRICE",
        clientAlgoId="slt-BTCUSDT_1-stop-4",
    )
    guard = start_guard()
    wait_for_log(guard, "guard_started", timeout_s=15.0)
    eventually(lambda: len(guard.log_events("guard_stats")) == 0 and guard.is_running(), 1.5)
    assert [(o["clientAlgoId"], Decimal(o["triggerPrice"])) for o in our_stops(px)] == [
        ("slt-BTCUSDT_1-stop-4", tight)
    ]
    assert not guard.log_events("stop_placed") and not guard.log_events("stop_cancelled")


def test_guard_started_while_the_exchange_fails_waits_beating_then_protects(px, start_guard):
    from shared.shm.heartbeat import read_heartbeats

    open_position(px, "BUY", "0.02")
    control(px, "/_sim/http/fail", status="503", seconds="4")
    guard = start_guard()
    wait_for_log(guard, "exchange_info_failed", timeout_s=10.0)
    beat = eventually(lambda: read_heartbeats(guard.instance).get("guard"), 10.0)
    # Failing answers count as progress: the watchdog must not restart it for an outage.
    eventually(lambda: read_heartbeats(guard.instance)["guard"].progress_ns["reconcile"] > 0, 5.0)
    assert beat and guard.is_running()
    eventually(lambda: len(our_stops(px)) == 1, 20.0)


def test_guard_heartbeat_is_mirrored_in_redis_with_a_ttl_of_three_beats(
    px, start_guard, redis_instance
):
    from shared.cache import Cache
    from shared.schemas import bus

    guard = start_guard()
    wait_for_log(guard, "guard_started", timeout_s=15.0)

    async def read() -> tuple[bytes | None, int]:
        async with Cache(redis_instance.url, guard.instance, 2.0) as cache:
            return await cache.read_heartbeat("guard")

    payload, ttl_ms = eventually(lambda: (r := asyncio.run(read()))[0] and r, 10.0)  # type: ignore[misc]
    beat = bus.decode("heartbeat.guard", payload)
    assert isinstance(beat, bus.BusHeartbeat) and beat.pid == guard.process.pid
    assert 0 < ttl_ms <= 3 * 200  # GUARD_FAST heartbeat_interval_s = 0.2


def test_guard_runs_on_when_the_feed_bus_cannot_be_subscribed(px, start_guard):
    open_position(px, "BUY", "0.02")
    guard = start_guard(guard={"bus_endpoint": "nonsense://no-such-transport"})
    wait_for_log(guard, "bus_unavailable", timeout_s=15.0)
    eventually(lambda: len(our_stops(px)) == 1, 15.0)
    eventually(lambda: guard.log_events("rest_mode_entered"), 10.0)  # marks over REST instead
    assert guard.is_running(), guard.log_text()


def test_a_marks_all_message_on_the_feed_bus_drives_the_guards_exit(px, start_guard):
    """The feed publishes the marks of a `!markPrice@arr` frame as one `marks.all` message; the
    guard evaluates every entry. The exchange's own mark stays above the stop, so only the
    guard acting on the bus message can close the position."""
    open_position(px, "BUY", "0.02")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Publisher(endpoint, "feed") as pub:
        guard = start_guard(guard={"bus_endpoint": endpoint})
        eventually(lambda: len(our_stops(px)) == 1, 15.0)
        trigger = Decimal(our_stops(px)[0]["triggerPrice"])
        below = float(trigger * Decimal("0.99"))

        def publish(btc: float) -> None:
            now = time.time_ns() // 1_000_000
            funding = now + 60_000
            entries = (
                bus.MarkEntry("ETHUSDT", 2500.0, 2500.0, 0.0001, funding, now),
                bus.MarkEntry("BTCUSDT", btc, btc, 0.0001, funding, now),
            )
            pub.publish(bus.MARKS_TOPIC, bus.Marks(ts_ms=now, marks=entries))

        # A mark that is no price (NaN, 0) is logged and ignored, never acted on (a 0 would be
        # far through a long's stop); PUB/SUB joins late: publish until the guard has seen it.
        eventually(lambda: publish(float("nan")) or guard.log_events("bad_mark"), 20.0, 0.2)
        publish(0.0)  # joined by now (its log line is held back by the rate limit)
        time.sleep(1.0)
        assert position(px) == Decimal("0.02") and guard.is_running(), guard.log_text()

        def publish_then_check() -> bool:  # publish until it is acted on
            publish(below)
            return position(px) == 0

        eventually(publish_then_check, 20.0, 0.2)
    assert mark(px) > trigger  # the exchange's stop did not fire: the guard closed it
    decided = guard.log_events("exit_decided")
    assert decided and "symbol=BTCUSDT" in decided[0] and "reason=stop_loss" in decided[0]
    assert guard.is_running(), guard.log_text()


def test_a_margin_call_is_alerted_and_the_position_judged_at_once(px, start_guard):
    """125x isolated: the paper exchange's margin call (maintenance / margin balance >= 0.8)
    comes about 0.3 % below the entry, before the liquidation (0.4 %) and far before the 2 %
    stop. The guard alerts it from its user-data stream and keeps the position protected."""
    rest(px, "POST", "/fapi/v1/marginType", symbol="BTCUSDT", marginType="ISOLATED")
    rest(px, "POST", "/fapi/v1/leverage", symbol="BTCUSDT", leverage=125)
    open_position(px, "BUY", "0.02")
    guard = start_guard(exits={"liquidation_buffer_pct": 0.01})
    eventually(lambda: len(our_stops(px)) == 1, 15.0)
    # The stop is placed by the reconcile that runs before the user-data stream connects; a
    # margin call pushed before the stream is up reaches no one (under load it once did).
    eventually(lambda: guard.log_events("user_stream_resynced"), 15.0)
    row = rest(px, "GET", "/fapi/v3/positionRisk", symbol="BTCUSDT")[0]
    entry, liquidation = Decimal(row["entryPrice"]), Decimal(row["liquidationPrice"])
    assert entry * Decimal("0.995") < liquidation < entry * Decimal("0.997")
    control(px, "/_sim/price", symbol="BTCUSDT", price=str(liquidation + (entry - liquidation) / 5))
    calls = lambda: [a for a in guard.log_events("alert") if "kind=margin_call" in a]  # noqa: E731
    try:
        alerts = eventually(calls, 15.0)
    except AssertionError as e:  # keep the evidence: it failed once under heavy load
        tail = "\n".join(guard.log_text().splitlines()[-60:])
        raise AssertionError(
            f"{e}; guard log tail:\n{tail}\npaper log:\n{px.log_text()[-3000:]}"
        ) from None
    assert "symbol=BTCUSDT" in alerts[0] and "liquidation is near" in alerts[0]  # type: ignore[index]
    assert position(px) == Decimal("0.02") and len(our_stops(px)) == 1  # still protected
    assert guard.is_running(), guard.log_text()
