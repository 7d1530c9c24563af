"""Binance WebSocket payloads: market streams (§7.3) and user-data events (§6.3-§6.7).

`decode_event(raw)` unwraps a combined-stream message (`{"stream": …, "data": …}`), reads the
event type `e` and decodes the matching struct; an event type we do not know comes back as
`UnknownEvent` so the caller can log it and go on (STYLE.md: unknown events are skipped).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from shared.schemas.binance.base import Codec, Readable, Wire
from shared.schemas.binance.market import Kline, MarkPrice
from shared.schemas.binance.userdata import (
    USER_DATA_CODECS,
    AccountUpdate,
    AlgoUpdate,
    ListenKeyExpired,
    OrderUpdate,
    TradeLite,
)

# ---- envelope ------------------------------------------------------------------------------------


class _EnvelopeWire(Wire, frozen=True):
    e: str = ""  # event type of a raw payload
    stream: str | None = None  # combined stream name, e.g. btcusdt@kline_1m or the listenKey
    data: msgspec.Raw = msgspec.Raw()  # the wrapped raw payload; empty when not wrapped


_envelope = msgspec.json.Decoder(_EnvelopeWire)


def unwrap(raw: bytes | str) -> tuple[str | None, str, bytes | str]:
    """Return (stream name or None, event type, raw payload) of one WebSocket message.

    Reads only `e`, `stream` and `data`; raises msgspec.DecodeError for malformed JSON.
    """
    envelope = _envelope.decode(raw)
    if not envelope.data:
        return envelope.stream, envelope.e, raw
    inner = bytes(envelope.data)
    return envelope.stream, _envelope.decode(inner).e, inner


def event_type(raw: bytes | str) -> str:
    """Return the event type `e` of a raw or combined payload ("" when it has none)."""
    return unwrap(raw)[1]


# ---- market streams ------------------------------------------------------------------------------


class _KlineBodyWire(Wire, frozen=True):
    t: int  # open time, ms
    T: int  # close time (open + interval - 1 ms)
    s: str  # symbol
    i: str  # interval
    o: Decimal  # open
    c: Decimal  # close
    h: Decimal  # high
    l: Decimal  # low  # noqa: E741 (Binance's name)
    v: Decimal  # base volume
    n: int  # number of trades
    x: bool  # is this kline closed?
    q: Decimal  # quote volume
    V: Decimal  # taker buy base volume
    Q: Decimal  # taker buy quote volume


class _KlineEventWire(Wire, frozen=True):
    e: str  # "kline"
    E: int  # event time, ms
    s: str  # symbol
    k: _KlineBodyWire  # the kline


class KlineUpdate(Readable, frozen=True, kw_only=True):
    event_time_ms: int
    kline: Kline


def to_kline_update(w: _KlineEventWire) -> KlineUpdate:
    """Return the kline update (`kline.is_closed` marks the one final message per candle)."""
    k = w.k
    kline = Kline(symbol=k.s, interval=k.i, open_time_ms=k.t, close_time_ms=k.T, open=k.o,
                  high=k.h, low=k.l, close=k.c, volume=k.v, quote_volume=k.q, trades=k.n,
                  taker_buy_volume=k.V, taker_buy_quote_volume=k.Q, is_closed=k.x)  # fmt: skip
    return KlineUpdate(event_time_ms=w.E, kline=kline)


class _MarkPriceWire(Wire, frozen=True):
    e: str  # "markPriceUpdate"
    E: int  # event time, ms
    s: str  # symbol
    p: Decimal  # mark price
    i: Decimal  # index price
    P: Decimal  # estimated settle price
    r: Decimal  # funding rate
    T: int  # next funding time, ms


def to_mark_price_update(w: _MarkPriceWire) -> MarkPrice:
    """Return the mark price (the same struct as the REST premiumIndex reply)."""
    return MarkPrice(symbol=w.s, mark_price=w.p, index_price=w.i, estimated_settle_price=w.P,
                     funding_rate=w.r, next_funding_time_ms=w.T, time_ms=w.E)  # fmt: skip


class _BookTickerWire(Wire, frozen=True):
    e: str  # "bookTicker"
    u: int  # order book update id
    E: int  # event time, ms
    T: int  # transaction time, ms
    s: str  # symbol
    b: Decimal  # best bid price
    B: Decimal  # best bid quantity
    a: Decimal  # best ask price
    A: Decimal  # best ask quantity


class BookTicker(Readable, frozen=True, kw_only=True):
    symbol: str
    update_id: int
    bid_price: Decimal
    bid_qty: Decimal
    ask_price: Decimal
    ask_qty: Decimal
    event_time_ms: int
    transaction_time_ms: int


def to_book_ticker(w: _BookTickerWire) -> BookTicker:
    """Return the best bid and ask."""
    return BookTicker(symbol=w.s, update_id=w.u, bid_price=w.b, bid_qty=w.B, ask_price=w.a,
                      ask_qty=w.A, event_time_ms=w.E, transaction_time_ms=w.T)  # fmt: skip


# ---- dispatch ------------------------------------------------------------------------------------


class UnknownEvent(Readable, frozen=True, kw_only=True):
    event_type: str  # "" when the payload had no `e`
    stream: str | None


StreamEvent = (
    KlineUpdate | MarkPrice | BookTicker | AccountUpdate | OrderUpdate | AlgoUpdate | TradeLite
    | ListenKeyExpired | UnknownEvent
)  # fmt: skip

_CODECS: dict[str, Codec[Any, Any]] = {
    "kline": Codec(_KlineEventWire, to_kline_update),
    "markPriceUpdate": Codec(_MarkPriceWire, to_mark_price_update),
    "bookTicker": Codec(_BookTickerWire, to_book_ticker),
    **USER_DATA_CODECS,
}
KNOWN_EVENT_TYPES = frozenset(_CODECS)


def decode_event(raw: bytes | str) -> StreamEvent:
    """Decode one WebSocket message (raw or combined) into its readable event.

    Returns `UnknownEvent` for an event type not listed in `KNOWN_EVENT_TYPES`; raises
    msgspec.ValidationError (with the field path) or msgspec.DecodeError for a malformed one.
    """
    stream, kind, payload = unwrap(raw)
    codec = _CODECS.get(kind)
    if codec is None:
        return UnknownEvent(event_type=kind, stream=stream)
    event: StreamEvent = codec(payload)
    return event
