"""Market-stream payloads per push: which events each subscribed stream sends at `now_ms`.

Pure apart from its own state (what each stream sent last); prices come from `market.Market` and
wire bodies from the `marketdata` builders, so a stream payload equals the REST body of the same
thing. The hub calls `collect` once per push interval with the streams some connection wants and
fans each serialised payload out to those connections.

Per stream (BINANCE-API.md §7.3, §11 item 11):
- kline / continuousKline: the open candle whenever it changed since the last push (Binance pushes
  every 250 ms "if changed"); when one or more candles closed since the last push, first each
  closed candle's final state with `x:true`, oldest first, exactly once, built by `Market.klines`
  like the REST reply, then the new open candle. After a clock jump longer than `MAX_KLINES`
  candles the stream skips to the open candle (a client backfills over REST, as after a reconnect).
- markPrice (3 s), markPrice@1s, !markPrice@arr[@1s]: once per period of SIMULATED time, the latest
  values (at high speed several periods fall in one push and only the latest is sent).
- bookTicker: whenever the book changed (Binance: real time).
- aggTrade: every trade since the last push (one per 250 ms step), oldest first, at most
  `MAX_TRADES` per push.
`E` is the push's simulated time. Streams of symbols without replay data send nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from procs.paper_exchange.market.intervals import candle_open_ms
from procs.paper_exchange.market.prices import Bar, Market
from procs.paper_exchange.market.tape import STEP_MS
from procs.paper_exchange.market.wire import (
    agg_trade_event,
    book_ticker_event,
    continuous_kline_event,
    kline_event,
    mark_price_event,
)
from procs.paper_exchange.web.streams import (
    AggTrade,
    BookTicker,
    ContinuousKline,
    Kline,
    MarkPrice,
    MarkPriceAll,
    Stream,
    dumps,
)
from shared import log

_log = log.get("paper_exchange")

MAX_KLINES = 1500  # closed candles sent in one push before a stream skips ahead (REST max limit)
MAX_TRADES = 240  # aggTrades sent per stream per push: one simulated minute of steps
_FAILURE_LOG_EVERY = 1000  # after the first 3, log one feed failure in this many


def _forget_all_but(table: dict[Any, Any], wanted: set[Stream]) -> None:
    for gone in [stream for stream in table if stream not in wanted]:
        del table[gone]


@dataclass(slots=True)
class _KlineState:
    open_ms: int  # open time of the candle sent last
    bar: Bar  # its last sent state


class MarketFeeds:
    """Per-stream memory of what was sent, and the payloads due at each push."""

    def __init__(self, market: Market, specs: Mapping[str, Mapping[str, Any]]) -> None:
        self._market = market
        self._specs = specs
        self._klines: dict[Kline | ContinuousKline, _KlineState] = {}
        self._slots: dict[MarkPrice | MarkPriceAll, int] = {}
        self._books: dict[BookTicker, tuple[Any, ...]] = {}
        self._trades: dict[AggTrade, int] = {}
        self.failures = 0

    def collect(self, streams: Iterable[Stream], now_ms: int) -> dict[Stream, list[str]]:
        """Return the serialised payloads due now per stream (streams with none are left out).

        State of streams not in `streams` is forgotten, so a stream subscribed again starts with
        its open candle, not with candles that closed while nobody listened.
        """
        wanted = set(streams)
        _forget_all_but(self._klines, wanted)
        _forget_all_but(self._slots, wanted)
        _forget_all_but(self._books, wanted)
        _forget_all_but(self._trades, wanted)
        out: dict[Stream, list[str]] = {}
        for stream in wanted:
            try:
                payloads = self._payloads(stream, now_ms)
            except Exception as e:  # recovery: skip this stream for this push, log rate-limited
                self.failures += 1
                if self.failures <= 3 or self.failures % _FAILURE_LOG_EVERY == 0:
                    _log.exception(
                        "feed_failed", stream=repr(stream), failures=self.failures, error=repr(e)
                    )
                continue
            if payloads:
                out[stream] = payloads
        return out

    def _payloads(self, stream: Stream, now_ms: int) -> list[str]:
        if isinstance(stream, (Kline, ContinuousKline)):
            return self._kline(stream, now_ms)
        if isinstance(stream, (MarkPrice, MarkPriceAll)):
            return self._mark(stream, now_ms)
        if isinstance(stream, BookTicker):
            return self._book(stream, now_ms)
        if isinstance(stream, AggTrade):
            return self._trade(stream, now_ms)
        return []

    def _kline(self, stream: Kline | ContinuousKline, now_ms: int) -> list[str]:
        symbol = stream.symbol if isinstance(stream, Kline) else stream.pair
        spec = self._specs.get(symbol)
        if spec is None:
            return []
        interval = stream.interval
        open_ms = candle_open_ms(interval, now_ms)
        state = self._klines.get(stream)
        if state is not None and state.open_ms < open_ms:
            # Candles closed since the last push: their final states, like REST /fapi/v1/klines.
            bars = self._market.klines(symbol, interval, state.open_ms, None, MAX_KLINES, now_ms)
            if not bars or bars[-1].open_ms != open_ms:
                _log.warning(
                    "kline_stream_skipped_ahead",
                    symbol=symbol,
                    interval=interval,
                    from_open_ms=state.open_ms,
                    to_open_ms=open_ms,
                )
                bars = [self._market.candle(symbol, interval, open_ms, now_ms)]
        else:
            bars = [self._market.candle(symbol, interval, open_ms, now_ms)]
        current = bars[-1]
        if state is not None and state.open_ms == open_ms and state.bar == current:
            return []  # unchanged since the last push
        self._klines[stream] = _KlineState(open_ms, current)
        payloads = []
        for bar in bars:
            if isinstance(stream, Kline):
                event = kline_event(symbol, interval, bar, spec, now_ms)
            else:
                event = continuous_kline_event(symbol, interval, bar, spec, now_ms)
            payloads.append(dumps(event))
        return payloads

    def _mark_event(self, symbol: str, now_ms: int) -> dict[str, Any]:
        market = self._market
        return mark_price_event(
            symbol,
            market.mark_price(symbol, now_ms),
            market.index_price(symbol, now_ms),
            market.funding_rate(symbol, now_ms),
            market.next_funding_ms(now_ms),
            now_ms,
        )

    def _mark(self, stream: MarkPrice | MarkPriceAll, now_ms: int) -> list[str]:
        if isinstance(stream, MarkPrice) and stream.symbol not in self._specs:
            return []
        slot = now_ms // stream.period_ms
        if self._slots.get(stream) == slot:
            return []
        self._slots[stream] = slot
        if isinstance(stream, MarkPrice):
            return [dumps(self._mark_event(stream.symbol, now_ms))]
        return [dumps([self._mark_event(symbol, now_ms) for symbol in self._specs])]

    def _book(self, stream: BookTicker, now_ms: int) -> list[str]:
        spec = self._specs.get(stream.symbol)
        if spec is None:
            return []
        book = self._market.book_ticker(stream.symbol, now_ms)
        if self._books.get(stream) == book:
            return []
        self._books[stream] = book
        update_id = self._market.update_id(now_ms)
        return [dumps(book_ticker_event(stream.symbol, book, spec, update_id, now_ms, now_ms))]

    def _trade(self, stream: AggTrade, now_ms: int) -> list[str]:
        spec = self._specs.get(stream.symbol)
        if spec is None:
            return []
        last_id = now_ms // STEP_MS  # market.py: trade id = step start ms // 250
        sent_id = self._trades.get(stream, last_id - 1)
        if sent_id >= last_id:
            return []
        self._trades[stream] = last_id
        first_id = max(sent_id + 1, last_id - MAX_TRADES + 1)
        payloads = []
        for trade_id in range(first_id, last_id + 1):
            trade = self._market.agg_trade(stream.symbol, trade_id * STEP_MS)
            payloads.append(dumps(agg_trade_event(stream.symbol, trade, spec, now_ms)))
        return payloads
