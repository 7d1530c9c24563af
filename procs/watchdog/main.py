"""The watchdog (supervisord program `watchdog`, `python -m procs.watchdog [--mode paper|live]`):
restarts hung programs and backs off crash-looping ones, only through supervisord (DESIGN-RULES
5-11, 22).

Reads: the shared-memory heartbeat table `slt-<instance>-heartbeats` and supervisord's
getAllProcessInfo over $run_dir/supervisor/supervisor.sock (credentials from
SLT_SUPERVISOR_USER/SLT_SUPERVISOR_PASSWORD, else $run_dir/supervisor/credentials), every
`watchdog.check_interval_s`, for each of `watchdog.programs`. The decisions come from
`procs.watchdog.logic.restarts.supervise`; this module performs them (signalProcess TERM/KILL,
stopProcess for a back-off, startProcess), each call with `rpc_timeout_s`, and logs one line each.
If supervisord or the heartbeat table cannot be read (or its own heartbeat does not round-trip)
it logs, alerts and does nothing: it never restarts a program because its own channel failed.
Publishes: alerts (ERROR `alert` lines, and the Redis alerts stream when Redis answers).
Owns: its heartbeat slot `watchdog` (progress `check`), $run_dir/watchdog/state.json (its own
back-off stops and pending delayed starts, written atomically before each action), and the
instance lock `ipc://@slt-<instance>-watchdog`.
Every `service_check_interval_s` it probes Redis (PING), PostgreSQL (SELECT 1) and the exchange
(GET /fapi/v1/ping): alerts only, never a restart; `service_degraded`/`service_recovered` on
changes. Exit codes: 0 after SIGTERM/SIGINT, 2 configuration error, 1 anything else.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp
import msgspec

from procs.watchdog.logic import restarts as r
from procs.watchdog.probes import probe_services
from shared import log
from shared.cache import Cache, redis_url
from shared.config import Config
from shared.process import cancel_tasks, process_main, wait_tasks
from shared.shm.heartbeat import Heartbeat, HeartbeatReader, HeartbeatWriter, run_heartbeat
from shared.shm.mirror import mirror_heartbeat
from shared.shm.segment import SegmentMissingError, ShmError
from shared.store.alerts import Alerter
from shared.store.durable import save_atomically
from shared.supervisor import (
    ProcessInfo,
    SupervisorClient,
    SupervisorRefusedError,
    SupervisorUnavailableError,
    stack_supervisor,
)

PROCESS = "watchdog"
ALERT_QUEUE = 100  # alerts waiting to be sent; overflow drops the oldest
QueuedAlert = tuple[str, str, dict[str, str]]  # kind, detail, subject (program= or service=)


def load_memory(path: Path, logger: log.EventLogger) -> dict[str, r.Memory]:
    """Return the persisted per-program memory; {} when absent or unreadable (logged)."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=dict[str, r.Memory])
    except FileNotFoundError:
        return {}
    except (OSError, msgspec.DecodeError) as e:
        logger.warning("state_unreadable", path=str(path), error=str(e)[:200])
        return {}


def save_memory(path: Path, memory: dict[str, r.Memory]) -> None:
    """Write the memory atomically and durably (shared/store/durable.py)."""
    save_atomically(path, msgspec.json.encode(memory))


def observation(info: ProcessInfo, beat: Heartbeat | None, now_ns: int) -> r.Observation:
    """Build the policy's input; heartbeat ages come from CLOCK_MONOTONIC."""
    aged = None
    if beat is not None:
        progress = {name: beat.progress_age_s(name, now_ns) for name in beat.progress_ns}
        aged = r.Beat(beat.pid, beat.age_s(now_ns), progress)
    return r.Observation(info.name, info.state, info.pid, info.start_ms, aged)


class Watchdog:
    """The check loop's state: memory per program, the heartbeat reader, channel health."""

    def __init__(
        self,
        cfg: Config,
        instance: str,
        client: SupervisorClient,
        alerts: asyncio.Queue[QueuedAlert],
        logger: log.EventLogger,
    ) -> None:
        self.cfg, self.wd, self.instance = cfg, cfg.watchdog, instance
        self.client, self.alerts, self.log = client, alerts, logger
        self.state_path = Path(cfg.run.dir) / "watchdog" / "state.json"
        self.memory = load_memory(self.state_path, logger)
        self.reader: HeartbeatReader | None = None
        self.last_check_ns = 0
        self.channel_error = ""  # the failing channel's last error ("" = healthy)
        self._throttle = log.Throttle(self.wd.alert_interval_s)

    def alert(self, kind: str, detail: str, **subject: str) -> None:
        """Queue an alert about `subject` (program=, service=) for the sender task; a full
        queue drops its oldest entry."""
        if self.alerts.full():
            self.alerts.get_nowait()
        self.alerts.put_nowait((kind, detail, subject))

    def channel_failed(self, event: str, error: str) -> None:
        """Log (rate-limited) and alert that a supervision channel failed; nothing is acted on."""
        if not self.channel_error:
            self._throttle.reset()
        self.channel_error = error
        should_log, suppressed = self._throttle.allow(time.monotonic())
        if should_log:
            self.log.warning(event, error=error[:300], suppressed=suppressed)
        self.alert(event, f"watchdog cannot supervise: {error[:200]}")

    def read_heartbeats(self, now_ns: int) -> dict[str, Heartbeat] | None:
        """Return the table's heartbeats ({} before the table exists), None when it failed."""
        try:
            if self.reader is None:
                self.reader = HeartbeatReader(self.instance)
            beats = self.reader.read()
        except SegmentMissingError:
            return {}
        except ShmError as e:
            self.channel_failed("heartbeat_table_unreadable", str(e))
            return None
        own = beats.get(PROCESS)
        if own is None or own.pid != os.getpid() or own.age_s(now_ns) > self.wd.stale_after_s:
            seen = "missing" if own is None else f"pid {own.pid} age {own.age_s(now_ns):.2f} s"
            self.channel_failed(
                "heartbeat_channel_failed", f"own heartbeat does not round-trip ({seen})"
            )
            return None
        return beats

    async def check(self) -> None:
        """One supervision round: read, decide, journal, act."""
        now_ns = time.monotonic_ns()
        beats = self.read_heartbeats(now_ns)
        if beats is None:
            return
        try:
            infos = {i.name: i for i in await self.client.get_all_process_info()}
        except SupervisorUnavailableError as e:
            self.channel_failed("supervisor_unavailable", str(e))
            return
        if self.channel_error:
            self.log.info("supervision_recovered", after=self.channel_error[:200])
            self.channel_error = ""
        now_ms = time.time_ns() // 1_000_000
        old, plans = dict(self.memory), []
        for program in self.wd.programs:
            info = infos.get(program)
            if info is None:
                continue  # not configured in supervisord (logged once at the start)
            obs = observation(info, beats.get(program), now_ns)
            actions, self.memory[program] = r.supervise(
                obs, self.memory.get(program, r.Memory()), self.wd, now_ms
            )
            plans.append((program, actions))
        if self.memory != old:
            save_memory(self.state_path, self.memory)  # journal the intent before acting
        failed: list[str] = []
        for program, actions in plans:
            for action in actions:
                try:
                    await self.perform(action)
                except SupervisorRefusedError as e:
                    self.log.warning(
                        "action_refused", program=program, fault=e.fault, error=str(e)[:300]
                    )
                    failed.append(program)
                    break
                except SupervisorUnavailableError as e:
                    self.channel_failed("supervisor_unavailable", str(e))
                    failed.append(program)
                    break
        for program in failed:  # not done: decide again next round
            self.memory[program] = old.get(program, r.Memory())
        if failed:
            save_memory(self.state_path, self.memory)
        self.last_check_ns = time.monotonic_ns()

    async def perform(self, action: r.Action) -> None:
        """Carry out one action; raises SupervisorUnavailableError/SupervisorRefusedError."""
        p = action.program
        if isinstance(action, r.Signal):
            info = await self.client.get_process_info(p)
            if info.pid != action.pid or info.state != r.RUNNING:
                self.log.info(
                    "signal_skipped",
                    program=p,
                    signal=action.signal,
                    pid=action.pid,
                    now_pid=info.pid,
                    state=info.state,
                )
                return
            if action.signal == "TERM":
                self.log.warning("process_hung", program=p, pid=action.pid, reason=action.reason)
                await self.client.signal_process(p, "TERM")
                self.log.info("process_signalled", program=p, signal="TERM", pid=action.pid)
            else:
                await self.client.signal_process(p, action.signal)
                self.log.warning(
                    "process_killed",
                    program=p,
                    signal=action.signal,
                    pid=action.pid,
                    reason=action.reason,
                )
        elif isinstance(action, r.Stop):
            await self.client.stop_process(p, wait=False)
            self.log.warning(
                "process_backed_off", program=p, retry_in_s=action.retry_in_s, reason=action.reason
            )
        elif isinstance(action, r.Start):
            await self.client.start_process(p, wait=False)
            self.log.info("process_started", program=p, reason=action.reason)
        elif isinstance(action, r.Alert):
            self.alert(action.kind, action.detail, program=p)
        else:
            self.log.info(action.event, program=p, reason=action.reason)

    async def loop(self) -> None:
        """Check every check_interval_s, forever; a failing round is logged and the next runs."""
        try:
            names = {i.name for i in await self.client.get_all_process_info()}
            for program in sorted(set(self.wd.programs) - names):
                self.log.warning("program_not_supervised", program=program)
        except SupervisorUnavailableError as e:
            self.channel_failed("supervisor_unavailable", str(e))
        while True:
            started_s = time.monotonic()
            try:
                await self.check()
            except Exception as e:  # top of the loop: the next round starts from fresh reads
                self.log.exception("check_failed", error=repr(e)[:300])
            elapsed_s = time.monotonic() - started_s
            await asyncio.sleep(max(0.0, self.wd.check_interval_s - elapsed_s))


async def send_alerts(
    queue: asyncio.Queue[QueuedAlert], cfg: Config, cache: Cache, logger: log.EventLogger
) -> None:
    """Send queued alerts forever, throttled per program and kind (Redis has its deadline)."""
    alerters: dict[tuple[tuple[str, str], ...], Alerter] = {}
    while True:
        kind, detail, subject = await queue.get()
        key = tuple(sorted(subject.items()))
        alerter = alerters.get(key)
        if alerter is None:
            alerter = alerters[key] = Alerter(PROCESS, logger, cfg.watchdog.alert_interval_s)
            alerter.cache = cache
        await alerter.send(kind, detail, **subject)


async def check_services(cfg: Config, watchdog: Watchdog, cache: Cache) -> None:
    """Probe the services every service_check_interval_s forever; alert on changes only.

    The first probe waits one interval: at a stack start the services come up with us.
    """
    degraded: dict[str, str] = {}
    async with aiohttp.ClientSession() as session:
        while True:
            await asyncio.sleep(cfg.watchdog.service_check_interval_s)
            for service, error in (await probe_services(cfg, cache, session)).items():
                if error and service not in degraded:
                    watchdog.log.warning("service_degraded", service=service, error=error)
                    watchdog.alert(
                        "service_degraded", f"{service} does not answer: {error}", service=service
                    )
                elif not error and service in degraded:
                    watchdog.log.info("service_recovered", service=service)
                if error:
                    degraded[service] = error
                else:
                    degraded.pop(service, None)


async def serve(cfg: Config, instance: str, logger: log.EventLogger, _stop: asyncio.Event) -> None:
    """Run the watchdog until cancelled."""
    wd = cfg.watchdog
    run_dir = Path(cfg.run.dir)
    client = stack_supervisor(run_dir, os.environ, wd.rpc_timeout_s)
    url = redis_url(cfg.redis.url, cfg.redis.private_port)
    alerts: asyncio.Queue[QueuedAlert] = asyncio.Queue(ALERT_QUEUE)
    async with Cache(url, instance, cfg.redis.socket_timeout_s) as cache:
        watchdog = Watchdog(cfg, instance, client, alerts, logger)
        writer = HeartbeatWriter(instance, PROCESS)
        writer.beat(0.0)  # the first round trip of its own heartbeat needs a beat
        logger.info(
            "watchdog_started",
            instance=instance,
            programs=",".join(wd.programs),
            remembered=len(watchdog.memory),
        )
        spawn = asyncio.get_running_loop().create_task
        tasks = [
            spawn(
                run_heartbeat(
                    writer, wd.heartbeat_interval_s, lambda: {"check": watchdog.last_check_ns}
                )
            ),
            spawn(watchdog.loop()),
            spawn(send_alerts(alerts, cfg, cache, logger)),
            spawn(check_services(cfg, watchdog, cache)),
            spawn(mirror_heartbeat(cache, PROCESS, wd.heartbeat_interval_s)),
        ]
        try:
            await wait_tasks(tasks)
        finally:
            await cancel_tasks(tasks)
            writer.close()
            if watchdog.reader is not None:
                watchdog.reader.close()


def main(argv: list[str] | None = None) -> int:
    """Run the watchdog; return the exit code (0 clean stop, 2 configuration error, 1 fatal)."""
    return process_main(PROCESS, "The watchdog.", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
