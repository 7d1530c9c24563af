"""Market: the replay time mapping, the intra-minute path, klines of every interval, trades,
book, funding and overrides, on the shipped BTCUSDT/ETHUSDT data and the real symbol specs."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from decimal import Decimal

import pytest

from procs.paper_exchange.market.prices import WARMUP, Market
from procs.paper_exchange.market.replay import DataError, Replay
from tests.unit.paper.replayed import (
    DAY_MS,
    EPOCH_MS,
    MINUTE,
    REPO,
    SYMBOLS,
    minute_of,
    path,
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


def sample_rows(n: int) -> Iterator[int]:
    yield from (0, 1, WARMUP, n - 2, n - 1)
    yield from range(7, n, 97)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_kline_built_from_the_240_path_steps_equals_the_data_row(
    market: Market, replay: dict[str, Replay], symbol: str
) -> None:
    data = replay[symbol]
    tick = market.tick_size(symbol)
    for row in sample_rows(data.n_rows):
        prices = path(market, symbol, minute_of(row))
        assert prices[0] == price(data, row, 0)
        assert max(prices) == price(data, row, 1)
        assert min(prices) == price(data, row, 2)
        assert prices[-1] == price(data, row, 3)
        assert all(p % tick == 0 for p in prices)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_closed_kline_equals_the_replayed_data_row(
    market: Market, replay: dict[str, Replay], symbol: str
) -> None:
    data = replay[symbol]
    for row in sample_rows(data.n_rows):
        bar = market.closed_bar(symbol, minute_of(row))
        assert (bar.open, bar.high, bar.low, bar.close) == tuple(
            price(data, row, c) for c in range(4)
        )
        assert bar.volume == volume(data, range(row, row + 1))
        assert (bar.open_ms, bar.close_ms) == (minute_of(row), minute_of(row) + MINUTE - 1)
        assert bar.is_closed and bar.trade_count == 240


def test_epoch_plays_the_warmup_row_and_earlier_minutes_the_rows_before(market: Market) -> None:
    assert market.replay_row("BTCUSDT", EPOCH_MS) == (WARMUP, False)
    assert market.replay_row("BTCUSDT", EPOCH_MS + 59_999) == (WARMUP, False)
    assert market.replay_row("BTCUSDT", EPOCH_MS - 1) == (WARMUP - 1, False)
    assert market.replay_row("BTCUSDT", EPOCH_MS - WARMUP * MINUTE) == (0, False)


def test_extremes_are_hit_at_fixed_steps_low_first_when_bullish_high_first_when_bearish(
    market: Market, replay: dict[str, Replay]
) -> None:
    data = replay["BTCUSDT"]
    seen = set()
    for row in range(200):
        o, h, lo, c = (price(data, row, i) for i in range(4))
        prices = path(market, "BTCUSDT", minute_of(row))
        first, second = (h, lo) if c < o else (lo, h)
        assert (prices[80], prices[159]) == (first, second)
        seen.add("bearish" if c < o else "bullish" if c > o else "doji")
    assert seen == {"bearish", "bullish", "doji"}


def test_backward_pass_swaps_open_and_close_and_keeps_high_and_low(
    market: Market, replay: dict[str, Replay]
) -> None:
    data = replay["ETHUSDT"]
    n = data.n_rows
    for row in (0, 5, n // 2, n - 1):
        k = 2 * n - 1 - row
        assert market.replay_row("ETHUSDT", minute_of(k)) == (row, True)
        bar = market.closed_bar("ETHUSDT", minute_of(k))
        assert (bar.open, bar.high, bar.low, bar.close) == (
            price(data, row, 3),
            price(data, row, 1),
            price(data, row, 2),
            price(data, row, 0),
        )


def test_backward_pass_is_continuous_at_both_turns(
    market: Market, replay: dict[str, Replay]
) -> None:
    n = replay["BTCUSDT"].n_rows
    last_forward = market.closed_bar("BTCUSDT", minute_of(n - 1))
    first_backward = market.closed_bar("BTCUSDT", minute_of(n))
    assert last_forward.close == first_backward.open
    last_backward = market.closed_bar("BTCUSDT", minute_of(2 * n - 1))
    next_forward = market.closed_bar("BTCUSDT", minute_of(2 * n))
    assert last_backward.close == next_forward.open == price(replay["BTCUSDT"], 0, 0)
    assert market.replay_row("BTCUSDT", minute_of(2 * n)) == (0, False)


def test_backward_minute_replays_its_forward_path_reversed(
    market: Market, replay: dict[str, Replay]
) -> None:
    n = replay["BTCUSDT"].n_rows
    for row in (3, 4, 9, 1000):  # bullish and bearish rows
        forward = path(market, "BTCUSDT", minute_of(row))
        if forward[0] != forward[-1]:
            assert path(market, "BTCUSDT", minute_of(2 * n - 1 - row)) == forward[::-1]


def test_partial_bar_has_running_high_low_and_volume_pro_rata(
    market: Market, replay: dict[str, Replay]
) -> None:
    data = replay["BTCUSDT"]
    row = WARMUP + 3
    start = minute_of(row)
    prices = path(market, "BTCUSDT", start)
    total_units = int(data.volume_units[row])
    for step in (0, 1, 79, 80, 120, 159, 200, 239):
        bar = market.partial_bar("BTCUSDT", start + 250 * step + 249)
        assert bar.open == prices[0]
        assert bar.high == max(prices[: step + 1])
        assert bar.low == min(prices[: step + 1])
        assert bar.close == prices[step]
        expected_units = total_units * (step + 1) // 240
        assert bar.volume == Decimal(expected_units).scaleb(-data.volume_decimals)
        assert (bar.trade_count, bar.is_closed) == (step + 1, False)
    last = market.partial_bar("BTCUSDT", start + 59_999)
    assert dataclasses.replace(last, is_closed=True) == market.closed_bar("BTCUSDT", start)


def test_kline_trade_ids_match_the_agg_trade_ids(market: Market, replay: dict[str, Replay]) -> None:
    start = EPOCH_MS + 5 * MINUTE
    trades = [market.agg_trade("ETHUSDT", start + 250 * s) for s in range(240)]
    assert [t.id for t in trades] == list(range(start // 250, start // 250 + 240))
    assert [t.time_ms for t in trades] == [start + 250 * s for s in range(240)]
    bar = market.closed_bar("ETHUSDT", start)
    assert (bar.first_trade_id, bar.last_trade_id) == (trades[0].id, trades[-1].id)
    assert bar.trade_count == bar.last_trade_id - bar.first_trade_id + 1 == 240
    assert sum(t.qty for t in trades) == bar.volume
    assert [t.price for t in trades] == path(market, "ETHUSDT", start)
    five = market.candle("ETHUSDT", "5m", start, start + DAY_MS)
    assert (five.first_trade_id, five.last_trade_id, five.trade_count) == (
        start // 250,
        start // 250 + 1199,
        1200,
    )


def test_trade_ids_and_prices_are_the_same_after_a_restart(replay: dict[str, Replay]) -> None:
    now = EPOCH_MS + 123_456_789
    first = Market(replay, real_specs(), EPOCH_MS)
    second = Market(replay, real_specs(), EPOCH_MS)
    assert first.agg_trade("BTCUSDT", now) == second.agg_trade("BTCUSDT", now)
    assert first.partial_bar("BTCUSDT", now) == second.partial_bar("BTCUSDT", now)


def test_buyer_is_maker_on_a_down_tick(market: Market) -> None:
    start = EPOCH_MS
    prices = path(market, "BTCUSDT", start)
    for step in range(1, 240):
        trade = market.agg_trade("BTCUSDT", start + 250 * step)
        if prices[step] != prices[step - 1]:
            assert trade.is_buyer_maker == (prices[step] < prices[step - 1])


def test_book_ticker_is_one_tick_around_the_last_price(market: Market) -> None:
    now = EPOCH_MS + 777_777
    last = market.last_price("BTCUSDT", now)
    bid, bid_qty, ask, ask_qty = market.book_ticker("BTCUSDT", now)
    assert (bid, ask) == (last - Decimal("0.1"), last + Decimal("0.1"))
    assert bid_qty > 0 and ask_qty > 0 and bid_qty % Decimal("0.001") == 0
    bids, asks = market.depth("BTCUSDT", now, 5)
    assert [p for p, _ in bids] == [last - Decimal("0.1") * i for i in range(1, 6)]
    assert [p for p, _ in asks] == [last + Decimal("0.1") * i for i in range(1, 6)]
    assert (bids[0], asks[0]) == ((bid, bid_qty), (ask, ask_qty))


def test_mark_and_index_price_are_the_path_price(market: Market) -> None:
    now = EPOCH_MS + 33_250
    last = market.last_price("ETHUSDT", now)
    assert market.mark_price("ETHUSDT", now) == market.index_price("ETHUSDT", now) == last


def test_funding_rate_is_the_real_row_in_force_at_the_mapped_data_time(market: Market) -> None:
    # Funding file: 05-26 00:00 0.00007331, 08:00 0.00010000, 16:00:00.002 0.00009782.
    assert market.funding_rate("BTCUSDT", minute_of(479) + 59_999) == Decimal("0.00007331")
    assert market.funding_rate("BTCUSDT", minute_of(480)) == Decimal("0.00010000")
    assert market.funding_rate("BTCUSDT", minute_of(960)) == Decimal("0.00009782")
    n = 41_760
    assert market.funding_rate("BTCUSDT", minute_of(2 * n - 1 - 480)) == Decimal("0.00010000")
    assert market.funding_rate("BTCUSDT", minute_of(2 * n - 1 - 479)) == Decimal("0.00007331")


def test_next_funding_time_is_the_next_8_hour_mark_of_sim_time(market: Market) -> None:
    day = EPOCH_MS - 3_600_000
    assert market.next_funding_ms(day) == day + 8 * 3_600_000
    assert market.next_funding_ms(day + 8 * 3_600_000 - 1) == day + 8 * 3_600_000
    assert market.next_funding_ms(day + 23 * 3_600_000) == day + DAY_MS


def test_funding_history_lists_settlements_up_to_now_with_rate_and_mark(market: Market) -> None:
    now = EPOCH_MS + DAY_MS
    events = market.funding_history("BTCUSDT", None, None, 3, now)
    eight = 8 * 3_600_000
    assert [e.time_ms for e in events] == [now // eight * eight - eight * i for i in (2, 1, 0)]
    for event in events:
        assert event.rate == market.funding_rate("BTCUSDT", event.time_ms)
        assert event.mark_price == market.closed_bar("BTCUSDT", event.time_ms).open
    since = market.funding_history("BTCUSDT", EPOCH_MS, None, 100, now)
    assert since[0].time_ms == EPOCH_MS - 3_600_000 + eight and len(since) == 3


def test_override_moves_last_mark_and_book_but_not_klines(market: Market) -> None:
    now = EPOCH_MS + 600_000
    bar = market.partial_bar("BTCUSDT", now)
    market.set_override("BTCUSDT", Decimal("50000.04"))
    assert market.last_price("BTCUSDT", now) == Decimal("50000.0")
    assert market.mark_price("BTCUSDT", now + 250) == Decimal("50000.0")
    assert market.book_ticker("BTCUSDT", now)[0::2] == (Decimal("49999.9"), Decimal("50000.1"))
    assert market.agg_trade("BTCUSDT", now).price == Decimal("50000.0")
    assert market.partial_bar("BTCUSDT", now) == bar
    assert market.last_price("ETHUSDT", now) != Decimal("50000.0")
    market.set_override("BTCUSDT", None)
    assert market.last_price("BTCUSDT", now) == bar.close
    with pytest.raises(ValueError, match="is not above 0"):
        market.set_override("BTCUSDT", Decimal("0.04"))
    with pytest.raises(ValueError, match="is not a number"):
        market.set_override("BTCUSDT", Decimal("NaN"))


def test_market_rejects_data_that_does_not_fit_the_spec(replay: dict[str, Replay]) -> None:
    specs = real_specs()
    specs["BTCUSDT"]["filters"][0]["tickSize"] = "1"
    with pytest.raises(DataError, match=r"BTCUSDT data row 0 \(file line 2\) has a price that"):
        Market(replay, specs, EPOCH_MS)
    specs = real_specs()
    specs["ETHUSDT"]["filters"][1]["stepSize"] = "1"
    with pytest.raises(DataError, match="not a multiple of stepSize 1"):
        Market(replay, specs, EPOCH_MS)
    specs = real_specs()
    specs["ETHUSDT"]["pricePrecision"] = 1
    with pytest.raises(DataError, match="ETHUSDT data needs 2 price and 3 quantity decimals"):
        Market(replay, specs, EPOCH_MS)
    with pytest.raises(DataError, match="no exchange spec for ETHUSDT"):
        Market(replay, {"BTCUSDT": real_specs()["BTCUSDT"]}, EPOCH_MS)
    with pytest.raises(ValueError, match="is not a whole minute"):
        Market(replay, real_specs(), EPOCH_MS + 1)


def test_market_side_modules_import_nothing_that_does_io() -> None:
    forbidden = {"asyncio", "socket", "os", "time", "datetime", "random", "aiohttp", "zmq", "redis"}
    for name in (
        "clock",
        "market/intervals",
        "market/prices",
        "market/wire",
        "market/series",
        "market/tape",
    ):
        tree = ast.parse((REPO / "procs" / "paper_exchange" / f"{name}.py").read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert imported.isdisjoint(forbidden), (name, imported & forbidden)
