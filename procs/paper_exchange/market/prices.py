"""Replayed market prices for the paper exchange: klines, last/mark/index, book, trades, funding.

Time mapping: sim minute `m` plays sequence index `k = (m - epoch_ms) // 60000 + WARMUP`, and `k`
plays data row `reflect(k)`, a ping-pong over the rows (forward, then backward with open and
close swapped, high and low kept; see `series.py`). The first pass is the real data exactly,
and prices stay continuous at both turns.

Inside a minute the price follows a deterministic piecewise-linear path open -> first extreme ->
second extreme -> close over 240 steps of 250 ms, rounded to the tick size (half up). Step 0 is
the open, step 80 the first extreme, step 159 the second, step 239 the close; a bullish or doji
candle visits its low first, a bearish one its high first. The knots are symmetric, so a
backward-pass minute plays exactly the reversed path of its forward minute. The kline built from
the path equals the data row.

Derived, not real (the data has OHLCV only): the mark price and the index price are the path
price itself (no premium, no basis); one trade per 250 ms step, with id = step start ms // 250
(stable across restarts), quantity = the minute's volume spread evenly over its steps (floor, so
a thin minute can have zero-quantity steps), buyer-maker on a down-tick (alternating on a flat
tick); the book is one tick either side of last with quantities from the minute's volume. Kline
trade ids (`f`, `L`, `n`) are these step ids. Quote and taker-buy volumes: see `series.py`.

`set_override(symbol, price)` pins last, mark, index, book, depth and trades to a price until
cleared (fault injection); klines, the 24 h ticker statistics and funding history keep the
replay. Unknown symbols raise KeyError; the caller validates request parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from procs.paper_exchange.market.intervals import (
    HOUR_MS,
    MINUTE_MS,
    candle_open_ms,
    next_open_ms,
    window_opens,
)
from procs.paper_exchange.market.replay import DataError, Replay
from procs.paper_exchange.market.series import quote_units, taker_buy_units
from procs.paper_exchange.market.tape import STEP_MS, STEPS_PER_MINUTE, MinutePath, SymbolTape

WARMUP = 1500  # data rows played before epoch_ms, so 1500 closed real 1m bars exist at start
FUNDING_INTERVAL_MS = 8 * HOUR_MS  # funding at 00:00, 08:00 and 16:00 UTC


@dataclass(frozen=True, slots=True)
class Bar:
    """One kline. `close_ms` = next open - 1 ms, also while the candle is still open."""

    open_ms: int
    close_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    taker_buy_volume: Decimal
    taker_buy_quote_volume: Decimal
    first_trade_id: int
    last_trade_id: int
    trade_count: int
    is_closed: bool


@dataclass(frozen=True, slots=True)
class AggTrade:
    """The single trade of one 250 ms step."""

    id: int
    price: Decimal
    qty: Decimal
    time_ms: int
    is_buyer_maker: bool


@dataclass(frozen=True, slots=True)
class FundingEvent:
    """One funding settlement of the replay (override ignored)."""

    time_ms: int
    rate: Decimal
    mark_price: Decimal


class Market:
    """Replayed prices for every symbol; pure apart from small per-minute caches."""

    def __init__(
        self, replay: Mapping[str, Replay], specs: Mapping[str, Mapping[str, Any]], epoch_ms: int
    ) -> None:
        """Build from replay data and raw exchangeInfo symbol objects; epoch_ms plays row WARMUP.

        Raises ValueError if epoch_ms is not a whole minute, DataError if a symbol has no spec
        or its data does not fit the spec's tick size, step size or precisions.
        """
        if epoch_ms % MINUTE_MS:
            raise ValueError(f"market: epoch_ms={epoch_ms} is not a whole minute")
        missing = sorted(set(replay) - set(specs))
        if missing:
            raise DataError(f"market: no exchange spec for {', '.join(missing)}")
        self.epoch_ms = epoch_ms
        self._symbols = {s: SymbolTape(s, replay[s], specs[s]) for s in replay}
        self._partial: dict[str, tuple[int, Bar]] = {}  # symbol -> (step id, open 1m bar)

    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbols with replay data."""
        return tuple(self._symbols)

    def tick_size(self, symbol: str) -> Decimal:
        """Return the symbol's tick size."""
        return self._symbols[symbol].tick

    def sequence_index(self, now_ms: int) -> int:
        """Return the sequence index k that the sim minute containing `now_ms` plays."""
        return (now_ms - now_ms % MINUTE_MS - self.epoch_ms) // MINUTE_MS + WARMUP

    def replay_row(self, symbol: str, now_ms: int) -> tuple[int, bool]:
        """Return (data row, is_reversed) played at sim time `now_ms`."""
        return self._symbols[symbol].series.row(self.sequence_index(now_ms))

    def _minute(self, sym: SymbolTape, now_ms: int) -> MinutePath:
        minute_ms = now_ms - now_ms % MINUTE_MS
        latest, other = sym.minute, sym.other_minute
        if latest is not None and latest.minute_ms == minute_ms:
            return latest
        if other is not None and other.minute_ms == minute_ms:
            return other
        minute = MinutePath(sym, minute_ms, self.sequence_index(now_ms))
        # Two slots: the latest minute follows the clock, so a query about an older minute
        # (a closed candle, funding history) does not evict the one the server ticks through.
        if latest is None or minute_ms > latest.minute_ms:
            sym.minute = minute
        else:
            sym.other_minute = minute
        return minute

    def last_price(self, symbol: str, now_ms: int) -> Decimal:
        """Return the last trade price at `now_ms` (the override while one is set)."""
        sym = self._symbols[symbol]
        if sym.override is not None:
            return sym.override
        return self._minute(sym, now_ms).prices[now_ms % MINUTE_MS // STEP_MS]

    def mark_price(self, symbol: str, now_ms: int) -> Decimal:
        """Return the mark price: the last price itself (no premium is simulated)."""
        return self.last_price(symbol, now_ms)

    def index_price(self, symbol: str, now_ms: int) -> Decimal:
        """Return the index price: equal to the mark price."""
        return self.last_price(symbol, now_ms)

    def _book_base_units(self, sym: SymbolTape, now_ms: int) -> int:
        per_step = self._minute(sym, now_ms).ohlcv[4] // STEPS_PER_MINUTE
        return max(sym.lot_units, per_step - per_step % sym.lot_units)

    def depth(
        self, symbol: str, now_ms: int, limit: int
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """Return (bids, asks), best first, one tick apart, `limit` levels (bids stop above 0)."""
        sym = self._symbols[symbol]
        last = self.last_price(symbol, now_ms).scaleb(sym.price_exp)
        last_units = int(last.to_integral_value())
        base = self._book_base_units(sym, now_ms)
        step_id = now_ms // STEP_MS
        bids, asks = [], []
        for level in range(limit):
            bid_units = last_units - (level + 1) * sym.tick_units
            if bid_units > 0:
                bid_qty = base * (1 + (step_id + level) % 4)
                bids.append((sym.price(bid_units), sym.qty(bid_qty)))
            ask_qty = base * (1 + (step_id + level + 2) % 4)
            asks.append((sym.price(last_units + (level + 1) * sym.tick_units), sym.qty(ask_qty)))
        return bids, asks

    def book_ticker(self, symbol: str, now_ms: int) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """Return (bid, bid_qty, ask, ask_qty): one tick below and above the last price."""
        bids, asks = self.depth(symbol, now_ms, 1)
        if not bids:  # last is one tick: no positive bid below it, quote at last
            bids = [(self.last_price(symbol, now_ms), asks[0][1])]
        return bids[0][0], bids[0][1], asks[0][0], asks[0][1]

    def update_id(self, now_ms: int) -> int:
        """Return the book update id at `now_ms` (the step id; increases every 250 ms)."""
        return now_ms // STEP_MS

    def agg_trade(self, symbol: str, now_ms: int) -> AggTrade:
        """Return the trade of the 250 ms step containing `now_ms`."""
        sym = self._symbols[symbol]
        minute = self._minute(sym, now_ms)
        step = now_ms % MINUTE_MS // STEP_MS
        previous = minute.path[step - 1] if step else minute.prev_close
        move = minute.path[step] - previous
        step_id = now_ms // STEP_MS
        qty = minute.volume_through(step) - minute.volume_through(step - 1)
        return AggTrade(
            id=step_id,
            price=self.last_price(symbol, now_ms),
            qty=sym.qty(qty),
            time_ms=step_id * STEP_MS,
            is_buyer_maker=move < 0 or (move == 0 and step_id % 2 == 1),
        )

    def _bar(
        self, sym: SymbolTape, open_ms: int, stop_ms: int, now_ms: int, close_ms: int | None = None
    ) -> Bar:
        """Aggregate sim time [open_ms, stop_ms) as seen at `now_ms` (open when now < stop)."""
        series = sym.series
        k0 = self.sequence_index(open_ms)
        if now_ms >= stop_ms:
            st = series.stats(k0, self.sequence_index(stop_ms))
            o, h, lo, c = st.open, st.high, st.low, st.close
            volume, quote, taker, taker_quote = (
                st.volume,
                st.quote,
                st.taker_buy,
                st.taker_buy_quote,
            )
            last_id, is_closed = stop_ms // STEP_MS - 1, True
        else:
            minute = self._minute(sym, now_ms)
            step = now_ms % MINUTE_MS // STEP_MS
            o, h, lo, c = (
                minute.path[0],
                minute.run_high[step],
                minute.run_low[step],
                minute.path[step],
            )
            volume = minute.volume_through(step)
            typical4 = o + h + lo + c
            quote = quote_units(volume, typical4, series.quote_shift)
            taker = taker_buy_units(volume, c, h, lo)
            taker_quote = quote_units(taker, typical4, series.quote_shift)
            if minute.k > k0:
                st = series.stats(k0, minute.k)
                o, h, lo = st.open, max(h, st.high), min(lo, st.low)
                volume, quote = volume + st.volume, quote + st.quote
                taker, taker_quote = taker + st.taker_buy, taker_quote + st.taker_buy_quote
            last_id, is_closed = now_ms // STEP_MS, False
        first_id = open_ms // STEP_MS
        return Bar(
            open_ms=open_ms,
            close_ms=stop_ms - 1 if close_ms is None else close_ms,
            open=sym.price(o),
            high=sym.price(h),
            low=sym.price(lo),
            close=sym.price(c),
            volume=sym.qty(volume),
            quote_volume=sym.quote(quote),
            taker_buy_volume=sym.qty(taker),
            taker_buy_quote_volume=sym.quote(taker_quote),
            first_trade_id=first_id,
            last_trade_id=last_id,
            trade_count=last_id - first_id + 1,
            is_closed=is_closed,
        )

    def closed_bar(self, symbol: str, open_ms: int) -> Bar:
        """Return the closed 1m kline opening at `open_ms` (a whole minute)."""
        return self._bar(self._symbols[symbol], open_ms, open_ms + MINUTE_MS, open_ms + MINUTE_MS)

    def partial_bar(self, symbol: str, now_ms: int) -> Bar:
        """Return the open 1m kline at `now_ms`: open, running high/low, close = path price."""
        step_id = now_ms // STEP_MS
        cached = self._partial.get(symbol)
        if cached is not None and cached[0] == step_id:
            return cached[1]
        minute_ms = now_ms - now_ms % MINUTE_MS
        bar = self._bar(self._symbols[symbol], minute_ms, minute_ms + MINUTE_MS, now_ms)
        self._partial[symbol] = (step_id, bar)
        return bar

    def candle(self, symbol: str, interval: str, open_ms: int, now_ms: int) -> Bar:
        """Return the `interval` kline opening at `open_ms`, closed once `now_ms` passed its end."""
        if open_ms > now_ms:
            raise ValueError(f"market: candle open_ms={open_ms} is after now_ms={now_ms}")
        if interval == "1m" and now_ms - now_ms % MINUTE_MS == open_ms:
            return self.partial_bar(symbol, now_ms)
        stop_ms = next_open_ms(interval, open_ms)
        return self._bar(self._symbols[symbol], open_ms, stop_ms, now_ms)

    def current_candle(self, symbol: str, interval: str, now_ms: int) -> Bar:
        """Return the open `interval` kline containing `now_ms`."""
        return self.candle(symbol, interval, candle_open_ms(interval, now_ms), now_ms)

    def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        now_ms: int,
    ) -> list[Bar]:
        """Return what GET /fapi/v1/klines returns at `now_ms` (see `intervals.window_opens`)."""
        opens = window_opens(interval, start_ms, end_ms, limit, now_ms)
        return [self.candle(symbol, interval, open_ms, now_ms) for open_ms in opens]

    def rolling_24h(self, symbol: str, now_ms: int) -> Bar:
        """Return the rolling 24 h statistics: from the minute 24 h ago through `now_ms`.

        Like a real /fapi/v1/ticker/24hr reply: `openTime` is a whole minute 24 h before the
        current one and `closeTime` is now.
        """
        minute_ms = now_ms - now_ms % MINUTE_MS
        open_ms = minute_ms - 1440 * MINUTE_MS
        return self._bar(self._symbols[symbol], open_ms, minute_ms + MINUTE_MS, now_ms, now_ms)

    def funding_rate(self, symbol: str, now_ms: int) -> Decimal:
        """Return the real funding rate in force at the data time `now_ms` maps to."""
        sym = self._symbols[symbol]
        units = sym.series.funding_units(self.sequence_index(now_ms))
        return Decimal(units).scaleb(-sym.funding_exp)

    def next_funding_ms(self, now_ms: int) -> int:
        """Return the next 00:00, 08:00 or 16:00 UTC strictly after `now_ms`."""
        return (now_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS

    def funding_history(
        self, symbol: str, start_ms: int | None, end_ms: int | None, limit: int, now_ms: int
    ) -> list[FundingEvent]:
        """Return settled funding events (GET /fapi/v1/fundingRate), ascending, none after now."""
        sym = self._symbols[symbol]
        last = now_ms // FUNDING_INTERVAL_MS
        if end_ms is not None:
            last = min(last, end_ms // FUNDING_INTERVAL_MS)
        if start_ms is not None:
            first = -(-start_ms // FUNDING_INTERVAL_MS)
            indexes = range(first, min(last + 1, first + max(limit, 0)))
        else:
            indexes = range(last - max(limit, 0) + 1, last + 1)
        events = []
        for index in indexes:
            time_ms = index * FUNDING_INTERVAL_MS
            position = sym.series.position(self.sequence_index(time_ms))
            mark = sym.price(int(sym.series.open[position]))  # step 0 of the minute
            events.append(FundingEvent(time_ms, self.funding_rate(symbol, time_ms), mark))
        return events

    def set_override(self, symbol: str, price: Decimal | None) -> None:
        """Pin last, mark, index, book and trades to `price` (rounded to the tick), or clear.

        Raises KeyError for an unknown symbol, ValueError when the rounded price is not above 0.
        """
        sym = self._symbols[symbol]
        if price is None:
            sym.override = None
            return
        if not Decimal(price).is_finite():
            raise ValueError(f"market: override price {price} for {symbol} is not a number")
        ticks = (Decimal(price) / sym.tick).to_integral_value(rounding=ROUND_HALF_UP)
        if ticks <= 0:
            raise ValueError(f"market: override price {price} for {symbol} is not above 0")
        sym.override = sym.price(int(ticks) * sym.tick_units)

    def override(self, symbol: str) -> Decimal | None:
        """Return the symbol's price override, or None."""
        return self._symbols[symbol].override
