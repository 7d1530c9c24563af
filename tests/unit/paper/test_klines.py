"""Klines of every interval: aggregation of the replayed rows, the open candle, the REST window
rules of GET /fapi/v1/klines, calendar alignment (UTC, Monday weeks, calendar months), and the
rolling 24 h window."""

from __future__ import annotations

import datetime as dt

import pytest

from procs.paper_exchange.market.intervals import candle_open_ms, next_open_ms, window_opens
from procs.paper_exchange.market.prices import WARMUP, Market
from procs.paper_exchange.market.replay import Replay
from tests.unit.paper.replayed import (
    DAY_MS,
    EPOCH_MS,
    MINUTE,
    minute_of,
    price,
    real_specs,
    shipped_replay,
    volume,
)


@pytest.fixture(scope="module")
def replay() -> dict[str, Replay]:
    return shipped_replay()


@pytest.fixture
def market(replay: dict[str, Replay]) -> Market:
    return Market(replay, real_specs(), EPOCH_MS)


@pytest.mark.parametrize(("interval", "minutes"), [("5m", 5), ("1h", 60), ("1d", 1440)])
def test_aggregated_kline_equals_a_direct_aggregation_of_the_rows(
    market: Market, replay: dict[str, Replay], interval: str, minutes: int
) -> None:
    data = replay["ETHUSDT"]
    day = EPOCH_MS - 3_600_000 + DAY_MS  # 2026-11-24 00:00, plays data row 2880 onwards
    now = day + 2 * DAY_MS
    for open_ms in range(day, day + DAY_MS, max(minutes, 180) * MINUTE):
        bar = market.candle("ETHUSDT", interval, open_ms, now)
        k0 = (open_ms - EPOCH_MS) // MINUTE + WARMUP
        rows = range(k0, k0 + minutes)
        assert bar.open == price(data, rows[0], 0)
        assert bar.high == max(price(data, r, 1) for r in rows)
        assert bar.low == min(price(data, r, 2) for r in rows)
        assert bar.close == price(data, rows[-1], 3)
        assert bar.volume == volume(data, rows)
        minute_bars = [market.closed_bar("ETHUSDT", minute_of(r)) for r in rows]
        assert bar.quote_volume == sum(b.quote_volume for b in minute_bars)
        assert bar.taker_buy_volume == sum(b.taker_buy_volume for b in minute_bars)
        assert bar.taker_buy_quote_volume == sum(b.taker_buy_quote_volume for b in minute_bars)
        assert (bar.close_ms, bar.trade_count) == (open_ms + minutes * MINUTE - 1, 240 * minutes)


def test_candle_across_the_turn_aggregates_forward_and_backward_minutes(
    replay: dict[str, Replay],
) -> None:
    market = Market(replay, real_specs(), EPOCH_MS + 2 * MINUTE)  # the turn falls at hh:02
    n = replay["BTCUSDT"].n_rows
    turn = EPOCH_MS + 2 * MINUTE + (n - WARMUP) * MINUTE
    assert market.replay_row("BTCUSDT", turn - MINUTE) == (n - 1, False)
    assert market.replay_row("BTCUSDT", turn) == (n - 1, True)
    open_ms = turn - 2 * MINUTE
    bar = market.candle("BTCUSDT", "5m", open_ms, turn + DAY_MS)
    minutes = [market.closed_bar("BTCUSDT", open_ms + i * MINUTE) for i in range(5)]
    assert (bar.open, bar.close) == (minutes[0].open, minutes[4].close)
    assert (bar.high, bar.low) == (max(b.high for b in minutes), min(b.low for b in minutes))
    assert bar.volume == sum(b.volume for b in minutes)
    assert bar.quote_volume == sum(b.quote_volume for b in minutes)


def test_open_candle_combines_closed_minutes_with_the_partial_one(market: Market) -> None:
    open_ms = EPOCH_MS + 10 * MINUTE
    now = open_ms + 2 * MINUTE + 30_000
    bar = market.current_candle("BTCUSDT", "5m", now)
    done = [market.closed_bar("BTCUSDT", open_ms + i * MINUTE) for i in range(2)]
    partial = market.partial_bar("BTCUSDT", now)
    assert (bar.open_ms, bar.close_ms, bar.is_closed) == (open_ms, open_ms + 5 * MINUTE - 1, False)
    assert bar.open == done[0].open and bar.close == partial.close
    assert bar.high == max(done[0].high, done[1].high, partial.high)
    assert bar.low == min(done[0].low, done[1].low, partial.low)
    assert bar.volume == done[0].volume + done[1].volume + partial.volume
    assert (bar.first_trade_id, bar.last_trade_id) == (open_ms // 250, now // 250)


def test_rest_klines_without_start_or_end_end_with_the_open_candle(market: Market) -> None:
    now = EPOCH_MS + 10 * MINUTE + 30_500
    bars = market.klines("BTCUSDT", "1m", None, None, 500, now)
    assert len(bars) == 500
    assert bars[-1].open_ms == EPOCH_MS + 10 * MINUTE and not bars[-1].is_closed
    assert all(b.is_closed for b in bars[:-1])
    assert [b.open_ms for b in bars] == [bars[-1].open_ms - (499 - i) * MINUTE for i in range(500)]
    assert bars[-2] == market.closed_bar("BTCUSDT", EPOCH_MS + 9 * MINUTE)


def test_rest_klines_with_start_time_return_the_first_candles_opening_at_or_after_it(
    market: Market,
) -> None:
    now = EPOCH_MS + DAY_MS
    bars = market.klines("BTCUSDT", "1h", EPOCH_MS + 1, None, 3, now)
    assert [b.open_ms for b in bars] == [EPOCH_MS + h * 3_600_000 for h in (1, 2, 3)]
    bars = market.klines("BTCUSDT", "1h", EPOCH_MS, None, 2, now)
    assert [b.open_ms for b in bars] == [EPOCH_MS, EPOCH_MS + 3_600_000]


def test_rest_klines_with_end_time_return_the_last_candles_opening_at_or_before_it(
    market: Market,
) -> None:
    now = EPOCH_MS + DAY_MS
    end = EPOCH_MS + 5 * MINUTE + 59_999
    bars = market.klines("BTCUSDT", "1m", None, end, 4, now)
    assert [b.open_ms for b in bars] == [EPOCH_MS + m * MINUTE for m in (2, 3, 4, 5)]


def test_rest_klines_with_start_and_end_stop_at_limit_or_end(market: Market) -> None:
    now = EPOCH_MS + DAY_MS
    start, end = EPOCH_MS, EPOCH_MS + 10 * MINUTE
    assert len(market.klines("BTCUSDT", "1m", start, end, 1500, now)) == 11
    bars = market.klines("BTCUSDT", "1m", start, end, 3, now)
    assert [b.open_ms for b in bars] == [start, start + MINUTE, start + 2 * MINUTE]


def test_rest_klines_never_return_candles_in_the_sim_future(market: Market) -> None:
    now = EPOCH_MS + 90_000
    assert market.klines("BTCUSDT", "1m", now + MINUTE, None, 10, now) == []
    bars = market.klines("BTCUSDT", "1m", EPOCH_MS - MINUTE, now + DAY_MS, 1500, now)
    assert [b.open_ms for b in bars] == [EPOCH_MS - MINUTE, EPOCH_MS, EPOCH_MS + MINUTE]
    assert [b.is_closed for b in bars] == [True, True, False]
    assert bars[-1].close == market.last_price("BTCUSDT", now)
    with pytest.raises(ValueError, match="is after now_ms"):
        market.candle("BTCUSDT", "1m", now + MINUTE, now)


def test_week_candles_open_on_monday_and_month_candles_on_the_first() -> None:
    for day in range(-800, 24_000, 37):
        t = day * DAY_MS + 12_345_678
        when = dt.datetime.fromtimestamp(t / 1000, dt.UTC)
        week = dt.datetime.fromtimestamp(candle_open_ms("1w", t) / 1000, dt.UTC)
        assert week.weekday() == 0 and week.time() == dt.time(0) and 0 <= (when - week).days < 7
        month = dt.datetime.fromtimestamp(candle_open_ms("1M", t) / 1000, dt.UTC)
        assert (month.year, month.month, month.day, month.time()) == (
            when.year,
            when.month,
            1,
            dt.time(0),
        )
    feb_2028 = int(dt.datetime(2028, 2, 1, tzinfo=dt.UTC).timestamp() * 1000)
    assert next_open_ms("1M", feb_2028) - feb_2028 == 29 * DAY_MS
    assert candle_open_ms("4h", feb_2028 + 5 * 3_600_000) == feb_2028 + 4 * 3_600_000


def test_monthly_klines_are_calendar_months_ending_with_the_current_one(market: Market) -> None:
    bars = market.klines("BTCUSDT", "1M", None, None, 3, EPOCH_MS)
    opens = [dt.datetime.fromtimestamp(b.open_ms / 1000, dt.UTC).date() for b in bars]
    assert opens == [dt.date(2026, 9, 1), dt.date(2026, 10, 1), dt.date(2026, 11, 1)]
    assert bars[1].close_ms == bars[2].open_ms - 1 and bars[1].is_closed and not bars[2].is_closed
    assert window_opens("1M", None, None, 0, EPOCH_MS) == []


def test_rolling_24h_window_opens_a_day_before_the_current_minute(market: Market) -> None:
    now = EPOCH_MS + DAY_MS + 23_623
    window = market.rolling_24h("BTCUSDT", now)
    assert (window.open_ms, window.close_ms) == (EPOCH_MS, now)
    assert window.open == market.closed_bar("BTCUSDT", EPOCH_MS).open
    assert window.close == market.last_price("BTCUSDT", now)
    assert window.trade_count == (now // 250) - (EPOCH_MS // 250) + 1
