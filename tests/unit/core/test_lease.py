"""The guard's entry lease (shared/core/lease.py): when the guard may grant it, and whether the
trader may send an entry right now (issue 13, holes 1 and 11). Times are UTC ms."""

from __future__ import annotations

from decimal import Decimal

from shared.core import lease as le
from shared.core.reconcile import RestingStop
from shared.schemas import guard as g

NOW = 1_700_000_000_000
ARMED = g.HaltState(is_halted=False, reason="", since_ms=0)
HALTED = g.HaltState(is_halted=True, reason="kill_switch_drawdown", since_ms=NOW - 5000)
LEASE = le.new_lease(pid=4242, now_ms=NOW - 1000, ttl_ms=30_000, positions=2)


def stop(
    symbol: str, side: str, order_type: str = "STOP_MARKET", close: bool = True
) -> RestingStop:
    return RestingStop(symbol, f"slt-{symbol}_1_B-stop-0", side, order_type, Decimal(100), close)


def test_valid_lease_and_no_halt_allow_the_entry() -> None:
    assert le.entry_gate(ARMED, LEASE, "", NOW) == le.Gate(is_allowed=True)


def test_halt_flag_set_after_the_decision_denies_the_send_even_with_a_valid_lease() -> None:
    gate = le.entry_gate(HALTED, LEASE, "", NOW)
    assert (gate.is_allowed, gate.reason) == (False, "halted")
    assert "kill_switch_drawdown" in gate.detail


def test_no_lease_denies_the_entry() -> None:
    gate = le.entry_gate(ARMED, None, "", NOW)
    assert (gate.is_allowed, gate.reason) == (False, "guard_lease_missing")


def test_unreadable_lease_denies_the_entry() -> None:
    gate = le.entry_gate(ARMED, None, "redis: GET failed (TimeoutError)", NOW)
    assert (gate.is_allowed, gate.reason) == (False, "guard_lease_unreadable")
    assert "TimeoutError" in gate.detail


def test_lease_is_valid_until_the_millisecond_before_it_expires() -> None:
    assert le.entry_gate(ARMED, LEASE, "", LEASE.expires_ms - 1).is_allowed
    gate = le.entry_gate(ARMED, LEASE, "", LEASE.expires_ms)
    assert (gate.is_allowed, gate.reason) == (False, "guard_lease_expired")
    gate = le.entry_gate(ARMED, LEASE, "", LEASE.expires_ms + 2500)
    assert gate.detail.startswith("the guard's lease expired 2500 ms ago")


def test_new_lease_runs_for_its_ttl_from_the_reconcile() -> None:
    lease = le.new_lease(pid=7, now_ms=NOW, ttl_ms=30_000, positions=3)
    assert (lease.pid, lease.renewed_ms, lease.expires_ms, lease.positions) == (
        7,
        NOW,
        NOW + 30_000,
        3,
    )
    assert g.decode_lease(g.encode(lease)) == lease


def test_every_position_with_its_closing_stop_is_protected() -> None:
    positions = {"BTCUSDT": Decimal("0.01"), "ETHUSDT": Decimal("-0.5"), "XRPUSDT": Decimal(0)}
    resting = [stop("BTCUSDT", "SELL"), stop("ETHUSDT", "BUY")]
    assert le.unprotected_symbols(positions, resting) == []


def test_position_without_a_closing_stop_is_unprotected() -> None:
    positions = {"BTCUSDT": Decimal("0.01"), "ETHUSDT": Decimal("-0.5"), "ADAUSDT": Decimal(10)}
    resting = [
        stop("BTCUSDT", "BUY"),  # the wrong side: it would add to the long
        stop("ETHUSDT", "BUY", order_type="TAKE_PROFIT_MARKET"),  # not a stop
        stop("ADAUSDT", "SELL", close=False),  # not closePosition
        stop("XRPUSDT", "SELL"),  # another symbol's
    ]
    assert le.unprotected_symbols(positions, resting) == ["ADAUSDT", "BTCUSDT", "ETHUSDT"]


def test_lease_is_granted_only_after_an_answered_reconcile_with_every_stop_resting() -> None:
    assert le.lease_refusal(True, []) == ""
    assert le.lease_refusal(True, ["BTCUSDT"]) == "unprotected_positions"
    assert le.lease_refusal(False, []) == "reconcile_failed"
