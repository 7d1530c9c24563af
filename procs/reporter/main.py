"""The reporter (supervisord program `reporter`, `python -m procs.reporter [--mode paper|live]`):
the daily report, notifications and the status page. It trades nothing and changes nothing.

Reads: PostgreSQL (trades, models, daily reports), the Redis alerts stream (`Keys.alerts`), the
exchange (account, positions, orders, income history and fills for the ledger audit), supervisord's
process list, the shared-memory heartbeat table, the halt flag.
Publishes: Telegram / Discord messages (procs/reporter/notify.py: bounded queues, never in anyone's
way),
the status page on `reporter.host:port` (`/`, `/api/status`, `/metrics`), the daily report
(`daily_reports` row, `<run.dir>/reports/<day>.html`), its heartbeat slot `reporter`.
Owns: `<run.dir>/reporter/cursor.json` (the last alert and trade it notified).

Daily report (the job: procs/reporter/daily.py): at `reporter.report_hour_utc` every day for the
previous UTC day, and at start for yesterday if it is missing. `slt report --date YYYY-MM-DD`
makes one on demand.
Exit codes: 0 clean stop, 2 configuration error, 1 fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import sys
import time
from pathlib import Path

import msgspec
from aiohttp import web

from procs.reporter.daily import make_report
from procs.reporter.notify import Notifier, alert_text, trade_closed_text, trade_opened_text
from procs.reporter.reportdb import has_daily_report, real_trades_touched_since
from procs.reporter.status.collect import StatusSnapshot, collect_status
from procs.reporter.status.web import make_app, start_status_site
from shared import log
from shared.cache import Cache, CacheUnavailableError, redis_url
from shared.config import Config
from shared.exchange.rest import ExchangeClient
from shared.process import cancel_tasks, process_main, wait_tasks
from shared.schemas import bus
from shared.schemas import guard as g
from shared.shm.heartbeat import HeartbeatWriter, run_heartbeat
from shared.shm.mirror import mirror_heartbeat
from shared.store.db import (
    Database,
    DatabaseError,
    DatabaseUnavailableError,
    connect_until_up,
    postgres_dsn,
)
from shared.store.durable import save_atomically
from shared.supervisor import SupervisorClient, stack_supervisor

PROCESS = "reporter"
RETRY_S = 5.0
SNAPSHOT_TTL_S = 1.0
ALERT_BATCH = 200
DAY_MS = 86_400_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def utc_day(ms: int) -> str:
    """Return the UTC day (YYYY-MM-DD) holding `ms`."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date().isoformat()


class Cursor(msgspec.Struct):
    """What has been notified already (kept across restarts)."""

    alert_id: str = "0-0"
    trade_ms: int = 0


class Reporter:
    """The reporter's loops (see the module docstring)."""

    def __init__(
        self,
        cfg: Config,
        db: Database,
        cache: Cache,
        client: ExchangeClient,
        notifier: Notifier,
        supervisor: SupervisorClient,
        logger: log.EventLogger,
    ) -> None:
        self.cfg, self.db, self.cache, self.client = cfg, db, cache, client
        self.notifier, self.supervisor, self.log = notifier, supervisor, logger
        self.cursor_path = Path(cfg.run.dir) / "reporter" / "cursor.json"
        self.cursor = self._load_cursor()
        self.progress: dict[str, int] = {}
        self._snapshot: tuple[float, StatusSnapshot] | None = None
        self.known_stops: set[str] | None = None  # None until the first read

    def _load_cursor(self) -> Cursor:
        try:
            return msgspec.json.decode(self.cursor_path.read_bytes(), type=Cursor)
        except (OSError, msgspec.DecodeError):
            # A first start notifies what happens from now on, not the history.
            return Cursor(alert_id=f"{_now_ms()}-0", trade_ms=_now_ms())

    def _save_cursor(self) -> None:
        save_atomically(self.cursor_path, msgspec.json.encode(self.cursor))

    async def snapshot(self) -> StatusSnapshot:
        """Return the status, collected at most once a second."""
        now = time.monotonic()
        if self._snapshot is None or now - self._snapshot[0] > SNAPSHOT_TTL_S:
            snap = await collect_status(self.cfg, self.supervisor, self.client, self.db, self.cache)
            self._snapshot = (now, snap)
        return self._snapshot[1]

    async def daily(self) -> None:
        """Yesterday's report if missing, then one every day at report_hour_utc."""
        rep = self.cfg.reporter
        while True:
            now = _now_ms()
            yesterday = utc_day(now - DAY_MS)
            due = now % DAY_MS >= rep.report_hour_utc * 3_600_000
            try:
                if due and not await has_daily_report(self.db, yesterday):
                    report, text = await make_report(
                        yesterday, self.cfg, self.db, self.cache, self.client
                    )
                    self.notifier.notify("daily_report", text)
                    self.log.info(
                        "daily_report_made",
                        day=yesterday,
                        trades=report.trades,
                        net_pnl=report.net_pnl_usdt,
                        audit_differences=len(report.audit.differences),
                    )
                self.progress["report"] = time.monotonic_ns()
            except DatabaseError as e:
                self.log.warning("daily_report_failed", day=yesterday, error=str(e)[:300])
                await asyncio.sleep(RETRY_S)
                continue
            next_ms = (now // DAY_MS) * DAY_MS + rep.report_hour_utc * 3_600_000
            if next_ms <= now:
                next_ms += DAY_MS
            await asyncio.sleep(min(60.0, (next_ms - now) / 1000 + 1))

    async def _stops(self) -> None:
        """Notify each protective stop the guard placed (the feed mirrors the open algo orders in
        Redis). The stops open when the reporter starts are known, not announced."""
        raw = await self.cache.get_fields(self.cache.keys.feed_orders())
        stops: dict[str, bus.OrderState] = {}
        for cid, payload in raw.items():
            if "-stop-" not in cid:
                continue
            try:
                order = bus.decode(bus.order_topic("X"), payload)
            except (ValueError, msgspec.DecodeError):
                continue
            if isinstance(order, bus.OrderState):
                stops[cid] = order
        if self.known_stops is not None:
            for cid in stops.keys() - self.known_stops:
                o = stops[cid]
                self.notifier.notify(
                    "stop_placed",
                    f"stop placed: {o.symbol} {o.side} {o.order_type}, trigger {o.price} ({cid})",
                )
        self.known_stops = set(stops)

    async def events(self) -> None:
        """Notify alerts (from the Redis stream), stops placed (the feed's Redis mirror) and real
        trades opened / closed (PostgreSQL)."""
        with contextlib.suppress(CacheUnavailableError):
            await self._stops()  # the stops already there are known, not announced
        while True:
            await asyncio.sleep(self.cfg.reporter.poll_interval_s)
            with contextlib.suppress(CacheUnavailableError):
                for entry_id, raw in await self.cache.read_alerts_after(
                    self.cursor.alert_id, ALERT_BATCH
                ):
                    self.cursor.alert_id = entry_id
                    try:
                        alert = g.decode_alert(raw)
                    except msgspec.DecodeError as e:
                        self.log.warning("bad_message", reason=str(e)[:200], head=raw[:200])
                        continue
                    self.notifier.notify(alert.kind, alert_text(alert))
            with contextlib.suppress(CacheUnavailableError):
                await self._stops()
            try:
                for t in await real_trades_touched_since(self.db, self.cursor.trade_ms):
                    if t.exit_ms is not None and t.exit_ms > self.cursor.trade_ms:
                        self.notifier.notify("trade_closed", trade_closed_text(t))
                    else:
                        self.notifier.notify("trade_opened", trade_opened_text(t))
                    self.cursor.trade_ms = max(self.cursor.trade_ms, t.entry_ms, t.exit_ms or 0)
            except DatabaseUnavailableError as e:
                self.log.warning("trades_unreadable", error=str(e)[:200])
            self._save_cursor()
            self.progress["report"] = time.monotonic_ns()  # alerts and trades looked at


async def serve(cfg: Config, instance: str, logger: log.EventLogger, stop: asyncio.Event) -> None:
    """Run the reporter until cancelled (SIGTERM/SIGINT)."""
    rep = cfg.reporter
    progress: dict[str, int] = {}
    heartbeat = HeartbeatWriter(instance, PROCESS)
    beating = asyncio.get_running_loop().create_task(
        run_heartbeat(heartbeat, rep.heartbeat_interval_s, lambda: dict(progress))
    )
    cache = Cache(redis_url(cfg.redis.url, cfg.redis.private_port), instance, 0.25)
    run_dir = Path(cfg.run.dir)
    supervisor = stack_supervisor(run_dir, os.environ, rep.call_timeout_s)
    tasks: list[asyncio.Task[None]] = []
    runner: web.AppRunner | None = None
    db: Database | None = None
    try:
        db = await connect_until_up(
            postgres_dsn(cfg), cfg.postgres.command_timeout_s, logger, RETRY_S
        )
        async with (
            ExchangeClient(cfg.exchange, cache, logger=logger) as client,
            Notifier(rep, logger) as notifier,
        ):
            reporter = Reporter(cfg, db, cache, client, notifier, supervisor, logger)
            reporter.progress = progress
            runner = await start_status_site(make_app(reporter.snapshot, rep), rep.host, rep.port)
            logger.info(
                "reporter_started",
                status_url=f"http://{rep.host}:{rep.port}/",
                telegram=bool(rep.telegram_chat_id and rep.telegram_bot_token),
                discord=bool(rep.discord_webhook_url),
            )
            spawn = asyncio.get_running_loop().create_task
            tasks += [
                beating,  # a heartbeat that dies must end the process, not leave it unwatched
                spawn(notifier.run()),
                spawn(reporter.daily()),
                spawn(reporter.events()),
                spawn(mirror_heartbeat(cache, PROCESS, rep.heartbeat_interval_s)),
            ]
            await wait_tasks(tasks, stop)
    finally:
        await cancel_tasks([*tasks, beating])
        if runner is not None:
            await runner.cleanup()
        if db is not None:
            await db.close()
        await cache.close()
        heartbeat.close()


def main(argv: list[str] | None = None) -> int:
    """Run the reporter; return the exit code (0 clean stop, 2 configuration error, 1 fatal)."""
    return process_main(PROCESS, "The reporter.", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
