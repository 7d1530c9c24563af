"""The watchdog against a real supervisord (no mocks): it restarts a hung program through
signalProcess TERM then KILL, backs off a crash loop and starts it again after the delay (also
after its own restart), never starts a program the operator stopped, retries FATAL programs,
ignores a heartbeat from a pid that is not supervisord's, and survives supervisord's death."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from shared.cache import Cache
from shared.schemas import guard as g
from tests.integration.watchdog.conftest import Program, Stack
from tests.services import RedisServer, eventually

StartStack = Callable[[list[Program]], Stack]


def _running_pid(stack: Stack, name: str) -> int:
    info = stack.info(name)
    return info.pid if info.state == "RUNNING" else 0


def _log_time(line: str) -> float:
    stamp = line.split(" ", 1)[0]  # 2026-01-07T12:00:00.123Z
    return (
        time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
        - time.timezone
        + float("0." + stamp[20:23])
    )


def test_stopped_process_is_terminated_then_killed_and_restarted_with_a_new_pid(
    start_stack: StartStack,
) -> None:
    stack = start_stack([Program("feed")])
    old = eventually(lambda: _running_pid(stack, "feed"), 10)
    stack.start_watchdog(["feed"])
    eventually(lambda: stack.beats()["feed"].pid == old, 10)
    began = time.monotonic()
    os.kill(int(str(old)), signal.SIGSTOP)  # alive but silent: SIGTERM stays pending
    new = eventually(lambda: (pid := _running_pid(stack, "feed")) != old and pid, 15, 0.05)
    took_s = time.monotonic() - began
    assert stack.lines("process_hung", program="feed", pid=str(old))
    assert stack.lines("process_signalled", program="feed", signal="TERM", pid=str(old))
    assert stack.lines("process_killed", program="feed", signal="KILL", pid=str(old))
    assert new != old
    eventually(lambda: stack.beats()["feed"].pid == new, 5)
    print(f"hung->restarted in {took_s:.1f} s")
    assert stack.watchdog is not None and stack.watchdog.poll() is None


@pytest.mark.slow
def test_crash_loop_is_backed_off_and_started_again_after_the_delay_by_a_restarted_watchdog(
    start_stack: StartStack,
) -> None:
    stack = start_stack([Program("feed", ("--crash-after-s", "0.3"), startsecs=0)])
    began = time.monotonic()
    stack.start_watchdog(["feed"])
    eventually(lambda: stack.lines("alert", kind="feed_backed_off", program="feed"), 30, 0.05)
    backed_off = stack.lines("process_backed_off", program="feed")[0]
    backed_off_at = _log_time(backed_off)
    eventually(lambda: stack.info("feed").state == "STOPPED", 5)
    before = [t for _, t in stack.starts("feed")]
    # The first spawn and crash_delay_after + 1 crashes, plus one spawn in flight at most.
    assert len(before) <= 6, before
    assert "retry_in_s=2.0" in backed_off
    # A watchdog restarted during the back-off still starts the program when it is due.
    assert stack.stop_watchdog() == 0
    stack.start_watchdog(["feed"])
    eventually(lambda: stack.lines("process_started", program="feed"), 15, 0.05)
    eventually(lambda: len(stack.starts("feed")) > len(before), 5, 0.05)
    restarted_at = stack.starts("feed")[len(before)][1]
    assert restarted_at >= backed_off_at + 2.0 - 0.05, (backed_off_at, restarted_at)
    assert not [t for t in before if t > backed_off_at + 0.5]  # nothing started in between
    print(f"backed off after {len(before)} starts, {time.monotonic() - began:.1f} s in total")


def test_program_stopped_by_the_operator_is_never_started(start_stack: StartStack) -> None:
    stack = start_stack([Program("guard")])
    eventually(lambda: _running_pid(stack, "guard"), 10)
    stack.start_watchdog(["guard"])
    began = time.monotonic()
    assert "stopped" in stack.ctl("stop", "guard")
    starts = len(stack.starts("guard"))
    # Past the staleness of its last beat and the startup grace, checked all along.
    stack.checked_for(2.5, 10)
    assert stack.info("guard").state == "STOPPED"
    assert len(stack.starts("guard")) == starts
    assert not stack.lines("process_started", program="guard")
    assert not stack.lines("process_hung", program="guard")
    print(f"stopped program left alone for {time.monotonic() - began:.1f} s")


@pytest.mark.slow
def test_fatal_program_is_started_again_after_the_base_delay_then_doubling(
    start_stack: StartStack,
) -> None:
    stack = start_stack([Program("reporter", ("--exit-now",), startretries=1)])
    eventually(lambda: stack.info("reporter").state == "FATAL", 15, 0.05)
    began = time.monotonic()
    stack.start_watchdog(["reporter"])
    fatal_starts = len(stack.starts("reporter"))
    eventually(lambda: stack.lines("alert", kind="process_fatal", program="reporter"), 5, 0.05)
    first = eventually(lambda: stack.lines("process_started", program="reporter"), 10, 0.05)
    alert_at = _log_time(stack.lines("alert", kind="process_fatal")[0])
    assert _log_time(first[0]) >= alert_at + 1.0 - 0.05  # type: ignore[index]
    eventually(lambda: len(stack.starts("reporter")) > fatal_starts, 5, 0.05)
    # It fails again: FATAL again, and the next retry waits twice as long.
    eventually(
        lambda: [a for a in stack.lines("alert", kind="process_fatal") if "retry 2 in 2 s" in a],
        10,
        0.05,
    )
    print(f"FATAL retried in {time.monotonic() - began:.1f} s")


def test_heartbeat_from_a_pid_that_is_not_supervisords_is_ignored(
    start_stack: StartStack,
) -> None:
    stack = start_stack([Program("feed", ("--no-beat",))])
    old = eventually(lambda: _running_pid(stack, "feed"), 10)
    impostor = subprocess.Popen(stack.beater_command("feed", "--interval-s", "0.1"))
    stack.orphans.append(impostor.pid)
    try:
        eventually(
            lambda: "feed" in stack.beats() and stack.beats()["feed"].pid == impostor.pid, 10
        )
        began = time.monotonic()
        stack.start_watchdog(["feed"])
        eventually(lambda: (pid := _running_pid(stack, "feed")) != old and pid, 15, 0.05)
        hung = stack.lines("process_hung", program="feed", pid=str(old))
        assert hung and f"heartbeat pid {impostor.pid} is not supervisord's pid {old}" in hung[0]
        assert impostor.poll() is None
        print(f"impostor's heartbeat ignored, restarted in {time.monotonic() - began:.1f} s")
    finally:
        impostor.kill()
        impostor.wait()


def test_watchdog_without_supervisord_logs_unavailable_and_keeps_beating(
    start_stack: StartStack,
) -> None:
    stack = start_stack([Program("feed")])
    pid = eventually(lambda: _running_pid(stack, "feed"), 10)
    stack.orphans.append(int(str(pid)))
    stack.start_watchdog(["feed"])
    stack.checked_for(0.3, 10)
    began = time.monotonic()
    stack.supervisord.kill()
    stack.supervisord.wait()
    eventually(lambda: stack.lines("supervisor_unavailable"), 10, 0.05)
    seq = stack.beats()["watchdog"].seq
    eventually(lambda: stack.beats()["watchdog"].seq >= seq + 5, 10, 0.05)
    assert stack.watchdog is not None and stack.watchdog.poll() is None
    assert stack.lines("alert", kind="supervisor_unavailable")
    assert not stack.lines("process_hung")
    assert stack.stop_watchdog() == 0
    print(f"supervisord gone: watchdog alive {time.monotonic() - began:.1f} s")


def test_service_checks_alert_on_degraded_services_and_restart_nothing(
    start_stack: StartStack, redis_instance: RedisServer
) -> None:
    stack = start_stack([Program("feed")])
    pid = eventually(lambda: _running_pid(stack, "feed"), 10)
    stack.start_watchdog(["feed"], redis_port=redis_instance.port, service_check_interval_s=0.5)
    eventually(lambda: stack.lines("service_degraded", service="exchange"), 10, 0.05)
    eventually(lambda: stack.lines("service_degraded", service="postgres"), 10, 0.05)
    stack.checked_for(0.5, 5)
    assert not stack.lines("service_degraded", service="redis")
    assert len(stack.lines("service_degraded", service="exchange")) == 1  # changes only

    async def queued() -> list[g.Alert]:
        async with Cache(redis_instance.url, stack.instance, 2.0) as cache:
            return [g.decode_alert(raw) for raw in await cache.read_alerts()]

    alerts = eventually(lambda: len(asyncio.run(queued())) >= 2 and asyncio.run(queued()), 5)
    assert {a.kind for a in alerts} == {"service_degraded"}  # type: ignore[attr-defined]
    assert _running_pid(stack, "feed") == pid


def test_process_beating_without_progress_is_restarted(start_stack: StartStack) -> None:
    stack = start_stack([Program("guard", ("--progress-for-s", "0.5"))])
    old = eventually(lambda: _running_pid(stack, "guard"), 10)
    began = time.monotonic()
    stack.start_watchdog(["guard"])
    eventually(lambda: (pid := _running_pid(stack, "guard")) != old and pid, 15, 0.05)
    hung = stack.lines("process_hung", program="guard", pid=str(old))
    assert hung and "progress reconcile" in hung[0]
    assert not stack.lines("process_killed")  # it answered TERM
    print(f"stuck progress restarted in {time.monotonic() - began:.1f} s")
