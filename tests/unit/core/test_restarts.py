"""The watchdog's restart policy on exact timelines (times in ms since an arbitrary epoch)."""

from __future__ import annotations

import msgspec
import pytest

from procs.watchdog.logic.restarts import (
    Action,
    Alert,
    Beat,
    Memory,
    Note,
    Observation,
    Signal,
    Start,
    Stop,
    supervise,
)
from shared.config.ops import WatchdogConfig

# stale 3 s, grace 20 s, kill after 5 s (the default is 15 s), 5 in 300 s, crash delay 60 s
WD = WatchdogConfig(kill_after_s=5.0)
T0 = 1_700_000_000_000  # supervisord start time of pid 100


def fresh(pid: int = 100, progress_age_s: float | None = 1.0) -> Beat:
    return Beat(pid, 0.5, {"kline": progress_age_s, "reconcile": progress_age_s})


def obs(
    state: str = "RUNNING",
    pid: int = 100,
    start_ms: int = T0,
    beat: Beat | None = None,
    program: str = "feed",
) -> Observation:
    return Observation(program, state, pid, start_ms, beat)


def calls(actions: list[Action]) -> list[Action]:
    """The actions that do something (not log-only notes)."""
    return [a for a in actions if not isinstance(a, Note)]


def seen(o: Observation, now_ms: int) -> Memory:
    """Memory after one quiet check at now_ms."""
    actions, mem = supervise(o, Memory(), WD, now_ms)
    assert actions == []
    return mem


def test_running_without_heartbeat_within_startup_grace_is_left_alone() -> None:
    mem = seen(obs(), T0 + 1000)
    actions, _ = supervise(obs(), mem, WD, T0 + 19_999)
    assert actions == []


def test_running_without_heartbeat_after_startup_grace_is_terminated() -> None:
    mem = seen(obs(), T0 + 1000)
    actions, mem = supervise(obs(), mem, WD, T0 + 20_000)
    assert actions[0] == Signal(
        "feed", "TERM", 100, "no heartbeat 20.0 s after the start (grace 20 s)"
    )
    assert isinstance(actions[1], Alert) and actions[1].kind == "process_hung"
    assert (mem.term_pid, mem.term_ms, mem.restarts_ms) == (100, T0 + 20_000, (T0 + 20_000,))


def test_stale_heartbeat_is_terminated_then_killed_then_alerted_once() -> None:
    stale = Beat(100, 3.01, {"kline": 1.0})
    mem = seen(obs(beat=fresh()), T0 + 30_000)
    actions, mem = supervise(obs(beat=stale), mem, WD, T0 + 31_000)
    assert actions[0] == Signal("feed", "TERM", 100, "heartbeat 3.01 s old exceeds stale_after_s=3")
    for t in (31_000 + 1000, 31_000 + 4999):
        assert supervise(obs(beat=stale), mem, WD, T0 + t)[0] == []
    actions, mem = supervise(obs(beat=stale), mem, WD, T0 + 36_000)
    assert actions == [Signal("feed", "KILL", 100, "pid 100 still RUNNING 5.0 s after TERM")]
    assert supervise(obs(beat=stale), mem, WD, T0 + 40_999)[0] == []
    actions, mem = supervise(obs(beat=stale), mem, WD, T0 + 41_000)
    assert [a.kind for a in actions if isinstance(a, Alert)] == ["process_unkillable"]
    assert supervise(obs(beat=stale), mem, WD, T0 + 50_000)[0] == []


def test_new_pid_after_term_is_our_restart_not_a_crash() -> None:
    mem = seen(obs(beat=fresh()), T0 + 30_000)
    _, mem = supervise(obs(beat=Beat(100, 9.0, {})), mem, WD, T0 + 31_000)
    restarted = obs(pid=200, start_ms=T0 + 33_000, beat=fresh(200))
    actions, mem = supervise(restarted, mem, WD, T0 + 33_500)
    assert actions == []
    assert (mem.crashes_ms, mem.restarts_ms, mem.term_pid) == ((), (T0 + 31_000,), 0)


def test_heartbeat_from_another_pid_counts_as_none_but_not_within_startup_grace() -> None:
    other = fresh(pid=999)
    mem = seen(obs(beat=other), T0 + 1000)
    assert supervise(obs(beat=other), mem, WD, T0 + 19_000)[0] == []
    actions, _ = supervise(obs(beat=other), mem, WD, T0 + 21_000)
    assert actions[0] == Signal(
        "feed", "TERM", 100, "heartbeat pid 999 is not supervisord's pid 100 21.0 s after the start"
    )


def test_stale_main_progress_is_terminated_for_the_feed_only() -> None:
    feed = obs(beat=fresh(progress_age_s=180.5))
    actions, _ = supervise(feed, seen(obs(beat=fresh()), T0 + 200_000), WD, T0 + 201_000)
    assert actions[0] == Signal(
        "feed", "TERM", 100, "progress kline 180.5 s old exceeds progress_stale_after_s=180"
    )
    trader = obs(beat=fresh(progress_age_s=180.5), program="trader")
    mem = seen(obs(beat=fresh(), program="trader"), T0 + 200_000)
    assert supervise(trader, mem, WD, T0 + 201_000)[0] == []


def test_progress_that_never_happened_ages_from_the_start() -> None:
    never = obs(beat=fresh(progress_age_s=None), program="guard")
    mem = seen(never, T0 + 100_000)
    assert supervise(never, mem, WD, T0 + 180_000)[0] == []
    actions, _ = supervise(never, mem, WD, T0 + 181_000)
    assert isinstance(actions[0], Signal) and "progress reconcile 181.0 s" in actions[0].reason


def test_program_stopped_by_the_operator_is_never_touched() -> None:
    mem = seen(obs(beat=fresh()), T0 + 30_000)
    stopped = obs("STOPPED", pid=0, beat=Beat(100, 500.0, {}))
    for t in range(31_000, 3_000_000, 50_000):
        actions, mem = supervise(stopped, mem, WD, T0 + t)
        assert actions == []
    assert not mem.is_backed_off


def test_start_after_operator_stop_is_not_counted_as_a_crash() -> None:
    mem = seen(obs(beat=fresh()), T0 + 30_000)
    _, mem = supervise(obs("STOPPED", pid=0), mem, WD, T0 + 31_000)
    actions, mem = supervise(obs(pid=200, start_ms=T0 + 40_000), mem, WD, T0 + 40_500)
    assert [a.event for a in actions if isinstance(a, Note)] == ["process_started_by_operator"]
    assert mem.crashes_ms == ()


def crash_loop(
    mem: Memory, first_ms: int, count: int, program: str = "feed"
) -> tuple[list[Action], Memory]:
    """`count` crashes 2.5 s apart (supervisord respawns), observed once each."""
    actions: list[Action] = []
    for i in range(count):
        spawn_ms = first_ms + 2500 * (i + 1)
        o = obs(pid=200 + i, start_ms=spawn_ms, beat=None, program=program)
        actions, mem = supervise(o, mem, WD, spawn_ms + 100)
        if calls(actions):
            return actions, mem
    return actions, mem


def test_fourth_crash_in_the_window_backs_off_with_an_escalation_alert() -> None:
    mem = seen(obs(beat=fresh()), T0 + 30_000)
    actions, mem = crash_loop(mem, T0 + 30_000, 3)
    assert calls(actions) == [] and len(mem.crashes_ms) == 3
    actions, mem = crash_loop(mem, T0 + 37_500, 1)
    stop = Stop("feed", 60.0, "4 crashes in 300 s exceed crash_delay_after=3")
    assert calls(actions) == [
        stop,
        Alert(
            "feed",
            "feed_backed_off",
            "feed backed off for 60 s: 4 crashes in 300 s exceed crash_delay_after=3",
        ),
    ]
    backed_off_ms = T0 + 40_100
    assert (mem.is_backed_off, mem.start_due_ms) == (True, backed_off_ms + 60_000)
    stopped = obs("STOPPED", pid=0, start_ms=T0 + 40_000)
    assert supervise(stopped, mem, WD, backed_off_ms + 59_999)[0] == []
    actions, mem = supervise(stopped, mem, WD, backed_off_ms + 60_000)
    assert actions == [Start("feed", "back-off 1 elapsed (0.0 s past due)")]
    assert mem.is_start_expected and not mem.is_backed_off
    # It crashes on: the second back-off waits twice as long.
    _, mem = supervise(
        obs(pid=300, start_ms=backed_off_ms + 60_000), mem, WD, backed_off_ms + 60_500
    )
    assert mem.crashes_ms == ()
    actions, mem = crash_loop(mem, backed_off_ms + 60_000, 4)
    assert [a.retry_in_s for a in actions if isinstance(a, Stop)] == [120.0]


def test_back_off_delay_is_capped() -> None:
    mem = Memory(last_pid=100, last_start_ms=T0, backoffs=10)
    actions, mem = crash_loop(mem, T0, 4)
    assert [a.retry_in_s for a in actions if isinstance(a, Stop)] == [600.0]


@pytest.mark.parametrize(
    ("program", "kind"),
    [
        ("trader", "trader_backed_off"),
        ("guard", "guard_down"),
        ("reporter", "process_backed_off"),
    ],
)
def test_back_off_alert_names_what_the_rest_of_the_system_does(program: str, kind: str) -> None:
    mem = Memory(last_pid=100, last_start_ms=T0)
    actions, _ = crash_loop(mem, T0, 4, program)
    assert [a.kind for a in actions if isinstance(a, Alert)] == [kind]


def test_crashes_older_than_the_window_are_forgotten() -> None:
    mem = Memory(last_pid=100, last_start_ms=T0)
    _, mem = crash_loop(mem, T0, 3)
    actions, mem = crash_loop(mem, T0 + 310_000, 1)
    assert calls(actions) == [] and len(mem.crashes_ms) == 1


def test_our_restarts_and_crashes_together_over_max_restarts_back_off() -> None:
    mem = Memory(last_pid=100, last_start_ms=T0, restarts_ms=(T0 + 1, T0 + 2, T0 + 3))
    _, mem = crash_loop(mem, T0, 2)
    actions, mem = crash_loop(mem, T0 + 5000, 1)
    assert calls(actions)[0] == Stop(
        "feed", 60.0, "3 restarts and 3 crashes in 300 s exceed max_restarts=5"
    )


def test_fatal_is_retried_after_the_base_delay_doubling_up_to_the_cap() -> None:
    mem = seen(obs(beat=fresh()), T0 + 30_000)
    t = T0 + 40_000
    delays = []
    for _ in range(8):
        actions, mem = supervise(obs("FATAL", pid=0), mem, WD, t)
        alert = [a for a in actions if isinstance(a, Alert)]
        assert [a.kind for a in alert] == ["process_fatal"]
        delay_ms = mem.start_due_ms - t
        delays.append(delay_ms / 1000)
        assert supervise(obs("FATAL", pid=0), mem, WD, t + delay_ms - 1)[0] == []
        actions, mem = supervise(obs("FATAL", pid=0), mem, WD, t + delay_ms)
        assert calls(actions) == [Start("feed", f"FATAL retry {len(delays)}")]
        t += delay_ms + 3000  # the start fails again and supervisord gives up
        spawn = obs("BACKOFF", pid=0, start_ms=t - 2000)
        _, mem = supervise(spawn, mem, WD, t - 1000)
    assert delays == [10, 20, 40, 80, 160, 320, 600, 600]


def test_guard_fatal_alert_is_guard_down() -> None:
    actions, _ = supervise(obs("FATAL", pid=0, program="guard"), Memory(), WD, T0)
    assert [a.kind for a in actions if isinstance(a, Alert)] == ["guard_down"]


def test_fatal_attempts_reset_once_the_program_runs_past_its_grace() -> None:
    mem = Memory(last_pid=100, last_start_ms=T0, fatal_attempts=4)
    _, mem = supervise(obs(pid=200, start_ms=T0 + 10_000, beat=fresh(200)), mem, WD, T0 + 30_000)
    assert mem.fatal_attempts == 0


def test_backed_off_program_started_by_someone_else_cancels_the_back_off() -> None:
    mem = Memory(
        last_state="STOPPED",
        last_pid=100,
        last_start_ms=T0,
        is_backed_off=True,
        start_due_ms=T0 + 60_000,
        backoffs=1,
    )
    actions, mem = supervise(obs(pid=200, start_ms=T0 + 5000), mem, WD, T0 + 5500)
    assert "back_off_cancelled" in [a.event for a in actions if isinstance(a, Note)]
    assert (mem.is_backed_off, mem.start_due_ms) == (False, 0)


def test_memory_round_trips_through_json() -> None:
    mem = Memory(
        last_state="RUNNING",
        last_pid=7,
        restarts_ms=(1, 2),
        is_backed_off=True,
        start_due_ms=99,
        backoffs=2,
    )
    encoded = msgspec.json.encode({"feed": mem})
    assert msgspec.json.decode(encoded, type=dict[str, Memory]) == {"feed": mem}


def test_crash_looping_guard_is_never_backed_off_and_alerts_guard_down_each_loop() -> None:
    mem = seen(obs(beat=fresh(), program="guard"), T0 + 30_000)
    actions, mem = crash_loop(mem, T0 + 30_000, 4, "guard")
    assert not [a for a in actions if isinstance(a, Stop)]
    alerts = [a for a in calls(actions) if isinstance(a, Alert)]
    assert [a.kind for a in alerts] == ["guard_down"]
    assert "not backed off, restarted at once" in alerts[0].detail
    assert (mem.is_backed_off, mem.start_due_ms, mem.crashes_ms) == (False, 0, ())
    # It crashes on: no back-off ever, and every further loop alerts again.
    actions, mem = crash_loop(mem, T0 + 42_000, 4, "guard")
    assert [type(a) for a in calls(actions)] == [Alert]
    assert not mem.is_backed_off


def test_fatal_guard_is_started_at_once_with_an_alert_every_time() -> None:
    mem = seen(obs(beat=fresh(), program="guard"), T0 + 30_000)
    t = T0 + 40_000
    for attempt in (1, 2, 3):
        actions, mem = supervise(obs("FATAL", pid=0, program="guard"), mem, WD, t)
        assert [type(a) for a in calls(actions)] == [Alert, Start]
        alert, start = calls(actions)
        assert isinstance(alert, Alert) and alert.kind == "guard_down"
        assert f"retry {attempt} now" in alert.detail
        assert start == Start("guard", f"FATAL retry {attempt}, at once")
        assert mem.start_due_ms == 0 and mem.is_start_expected
        t += 3000  # the start fails again and supervisord gives up: FATAL at the next check
        _, mem = supervise(obs("BACKOFF", pid=0, start_ms=t - 2000, program="guard"), mem, WD, t)
        t += 500


def test_guard_stopped_by_an_older_watchdogs_back_off_is_started_at_once() -> None:
    mem = Memory(
        last_state="STOPPED",
        last_pid=100,
        last_start_ms=T0,
        is_backed_off=True,
        start_due_ms=T0 + 600_000,
        backoffs=3,
    )
    stopped = obs("STOPPED", pid=0, program="guard")
    actions, mem = supervise(stopped, mem, WD, T0 + 1000)
    assert [type(a) for a in calls(actions)] == [Start]
    assert not mem.is_backed_off
    # A guard the operator stopped is still never touched.
    operator = seen(obs(beat=fresh(), program="guard"), T0 + 30_000)
    assert supervise(stopped, operator, WD, T0 + 31_000)[0] == []
