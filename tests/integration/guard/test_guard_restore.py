"""Each position's guard state survives a restart, and a hedge-mode account is refused (issue 13,
hole 12), with real parts: the guard as a subprocess killed with -9, the paper exchange at speed
60 (one real second is a simulated minute). Judged from the exchange's truth (positions, fills)
and the guard's exit code, log and positions file.

- a position that took its partial take-profit is not cut again by a guard restarted after a
  kill -9, and its max-holding exit comes at the deadline of its opening, not one restart later;
- an account in hedge mode makes the guard exit 2 with one line naming the fix.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.feed.conftest import wait_for_log
from tests.integration.guard.conftest import algo_orders, control, open_position, position, rest
from tests.services import eventually

pytestmark = pytest.mark.slow

POLL_S = 0.5  # exchange reads by the test itself stay far below the weight limit
# No feed runs: the guard is in REST mode; calm intervals keep it below the weight limit.
CALM = {"reconcile_interval_s": 2.0, "rest_poll_interval_s": 1.0}
MAX_HOLDING_S = 1500.0  # simulated: 25 real seconds at speed 60
# Take half the position 1 % above the entry; no trailing, stop and time stop far away.
EXITS = {
    "take_profit_pct": 1.0,
    "take_profit_close_fraction": 0.5,
    "stop_loss_pct": 20.0,
    "trailing_activation_pct": 50.0,
    "time_stop_s": 0.0,
    "max_holding_s": MAX_HOLDING_S,
}
# The max-holding close lands within the REST mark poll and a reconcile of its deadline; a
# restarted clock would land about 600 simulated seconds (10 real ones) later.
DEADLINE_SLACK_MS = 300_000


def fills(px: Any) -> list[dict[str, Any]]:
    return list(rest(px, "GET", "/fapi/v1/userTrades", symbol="BTCUSDT"))


def saved_positions(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "guard" / "positions.json"
    if not path.exists():
        return []
    return list(json.loads(path.read_text())["positions"])


def test_a_partial_take_profit_is_not_taken_again_and_max_holding_keeps_its_deadline_after_kill_9(
    px: Any, start_guard: Any, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    open_position(px, "BUY", "0.02")
    (row,) = [r for r in rest(px, "GET", "/fapi/v3/positionRisk", symbol="BTCUSDT")]
    entry = Decimal(row["entryPrice"])
    opened_ms = fills(px)[0]["time"]
    guard = start_guard(guard=CALM, exits=EXITS)
    eventually(lambda: len(algo_orders(px)) == 1, 15.0, POLL_S)
    wait_for_log(guard, "guard_started", timeout_s=10.0)
    time.sleep(10.0)  # 600 simulated seconds of holding before the take-profit
    control(px, "/_sim/price", symbol="BTCUSDT", price=str(entry * Decimal("1.02")))
    eventually(lambda: position(px) == Decimal("0.01"), 15.0, POLL_S)  # half taken
    wait_for_log(guard, "exit_sent", timeout_s=5.0)  # the guard has recorded it
    guard.kill()  # kill -9: nothing in memory survives
    again = start_guard(guard=CALM, exits=EXITS)
    wait_for_log(again, "guard_started", timeout_s=15.0)
    # The mark stays above the take-profit: a guard that forgot would cut the half again now.
    time.sleep(3.0)
    assert position(px) == Decimal("0.01"), again.log_text()
    assert again.log_events("position_restored"), again.log_text()
    eventually(lambda: position(px) == 0, 40.0, POLL_S)
    closes = [f for f in fills(px) if f["side"] == "SELL"]
    assert len(closes) == 2, closes  # the partial, then the max-holding close
    held_ms = closes[-1]["time"] - opened_ms
    assert MAX_HOLDING_S * 1000 <= held_ms <= MAX_HOLDING_S * 1000 + DEADLINE_SLACK_MS, held_ms
    decided = again.log_events("exit_decided")
    assert len(decided) == 1 and "reason=max_holding" in decided[0], again.log_text()
    eventually(lambda: saved_positions(run_dir) == [], 10.0, 0.2)  # closed: its record is gone
    assert (run_dir / "guard" / "positions.json").exists()


def test_a_hedge_mode_account_makes_the_guard_exit_2_with_one_line_naming_the_fix(
    px: Any, start_guard: Any
) -> None:
    rest(px, "POST", "/fapi/v1/positionSide/dual", dualSidePosition="true")
    guard = start_guard(guard=CALM)
    assert guard.process.wait(timeout=30) == 2, guard.log_text()
    (line,) = guard.log_events("guard_refused_to_start")
    assert "CRITICAL" in line and "hedge mode" in line and "dualSidePosition=false" in line
    assert not guard.log_events("guard_started")
