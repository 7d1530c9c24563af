"""The watchdog's restart policy (DESIGN-RULES 5-10): pure, one program at a time, time passed in.

`supervise(observation, memory, config, now_ms)` returns the actions to take and the program's
new `Memory`, which the watchdog persists (so a restarted watchdog still restarts a program it
backed off, and never one the operator stopped). Every action carries a reason for the log.

    RUNNING past startup_grace_s, heartbeat missing / from another pid / older than
      stale_after_s, or main progress older than progress_stale_after_s   -> Signal TERM
    TERM sent, the same pid RUNNING kill_after_s later                     -> Signal KILL
    KILL sent, the same pid RUNNING kill_after_s later                     -> Alert (once)
    restarts + crashes in restart_window_s > max_restarts, or
      crashes in the window > crash_delay_after                           -> Stop, Alert, and
      Start crash_delay_s later (doubling per repeated back-off, capped at fatal_retry_cap_s)
    FATAL (supervisord never retries it)                                   -> Alert, Start after
      fatal_retry_base_s, doubling per attempt up to fatal_retry_cap_s
    STOPPED and not stopped by us                                          -> nothing (operator)

The guard (NEVER_DELAYED) is never held back: while it is down nothing places a protective stop
(its lease runs out, so the trader sends no entry), so it is retried at once and a person is
paged each time instead:
    guard crash loop (the limits above)          -> Alert guard_down only: no Stop, supervisord
                                                    keeps restarting it; the counts start afresh,
                                                    so every further loop alerts again
    guard FATAL                                  -> Alert guard_down and Start, at every check
                                                    that finds it FATAL
    guard STOPPED by an older watchdog's back-off -> Start at once
    EXITED, STOPPING, and STARTING/BACKOFF below the crash-loop limits     -> nothing

A heartbeat whose pid is not supervisord's pid for the program is ignored (rule 6): it counts as
no heartbeat. Within startup_grace_s of a start nothing is required. A crash is a new spawn
(supervisord start time or pid changed) that neither we (TERM/KILL/start) nor the operator
(start after STOPPED or FATAL) caused; `supervisorctl restart` therefore counts as one.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from shared.config.ops import WatchdogConfig

# The progress that proves a program does its work; programs not named here are checked for
# liveness only.
MAIN_PROGRESS = {"feed": "kline", "guard": "reconcile"}
# Alert kind when a program is backed off: what the rest of the system does about it.
ESCALATION = {
    "trader": "trader_backed_off",  # the guard halts entries on trader silence by itself
    "feed": "feed_backed_off",  # the guard goes to REST polling by itself
    "guard": "guard_down",  # page a human: only the exchange-resident stops protect now
}
RUNNING, STARTING, BACKOFF, STOPPED = "RUNNING", "STARTING", "BACKOFF", "STOPPED"
EXITED, FATAL, STOPPING = "EXITED", "FATAL", "STOPPING"
ALIVE_STATES = (RUNNING, STARTING, BACKOFF)
# Retried at once, never backed off: the error kernel (DESIGN-RULES 4, 10).
NEVER_DELAYED = frozenset({"guard"})


@dataclass(frozen=True)
class Beat:
    """A program's last heartbeat, aged by the caller with CLOCK_MONOTONIC."""

    pid: int
    age_s: float
    progress_age_s: dict[str, float | None]  # name -> seconds since that progress (None = never)


@dataclass(frozen=True)
class Observation:
    """What supervisord and the heartbeat table say about one program at now_ms."""

    program: str
    state: str  # supervisord state name
    pid: int  # supervisord's pid (0 = none)
    start_ms: int  # supervisord's start time of the current/last spawn, UTC ms (0 = never)
    beat: Beat | None  # None = no slot in the table


class Memory(msgspec.Struct, frozen=True, kw_only=True):
    """What the watchdog remembers about one program between checks (persisted as JSON)."""

    last_state: str = ""  # supervisord state at the previous check
    last_pid: int = 0  # last non-zero pid seen
    last_start_ms: int = 0  # start time of the last spawn seen
    restarts_ms: tuple[int, ...] = ()  # our restarts (TERM, start) in the window
    crashes_ms: tuple[int, ...] = ()  # spawns we did not cause, in the window
    is_start_expected: bool = False  # the next spawn is ours, not a crash
    term_pid: int = 0  # TERM sent to this pid...
    term_ms: int = 0  # ...at this time
    kill_ms: int = 0  # KILL sent to term_pid at this time (0 = not yet)
    is_unkillable_alerted: bool = False
    is_backed_off: bool = False  # we stopped it; start it at start_due_ms
    start_due_ms: int = 0  # pending delayed start (back-off or FATAL retry), 0 = none
    backoffs: int = 0  # back-offs in a row (the delay doubles)
    fatal_attempts: int = 0  # FATAL retries in a row (the delay doubles)


@dataclass(frozen=True)
class Signal:
    program: str
    signal: str  # "TERM" or "KILL"
    pid: int  # the process meant; the caller skips the signal if the pid changed
    reason: str


@dataclass(frozen=True)
class Start:
    program: str
    reason: str


@dataclass(frozen=True)
class Stop:
    program: str
    retry_in_s: float  # the watchdog starts it again after this
    reason: str


@dataclass(frozen=True)
class Alert:
    program: str
    kind: str
    detail: str


@dataclass(frozen=True)
class Note:
    """A decision that needs no call, only a log line."""

    program: str
    event: str
    reason: str


Action = Signal | Start | Stop | Alert | Note


def _delay_s(base_s: float, attempt: int, cap_s: float) -> float:
    return float(min(cap_s, base_s * 2.0 ** min(attempt, 60)))


def _observe_spawn(obs: Observation, mem: Memory, actions: list[Action], now_ms: int) -> Memory:
    """Count a new spawn as ours, the operator's or a crash."""
    is_new = obs.start_ms != 0 and mem.last_start_ms != 0 and obs.start_ms != mem.last_start_ms
    is_new = is_new or (obs.pid != 0 and mem.last_pid != 0 and obs.pid != mem.last_pid)
    crashes = mem.crashes_ms
    is_expected = mem.is_start_expected
    if is_new:
        if is_expected:
            is_expected = False
        elif mem.last_state in (STOPPED, FATAL):
            actions.append(
                Note(
                    obs.program,
                    "process_started_by_operator",
                    f"it was {mem.last_state} and is running again",
                )
            )
        else:
            crashes = (*crashes, now_ms)
            actions.append(
                Note(
                    obs.program,
                    "process_crashed",
                    f"new spawn (pid {obs.pid or 'none yet'}, state {obs.state}) "
                    f"that the watchdog did not cause",
                )
            )
    return msgspec.structs.replace(
        mem,
        last_state=obs.state,
        last_pid=obs.pid or mem.last_pid,
        last_start_ms=obs.start_ms or mem.last_start_ms,
        crashes_ms=crashes,
        is_start_expected=is_expected,
    )


def _prune(mem: Memory, wd: WatchdogConfig, now_ms: int) -> Memory:
    since_ms = now_ms - wd.restart_window_s * 1000
    return msgspec.structs.replace(
        mem,
        restarts_ms=tuple(t for t in mem.restarts_ms if t > since_ms),
        crashes_ms=tuple(t for t in mem.crashes_ms if t > since_ms),
    )


def _stopped(obs: Observation, mem: Memory, now_ms: int) -> tuple[list[Action], Memory]:
    mem = msgspec.structs.replace(mem, term_pid=0, term_ms=0, kill_ms=0)
    is_due = now_ms >= mem.start_due_ms or obs.program in NEVER_DELAYED
    if not mem.is_backed_off or not is_due:
        return [], mem  # operator intent, or our back-off still running
    waited_s = (now_ms - mem.start_due_ms) / 1000
    start = Start(obs.program, f"back-off {mem.backoffs} elapsed ({waited_s:.1f} s past due)")
    return [start], msgspec.structs.replace(
        mem,
        is_backed_off=False,
        start_due_ms=0,
        is_start_expected=True,
        restarts_ms=(*mem.restarts_ms, now_ms),
    )


def _fatal(
    obs: Observation, mem: Memory, wd: WatchdogConfig, now_ms: int
) -> tuple[list[Action], Memory]:
    actions: list[Action] = []
    if mem.is_backed_off:  # started by someone else after our back-off, and it failed
        mem = msgspec.structs.replace(mem, is_backed_off=False, start_due_ms=0)
    # FATAL has its own exponential retry: spawn failures do not also count as a crash loop.
    mem = msgspec.structs.replace(mem, crashes_ms=(), term_pid=0, term_ms=0, kill_ms=0)
    if obs.program in NEVER_DELAYED:
        attempt = mem.fatal_attempts + 1
        detail = (
            f"{obs.program} is FATAL (supervisord gave up starting it); retry {attempt} now, "
            "not delayed: only the exchange-resident stops protect and entries are held"
        )
        actions += [
            Alert(obs.program, ESCALATION.get(obs.program, "process_fatal"), detail),
            Start(obs.program, f"FATAL retry {attempt}, at once"),
        ]
        return actions, msgspec.structs.replace(
            mem, start_due_ms=0, fatal_attempts=attempt, is_start_expected=True
        )
    if mem.start_due_ms == 0:
        delay_s = _delay_s(wd.fatal_retry_base_s, mem.fatal_attempts, wd.fatal_retry_cap_s)
        kind = "guard_down" if obs.program == "guard" else "process_fatal"
        detail = (
            f"{obs.program} is FATAL (supervisord gave up starting it); "
            f"retry {mem.fatal_attempts + 1} in {delay_s:g} s"
        )
        actions.append(Alert(obs.program, kind, detail))
        mem = msgspec.structs.replace(mem, start_due_ms=now_ms + round(delay_s * 1000))
        return actions, mem
    if now_ms < mem.start_due_ms:
        return actions, mem
    actions.append(Start(obs.program, f"FATAL retry {mem.fatal_attempts + 1}"))
    return actions, msgspec.structs.replace(
        mem, start_due_ms=0, fatal_attempts=mem.fatal_attempts + 1, is_start_expected=True
    )


def _crash_loop_reason(mem: Memory, wd: WatchdogConfig) -> str:
    events = len(mem.restarts_ms) + len(mem.crashes_ms)
    if events > wd.max_restarts:
        return (
            f"{len(mem.restarts_ms)} restarts and {len(mem.crashes_ms)} crashes in "
            f"{wd.restart_window_s:g} s exceed max_restarts={wd.max_restarts}"
        )
    if len(mem.crashes_ms) > wd.crash_delay_after:
        return (
            f"{len(mem.crashes_ms)} crashes in {wd.restart_window_s:g} s exceed "
            f"crash_delay_after={wd.crash_delay_after}"
        )
    return ""


def _back_off(
    obs: Observation, mem: Memory, wd: WatchdogConfig, now_ms: int, reason: str
) -> tuple[list[Action], Memory]:
    if obs.program in NEVER_DELAYED:  # alert, and let supervisord restart it at once
        detail = (
            f"{obs.program} crash-loops ({reason}); not backed off, restarted at once: only the "
            "exchange-resident stops protect meanwhile and entries are held"
        )
        alert = Alert(obs.program, ESCALATION.get(obs.program, "process_backed_off"), detail)
        return [alert], msgspec.structs.replace(mem, restarts_ms=(), crashes_ms=())
    delay_s = _delay_s(wd.crash_delay_s, mem.backoffs, wd.fatal_retry_cap_s)
    kind = ESCALATION.get(obs.program, "process_backed_off")
    actions: list[Action] = [
        Stop(obs.program, delay_s, reason),
        Alert(obs.program, kind, f"{obs.program} backed off for {delay_s:g} s: {reason}"),
    ]
    return actions, msgspec.structs.replace(
        mem,
        is_backed_off=True,
        start_due_ms=now_ms + round(delay_s * 1000),
        backoffs=mem.backoffs + 1,
        restarts_ms=(),
        crashes_ms=(),
        is_start_expected=False,
        term_pid=0,
        term_ms=0,
        kill_ms=0,
    )


def _hang_reason(obs: Observation, wd: WatchdogConfig, up_s: float) -> str:
    beat = obs.beat
    if beat is None:
        return f"no heartbeat {up_s:.1f} s after the start (grace {wd.startup_grace_s:g} s)"
    if beat.pid != obs.pid:
        return (
            f"heartbeat pid {beat.pid} is not supervisord's pid {obs.pid} "
            f"{up_s:.1f} s after the start"
        )
    if beat.age_s > wd.stale_after_s:
        return f"heartbeat {beat.age_s:.2f} s old exceeds stale_after_s={wd.stale_after_s:g}"
    name = MAIN_PROGRESS.get(obs.program)
    if name is None or wd.progress_stale_after_s <= 0:
        return ""
    age_s = beat.progress_age_s.get(name)
    age_s = up_s if age_s is None else age_s  # never happened: as old as the process
    if age_s > wd.progress_stale_after_s:
        return (
            f"progress {name} {age_s:.1f} s old exceeds "
            f"progress_stale_after_s={wd.progress_stale_after_s:g}"
        )
    return ""


def _running(
    obs: Observation, mem: Memory, wd: WatchdogConfig, now_ms: int
) -> tuple[list[Action], Memory]:
    up_s = (now_ms - obs.start_ms) / 1000
    if mem.term_pid and mem.term_pid == obs.pid:
        since_s = (now_ms - mem.term_ms) / 1000
        if mem.kill_ms == 0:
            if since_s < wd.kill_after_s:
                return [], mem
            reason = f"pid {obs.pid} still RUNNING {since_s:.1f} s after TERM"
            kill = Signal(obs.program, "KILL", obs.pid, reason)
            return [kill], msgspec.structs.replace(mem, kill_ms=now_ms)
        if (now_ms - mem.kill_ms) / 1000 >= wd.kill_after_s and not mem.is_unkillable_alerted:
            detail = (
                f"{obs.program} pid {obs.pid} still RUNNING {since_s:.1f} s after TERM and KILL"
            )
            alert = Alert(obs.program, "process_unkillable", detail)
            return [alert], msgspec.structs.replace(mem, is_unkillable_alerted=True)
        return [], mem
    if mem.term_pid:  # a new process: the old one is gone
        mem = msgspec.structs.replace(
            mem, term_pid=0, term_ms=0, kill_ms=0, is_unkillable_alerted=False
        )
    if up_s >= wd.startup_grace_s and mem.fatal_attempts:
        mem = msgspec.structs.replace(mem, fatal_attempts=0)
    if up_s >= wd.restart_window_s and mem.backoffs:
        mem = msgspec.structs.replace(mem, backoffs=0)
    if up_s < wd.startup_grace_s:
        return [], mem
    reason = _hang_reason(obs, wd, up_s)
    if not reason:
        return [], mem
    actions: list[Action] = [
        Signal(obs.program, "TERM", obs.pid, reason),
        Alert(obs.program, "process_hung", f"{obs.program} pid {obs.pid} restarted: {reason}"),
    ]
    return actions, msgspec.structs.replace(
        mem,
        term_pid=obs.pid,
        term_ms=now_ms,
        kill_ms=0,
        is_start_expected=True,
        restarts_ms=(*mem.restarts_ms, now_ms),
    )


def supervise(
    obs: Observation, mem: Memory, wd: WatchdogConfig, now_ms: int
) -> tuple[list[Action], Memory]:
    """Return the actions for one program at now_ms (UTC ms) and its new memory."""
    actions: list[Action] = []
    last_state = mem.last_state
    mem = _prune(_observe_spawn(obs, mem, actions, now_ms), wd, now_ms)
    if obs.state == STOPPED:
        more, mem = _stopped(obs, mem, now_ms)
        return actions + more, mem
    if obs.state == FATAL:
        more, mem = _fatal(obs, mem, wd, now_ms)
        return actions + more, mem
    if last_state == FATAL or (mem.start_due_ms and not mem.is_backed_off):
        mem = msgspec.structs.replace(mem, start_due_ms=0)  # left FATAL: retry no longer due
    if mem.is_backed_off and obs.state in ALIVE_STATES:
        actions.append(
            Note(
                obs.program,
                "back_off_cancelled",
                f"{obs.state} while backed off: started by someone else",
            )
        )
        mem = msgspec.structs.replace(mem, is_backed_off=False, start_due_ms=0)
    if obs.state in ALIVE_STATES:  # EXITED: supervisord restarts it or, by its config, not
        reason = _crash_loop_reason(mem, wd)
        if reason:
            more, mem = _back_off(obs, mem, wd, now_ms, reason)
            return actions + more, mem
    if obs.state == RUNNING:
        more, mem = _running(obs, mem, wd, now_ms)
        return actions + more, mem
    return actions, mem
