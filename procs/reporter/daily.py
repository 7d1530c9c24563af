"""The reporter's daily-report job, which `slt report` runs too: read one UTC day's closed trades
(PostgreSQL), its alerts (the Redis alerts stream) and the exchange's income rows and fills,
compute the figures (shared/report/daily.py), store the report (`daily_reports` row and
`<run.dir>/reports/<day>.html`, shared/report/render.py) and return it with its text.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import msgspec

from procs.reporter.reportdb import closed_trades_between, save_daily_report
from shared.cache import Cache, CacheUnavailableError
from shared.config import Config
from shared.exchange.errors import ExchangeError
from shared.exchange.rest import ExchangeClient
from shared.report import daily as rp
from shared.report.render import render_html, render_text
from shared.schemas import binance as b
from shared.schemas import guard as g
from shared.schemas.records import TradeRecord
from shared.store.db import Database
from shared.store.durable import save_atomically

INCOME_TYPES = ("REALIZED_PNL", "COMMISSION", "FUNDING_FEE")
FILL_WINDOW_MS = 7 * 86_400_000  # userTrades: startTime..endTime at most 7 days apart


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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
    text = render_text(report)
    await save_daily_report(db, day, _now_ms(), text, rp.report_json(report))
    path = Path(cfg.run.dir) / "reports" / f"{day}.html"
    save_atomically(path, render_html(report).encode())
    return report, text
