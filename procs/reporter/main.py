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

Daily report: at `reporter.report_hour_utc` every day for the previous UTC day, and at start for
yesterday if it is missing. `slt report --date YYYY-MM-DD` makes one on demand.
Exit codes: 0 clean stop, 2 configuration error, 1 fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import msgspec
from aiohttp import web

from procs.reporter.notify import Notifier, alert_text, trade_closed_text, trade_opened_text
from procs.reporter.reportdb import (
    closed_trades_between,
    has_daily_report,
    real_trades_touched_since,
    save_daily_report,
)
from procs.reporter.status.collect import StatusSnapshot, collect_status
from procs.reporter.status.web import make_app, start_status_site
from shared import log
from shared.cache import Cache, CacheUnavailableError, redis_url
from shared.config import Config
from shared.exchange.errors import ExchangeError
from shared.exchange.rest import ExchangeClient
from shared.process import cancel_tasks, process_main, wait_tasks
from shared.report import daily as rp
from shared.schemas import binance as b
from shared.schemas import bus
from shared.schemas import guard as g
from shared.schemas.records import TradeRecord
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
INCOME_TYPES = ("REALIZED_PNL", "COMMISSION", "FUNDING_FEE")
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


async def fetch_income(client: ExchangeClient, start_ms: int, end_ms: int) -> list[b.Income]:
    """Return the income rows of [start_ms, end_ms) of the audited types (paged, 1000 a page)."""
    rows: list[b.Income] = []
    for kind in INCOME_TYPES:
        since = start_ms
        while True:
            page = await client.income(None, kind, since, end_ms - 1, 1000)
            rows += page
            if len(page) < 1000:
                break
            since = page[-1].time_ms + 1
    return rows


FILL_WINDOW_MS = 7 * 86_400_000  # userTrades: startTime..endTime at most 7 days apart


async def fetch_fills(client: ExchangeClient, trades: Sequence[TradeRecord]) -> list[b.UserTrade]:
    """Return the fills (userTrades) of the symbols of the closed real trades, from each
    symbol's earliest entry to its latest exit (7-day windows, 1000 a page; weight 5 a call)."""
    spans: dict[str, tuple[int, int]] = {}
    for t in trades:
        if t.is_virtual or t.exit_ms is None:
            continue
        low, high = spans.get(t.symbol, (t.entry_ms, t.exit_ms))
        spans[t.symbol] = (min(low, t.entry_ms), max(high, t.exit_ms))
    fills: list[b.UserTrade] = []
    for symbol, (low, high) in sorted(spans.items()):
        since = low
        while since <= high:
            until = min(high, since + FILL_WINDOW_MS - 1)
            page = await client.user_trades(symbol, start_ms=since, end_ms=until, limit=1000)
            fills += page
            since = page[-1].time_ms + 1 if len(page) == 1000 else until + 1
    return fills


async def make_report(
    day: str, cfg: Config, db: Database, cache: Cache | None, client: ExchangeClient | None
) -> tuple[rp.DailyReport, str]:
    """Build the report of a UTC day, store it (PostgreSQL and an HTML file), return it and its
    text.

    Raises DatabaseError when PostgreSQL cannot answer; the exchange and Redis are optional
    (without them the audit is marked not checked and the events are empty).
    """
    start_ms, end_ms = rp.day_bounds_ms(day)
    # One query for the day and what closed after it (the start-of-day equity needs both).
    since_start = await closed_trades_between(db, start_ms, max(end_ms, _now_ms() + 1))
    trades = [t for t in since_start if t.exit_ms is not None and t.exit_ms < end_ms]
    alerts: list[g.Alert] = []
    if cache is not None:
        with contextlib.suppress(CacheUnavailableError):
            for raw in await cache.read_alerts(10_000):
                with contextlib.suppress(msgspec.DecodeError):
                    alert = g.decode_alert(raw)
                    if start_ms <= alert.ts_ms < end_ms:
                        alerts.append(alert)
    champion = await db.champion()
    start_equity: Decimal | None = None
    audit = rp.NOT_CHECKED
    if client is not None:
        try:
            income = await fetch_income(client, start_ms, end_ms)
            fills = await fetch_fills(client, trades)
            audit = rp.ledger_audit(trades, income, fills)  # it audits the real trades only
            account = await client.account()
            net_since = sum(
                (t.net_pnl_usdt or Decimal(0) for t in since_start if not t.is_virtual), Decimal(0)
            )
            start_equity = account.margin_balance_usdt - net_since
        except ExchangeError:
            pass  # the report says the audit was not checked
    report = rp.build_daily_report(
        day, trades, alerts, champion[0] if champion else None, start_equity, audit
    )
    text = rp.render_text(report)
    await save_daily_report(db, day, _now_ms(), text, rp.report_json(report))
    path = Path(cfg.run.dir) / "reports" / f"{day}.html"
    save_atomically(path, rp.render_html(report).encode())
    return report, text


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
