"""Kline interval arithmetic as Binance aligns candles: UTC, weeks from Monday, calendar months.

Pure integer arithmetic on UTC milliseconds. `1m` … `1d` and `3d` are aligned to the Unix epoch
(for `3d` that is our reading: Binance does not document it), `1w` candles open on Monday 00:00
UTC, `1M` candles open at 00:00 UTC on the first day of each calendar month.
"""

from __future__ import annotations

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
# 1970-01-01 was a Thursday, so Monday-aligned weeks start 4 days after the epoch.
_MONDAY_OFFSET_MS = 4 * DAY_MS

FIXED_INTERVAL_MS: dict[str, int] = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": DAY_MS,
    "3d": 3 * DAY_MS,
    "1w": WEEK_MS,
}
INTERVALS: tuple[str, ...] = (*FIXED_INTERVAL_MS, "1M")


def _civil_from_days(days: int) -> tuple[int, int]:
    """Return (year, month) of the UTC day `days` since 1970-01-01 (proleptic Gregorian)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if month <= 2 else 0), month


def _days_from_civil(year: int, month: int) -> int:
    """Return the day number since 1970-01-01 of the first day of `month` in `year`."""
    year -= 1 if month <= 2 else 0
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def _month_start_ms(index: int) -> int:
    """Return the open time of month `index` = year * 12 + (month - 1)."""
    return _days_from_civil(index // 12, index % 12 + 1) * DAY_MS


def _month_index(t_ms: int) -> int:
    year, month = _civil_from_days(t_ms // DAY_MS)
    return year * 12 + month - 1


def check_interval(interval: str) -> None:
    """Raise ValueError unless `interval` is one of Binance's kline intervals."""
    if interval not in FIXED_INTERVAL_MS and interval != "1M":
        raise ValueError(f"intervals: interval={interval!r} is not one of {', '.join(INTERVALS)}")


def candle_open_ms(interval: str, t_ms: int) -> int:
    """Return the open time of the `interval` candle that contains `t_ms`."""
    if interval == "1M":
        return _month_start_ms(_month_index(t_ms))
    length = FIXED_INTERVAL_MS[interval]
    offset = _MONDAY_OFFSET_MS if interval == "1w" else 0
    return t_ms - (t_ms - offset) % length


def next_open_ms(interval: str, open_ms: int) -> int:
    """Return the open time of the candle after the one opening at `open_ms`."""
    if interval == "1M":
        return _month_start_ms(_month_index(open_ms) + 1)
    return open_ms + FIXED_INTERVAL_MS[interval]


def previous_open_ms(interval: str, open_ms: int) -> int:
    """Return the open time of the candle before the one opening at `open_ms`."""
    if interval == "1M":
        return _month_start_ms(_month_index(open_ms) - 1)
    return open_ms - FIXED_INTERVAL_MS[interval]


def first_open_at_or_after(interval: str, t_ms: int) -> int:
    """Return the earliest candle open time >= `t_ms` (how Binance rounds `startTime` up)."""
    open_ms = candle_open_ms(interval, t_ms)
    return open_ms if open_ms == t_ms else next_open_ms(interval, open_ms)


def window_opens(
    interval: str, start_ms: int | None, end_ms: int | None, limit: int, now_ms: int
) -> list[int]:
    """Return the open times /fapi/v1/klines answers with, ascending, never after `now_ms`.

    Without start and end: the `limit` most recent candles, the open one last. With `start_ms`:
    the first `limit` candles opening at or after it (and at or before `end_ms` if given). With
    only `end_ms`: the last `limit` candles opening at or before it.
    """
    check_interval(interval)
    if limit <= 0:
        return []
    last_ms = candle_open_ms(interval, now_ms)
    if end_ms is not None:
        last_ms = min(last_ms, candle_open_ms(interval, end_ms))
    opens: list[int] = []
    if start_ms is not None:
        open_ms = first_open_at_or_after(interval, start_ms)
        while open_ms <= last_ms and len(opens) < limit:
            opens.append(open_ms)
            open_ms = next_open_ms(interval, open_ms)
        return opens
    open_ms = last_ms
    while len(opens) < limit:
        opens.append(open_ms)
        open_ms = previous_open_ms(interval, open_ms)
    opens.reverse()
    return opens
