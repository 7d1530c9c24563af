"""The reporter's PostgreSQL queries: trades of a period, new trades since a cursor, and the stored
daily reports (table `daily_reports`, one row per UTC day, rewritten when a report is made again).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from shared.schemas.records import TradeRecord
from shared.store.db import Database, trade_of


async def closed_trades_between(db: Database, start_ms: int, end_ms: int) -> list[TradeRecord]:
    """Return the trades (real and virtual) closed in [start_ms, end_ms), in exit order."""
    rows = await db.fetch(
        "closed_trades_between",
        "SELECT * FROM trades WHERE exit_ms >= $1 AND exit_ms < $2 ORDER BY exit_ms, trade_id",
        start_ms,
        end_ms,
    )
    return [trade_of(r) for r in rows]


async def real_trades_touched_since(db: Database, since_ms: int) -> list[TradeRecord]:
    """Return the real trades opened or closed after `since_ms` (the notification cursor), in
    the order of that event."""
    rows = await db.fetch(
        "real_trades_touched_since",
        "SELECT * FROM trades WHERE NOT is_virtual AND (entry_ms > $1 OR exit_ms > $1)"
        " ORDER BY greatest(entry_ms, coalesce(exit_ms, 0)), trade_id",
        since_ms,
    )
    return [trade_of(r) for r in rows]


async def save_daily_report(
    db: Database, day: str, created_ms: int, text: str, body: dict[str, Any]
) -> None:
    """Store (or replace) the report of a UTC day."""
    await db.execute(
        "save_daily_report",
        "INSERT INTO daily_reports (day, created_ms, text, body) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (day) DO UPDATE SET created_ms = EXCLUDED.created_ms,"
        " text = EXCLUDED.text, body = EXCLUDED.body",
        dt.date.fromisoformat(day),
        created_ms,
        text,
        body,
    )


async def has_daily_report(db: Database, day: str) -> bool:
    """Return whether the report of a UTC day is stored."""
    rows = await db.fetch(
        "has_daily_report", "SELECT 1 FROM daily_reports WHERE day = $1", dt.date.fromisoformat(day)
    )
    return bool(rows)
