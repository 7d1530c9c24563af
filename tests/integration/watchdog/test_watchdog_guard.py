"""The watchdog never holds the guard back (issue 13, hole 1): against a real supervisord, a
crash-looping guard is alerted as `guard_down` but never stopped for a back-off, and a FATAL guard
is started again at once (not after `fatal_retry_base_s`), alerting each time. While the guard is
down its entry lease runs out, so the trader sends nothing (tests/integration/trader/)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.integration.watchdog.conftest import Program, Stack
from tests.services import eventually

StartStack = Callable[[list[Program]], Stack]
pytestmark = pytest.mark.slow


def test_crash_looping_guard_is_alerted_and_never_backed_off(start_stack: StartStack) -> None:
    stack = start_stack([Program("guard", ("--crash-after-s", "0.3"), startsecs=0)])
    # The same limits that back the feed off (3 crashes in the window), with a long delay that
    # would show as a STOPPED guard.
    stack.start_watchdog(["guard"], crash_delay_s=60.0, fatal_retry_cap_s=600.0)
    eventually(lambda: stack.lines("alert", kind="guard_down", program="guard"), 30, 0.05)
    alert = stack.lines("alert", kind="guard_down", program="guard")[0]
    assert "not backed off, restarted at once" in alert
    starts = len(stack.starts("guard"))
    stack.checked_for(3.0, 15)
    assert not stack.lines("process_backed_off")
    assert stack.info("guard").state != "STOPPED"
    assert len(stack.starts("guard")) > starts  # supervisord keeps restarting it at once
    print(f"guard restarted {len(stack.starts('guard'))} times, never backed off")


def test_fatal_guard_is_started_again_at_once_with_an_alert_each_time(
    start_stack: StartStack,
) -> None:
    stack = start_stack([Program("guard", ("--exit-now",), startretries=1)])
    eventually(lambda: stack.info("guard").state == "FATAL", 15, 0.05)
    fatal_starts = len(stack.starts("guard"))
    began = time.monotonic()
    # A base delay the test would never see out: the guard must not wait for it.
    stack.start_watchdog(["guard"], fatal_retry_base_s=60.0, fatal_retry_cap_s=600.0)
    eventually(lambda: stack.lines("process_started", program="guard"), 10, 0.05)
    eventually(lambda: len(stack.starts("guard")) > fatal_starts, 5, 0.05)
    took_s = time.monotonic() - began
    assert stack.lines("alert", kind="guard_down", program="guard")
    # It fails again (FATAL again) and is started again at once, attempt after attempt.
    eventually(lambda: len(stack.lines("process_started", program="guard")) >= 3, 20, 0.05)
    alerts = stack.lines("alert", kind="guard_down", program="guard")
    assert len(alerts) >= 3 and "retry 3 now" in alerts[2], alerts
    print(f"FATAL guard started again in {took_s:.1f} s")
