"""Binance WebSocket payloads: market streams (§7.3) and user-data events (§6.3-§6.7).

`decode_event(raw)` unwraps a combined-stream message (`{"stream": …, "data": …}`), reads the
event type `e` and decodes the matching struct; an event type we do not know comes back as
`UnknownEvent` so the caller can log it and go on (STYLE.md: unknown events are skipped).

The feed's hot path has two shortcuts for the compact combined frames Binance sends
(`{"stream":"<name>","data":{…}}`, no whitespace): `decode_market_frame` decodes a kline or mark
price frame in one pass, choosing the struct by the stream name, and `is_open_kline_frame`
recognises an open (`"x":false`) kline update without building any value. Both accept only what
`decode_event` accepts too; anything else takes the general path, which reports the error.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import msgspec

from shared.schemas.binance.base import (
    Codec,
    Readable,
    Wire,
    check_not_negative,
    check_price,
    invalid,
)
from shared.schemas.binance.market import Kline, MarkPrice
from shared.schemas.binance.userdata import (
    USER_DATA_CODECS,
    AccountConfigUpdate,
    AccountUpdate,
    AlgoUpdate,
    ListenKeyExpired,
    MarginCall,
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
    """Return the kline update (`kline.is_closed` marks the one final message per candle);
    raises ValidationError for a price that is not finite and > 0 or a volume that is not
    finite and >= 0 (checked here, not only by the Codec: the feed's one-pass frame decode
    comes here too). A candle is never priced at 0: a zero close would reach the trader's
    features and its candidates."""
    k = w.k
    for name in ("o", "h", "l", "c"):
        check_price(getattr(k, name), f"$.k.{name}")
    for name in ("v", "q", "V", "Q"):
        check_not_negative(getattr(k, name), f"$.k.{name}")
    kline = Kline(
        symbol=k.s,
        interval=k.i,
        open_time_ms=k.t,
        close_time_ms=k.T,
        open=k.o,
        high=k.h,
        low=k.l,
        close=k.c,
        volume=k.v,
        quote_volume=k.q,
        trades=k.n,
        taker_buy_volume=k.V,
        taker_buy_quote_volume=k.Q,
        is_closed=k.x,
    )
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


def is_price(value: float | Decimal) -> bool:
    """Return whether `value` can be a mark price: finite and positive (NaN is neither)."""
    return math.isfinite(value) and value > 0


def to_mark_price_update(w: _MarkPriceWire) -> MarkPrice:
    """Return the mark price (the same struct as the REST premiumIndex reply); raises
    ValidationError for a mark price that is not finite and positive (no exit rule may see
    it)."""
    if not is_price(w.p):
        raise invalid("$.p", f"mark price {w.p} is not finite and positive")
    return MarkPrice(
        symbol=w.s,
        mark_price=w.p,
        index_price=w.i,
        estimated_settle_price=w.P,
        funding_rate=w.r,
        next_funding_time_ms=w.T,
        time_ms=w.E,
    )


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
    return BookTicker(
        symbol=w.s,
        update_id=w.u,
        bid_price=w.b,
        bid_qty=w.B,
        ask_price=w.a,
        ask_qty=w.A,
        event_time_ms=w.E,
        transaction_time_ms=w.T,
    )


# ---- the feed's hot path: one decode per combined market frame ----------------------------------


class MarkTick(Readable, frozen=True, kw_only=True):
    """A mark price stream update as the feed stores it: market data, so floats, not Decimal."""

    symbol: str
    mark_price: float
    index_price: float
    funding_rate: float
    next_funding_time_ms: int
    time_ms: int  # event time


class _MarkTickWire(Wire, frozen=True):
    e: str  # "markPriceUpdate"
    E: int  # event time, ms
    s: str  # symbol
    p: str  # mark price, a decimal string (float() in to_mark_tick)
    i: str  # index price
    P: str  # estimated settle price (required, as in _MarkPriceWire; not kept)
    r: str  # funding rate
    T: int  # next funding time, ms


def to_mark_tick(w: _MarkTickWire) -> MarkTick:
    """Return the mark as floats; raises ValueError for a price that is not a number, a mark
    price that is not finite and positive, or an index price or funding rate that is not
    finite."""
    tick = MarkTick(
        symbol=w.s,
        mark_price=float(w.p),
        index_price=float(w.i),
        funding_rate=float(w.r),
        next_funding_time_ms=w.T,
        time_ms=w.E,
    )
    if not is_price(tick.mark_price):
        raise ValueError(f"mark price {w.p[:40]!r} of {w.s[:40]!r} is not finite and positive")
    if not (math.isfinite(tick.index_price) and math.isfinite(tick.funding_rate)):
        raise ValueError(f"index price or funding rate of {w.s[:40]!r} is not finite")
    return tick


class MarkTicks(Readable, frozen=True, kw_only=True):
    """One `!markPrice@arr[@1s]` frame: the marks of every symbol of the market at one time."""

    ticks: tuple[MarkTick, ...]
    time_ms: int  # event time (of the first element; Binance stamps them all alike)
    rejected: tuple[str, ...] = ()  # why each element left out was (a bad price), for the count


class _KlineFrameWire(Wire, frozen=True, forbid_unknown_fields=True):
    stream: str  # stream name, e.g. btcusdt@kline_1m
    data: _KlineEventWire  # the kline event


class _MarkFrameWire(Wire, frozen=True, forbid_unknown_fields=True):
    stream: str  # stream name, e.g. btcusdt@markPrice@1s
    data: _MarkTickWire  # the mark price event


class _MarkArrayFrameWire(Wire, frozen=True, forbid_unknown_fields=True):
    stream: str  # !markPrice@arr or !markPrice@arr@1s
    data: list[_MarkTickWire]  # one mark price event per symbol


class _KlineProbeBodyWire(Wire, frozen=True):  # _KlineBodyWire with the decimals left unparsed
    t: int  # open time, ms
    T: int  # close time
    s: str  # symbol
    i: str  # interval
    o: str  # open
    c: str  # close
    h: str  # high
    l: str  # low  # noqa: E741 (Binance's name)
    v: str  # base volume
    n: int  # number of trades
    x: bool  # is this kline closed?
    q: str  # quote volume
    V: str  # taker buy base volume
    Q: str  # taker buy quote volume


class _KlineProbeWire(Wire, frozen=True):
    e: str  # "kline"
    E: int  # event time, ms
    s: str  # symbol
    k: _KlineProbeBodyWire  # the kline


class _KlineProbeFrameWire(Wire, frozen=True, forbid_unknown_fields=True):
    stream: str  # stream name
    data: _KlineProbeWire  # the kline event


MarketEvent = KlineUpdate | MarkTick | MarkTicks
_FRAME_HEAD = b'{"stream":"'  # a compact combined frame starts so (BINANCE-API.md §7.1)
_DATA_KEY = b'","data":'
_kline_frame = msgspec.json.Decoder(_KlineFrameWire)
_mark_frame = msgspec.json.Decoder(_MarkFrameWire)
_mark_array_frame = msgspec.json.Decoder(_MarkArrayFrameWire)
_MARK_ARRAY = b"!markPrice@arr"
_kline_probe = msgspec.json.Decoder(_KlineProbeFrameWire)
_FAST_ERRORS = (msgspec.DecodeError, ValueError, UnicodeError, RecursionError)


def decode_market_frame(frame: bytes) -> tuple[str, bytes, MarketEvent] | None:
    """Decode a compact combined `@kline_…`, `@markPrice…` or `!markPrice@arr…` frame in one
    pass; return (stream name, raw payload, event), or None when the frame is anything else or
    does not decode (the caller then takes the general path: `decode_event` on the payload,
    which names the error).
    """
    if not frame.startswith(_FRAME_HEAD):
        return None
    end = frame.find(b'"', 11)
    name = frame[11:end]
    if end < 0 or frame[end : end + 9] != _DATA_KEY or frame[-1:] != b"}" or b"\\" in name:
        return None
    event: MarketEvent
    try:
        if b"@kline_" in name:
            kline = _kline_frame.decode(frame)
            if kline.data.e != "kline":
                return None
            stream, event = kline.stream, to_kline_update(kline.data)
        elif name.startswith(_MARK_ARRAY):
            marks = _mark_array_frame.decode(frame)
            if not marks.data or any(m.e != "markPriceUpdate" for m in marks.data):
                return None
            ticks, rejected = [], []
            for m in marks.data:  # one bad element costs its own mark, not the frame's others
                try:
                    ticks.append(to_mark_tick(m))
                except ValueError as e:
                    rejected.append(str(e))
            stream, event = (
                marks.stream,
                MarkTicks(ticks=tuple(ticks), time_ms=marks.data[0].E, rejected=tuple(rejected)),
            )
        elif b"@markPrice" in name:
            mark = _mark_frame.decode(frame)
            if mark.data.e != "markPriceUpdate":
                return None
            stream, event = mark.stream, to_mark_tick(mark.data)
        else:
            return None
    except _FAST_ERRORS:
        return None
    # Byte offsets hold only if the decoded name is the one read above (no duplicate key).
    return (stream, frame[end + 9 : -1], event) if stream.encode() == name else None


def is_open_kline_frame(frame: bytes) -> bool:
    """Return whether `frame` is a compact combined kline frame of an open candle (`"x":false`).

    The whole frame is checked (JSON syntax, UTF-8, every kline field present with its type)
    but no value is built, and the decimals are not parsed (nobody reads an open candle).
    """
    # Cheap rejections of other frames first (no copy); the probe decode decides the rest.
    if not frame.startswith(_FRAME_HEAD) or frame.find(b"@kline_", 11, 80) < 0:
        return False
    try:
        probe = _kline_probe.decode(frame)
    except _FAST_ERRORS:
        return False
    return not probe.data.k.x and probe.data.e == "kline" and "@kline_" in probe.stream


# ---- dispatch ------------------------------------------------------------------------------------


class UnknownEvent(Readable, frozen=True, kw_only=True):
    event_type: str  # "" when the payload had no `e`
    stream: str | None


StreamEvent = (
    KlineUpdate
    | MarkPrice
    | BookTicker
    | AccountUpdate
    | OrderUpdate
    | AlgoUpdate
    | TradeLite
    | ListenKeyExpired
    | MarginCall
    | AccountConfigUpdate
    | UnknownEvent
)

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
