"""ZeroMQ bus messages and topics: every message defined once, as a frozen msgspec Struct.

A message is two frames: the dotted topic (ASCII), then the msgpack-encoded payload. The topic's
first word selects the payload type (`payload_type`). Every payload carries the envelope:

    v       schema version (SCHEMA_VERSION); a subscriber rejects other versions as malformed
    ts_ms   event time of what the payload describes, UTC milliseconds
    source  publishing process (e.g. "feed"), stamped by the Publisher
    seq     per-topic sequence, stamped by the Publisher: +1 per message on that topic, starting
            from the publisher's start time in microseconds, so it also grows across restarts

PUB/SUB carries replaceable data only (DESIGN-RULES 15): the latest kline, mark, position and
order state. Commands, orders to place and fills travel elsewhere (REST, Redis Streams).
Exchange-bound amounts (quantities, order and entry prices) are Decimal, market data is float.
"""

from __future__ import annotations

import re
from decimal import Decimal

import msgspec

SCHEMA_VERSION = 1


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """Fields every payload carries."""

    v: int = SCHEMA_VERSION
    ts_ms: int  # event time, UTC ms
    source: str = ""  # publishing process; stamped by the Publisher
    seq: int = 0  # per-topic sequence; stamped by the Publisher


class Kline(Envelope, frozen=True, kw_only=True):
    """One bar of a symbol (closed unless is_closed is False)."""

    symbol: str
    interval: str  # "1m"
    open_time_ms: int
    close_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float  # base asset
    quote_volume: float
    trades: int
    taker_buy_volume: float
    taker_buy_quote_volume: float
    is_closed: bool


class MarkPrice(Envelope, frozen=True, kw_only=True):
    """The latest mark price of a symbol (Binance markPrice stream)."""

    symbol: str
    price: float
    index_price: float
    funding_rate: float
    next_funding_time_ms: int


class MarkEntry(msgspec.Struct, frozen=True, array_like=True):
    """One symbol's mark inside `Marks` (encoded as a msgpack array: no field names per entry)."""

    symbol: str
    price: float
    index_price: float
    funding_rate: float
    next_funding_time_ms: int
    ts_ms: int  # event time, UTC ms


class Marks(Envelope, frozen=True, kw_only=True):
    """The marks of many symbols at one time, in one message (the feed's `!markPrice@arr`
    frame, its symbols only): one publish per second instead of one per symbol."""

    marks: tuple[MarkEntry, ...]


class Position(Envelope, frozen=True, kw_only=True):
    """The latest known position of a symbol; quantity is signed (negative = short)."""

    symbol: str
    quantity: Decimal
    entry_price: Decimal
    has_stop: bool  # an exchange-resident protective stop exists (DESIGN-RULES 1)
    updated_ms: int  # exchange time of the state, UTC ms


class OrderState(Envelope, frozen=True, kw_only=True):
    """The latest known state of one order, for display and staleness checks only."""

    symbol: str
    client_order_id: str
    side: str  # "BUY" | "SELL"
    order_type: str  # "LIMIT", "MARKET", "STOP_MARKET", ...
    status: str  # "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED", ...
    quantity: Decimal
    filled_quantity: Decimal
    price: Decimal
    updated_ms: int


class BusHeartbeat(Envelope, frozen=True, kw_only=True):
    """A publisher's periodic sign of life on the bus (link health, not process liveness)."""

    pid: int
    published: int  # messages published since start


Payload = Kline | MarkPrice | Marks | Position | OrderState | BusHeartbeat

_TYPES: dict[str, type[Payload]] = {
    "kline": Kline,
    "mark": MarkPrice,
    "marks": Marks,
    "position": Position,
    "order": OrderState,
    "heartbeat": BusHeartbeat,
}


_WORD_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _word(name: str, value: str) -> str:
    # Dots separate words and subscribers filter by prefix, so a word may contain neither.
    if not _WORD_RE.match(value):
        raise ValueError(f"bus: topic {name}={value!r} must match [A-Za-z0-9_-]+")
    return value


def kline_topic(interval: str, symbol: str) -> str:
    """Return `kline.<interval>.<symbol>`, e.g. kline.1m.BTCUSDT."""
    return f"kline.{_word('interval', interval)}.{_word('symbol', symbol)}"


def mark_topic(symbol: str) -> str:
    """Return `mark.<symbol>`."""
    return f"mark.{_word('symbol', symbol)}"


MARKS_TOPIC = "marks.all"  # `Marks`: every symbol's mark at once (subscribe to `marks.`)


def position_topic(symbol: str) -> str:
    """Return `position.<symbol>`."""
    return f"position.{_word('symbol', symbol)}"


def order_topic(symbol: str) -> str:
    """Return `order.<symbol>`."""
    return f"order.{_word('symbol', symbol)}"


def heartbeat_topic(process: str) -> str:
    """Return `heartbeat.<process>`, e.g. heartbeat.feed."""
    return f"heartbeat.{_word('process', process)}"


def payload_type(topic: str) -> type[Payload]:
    """Return the payload class for a topic; raise ValueError for an unknown first word."""
    kind = topic.split(".", 1)[0]
    try:
        return _TYPES[kind]
    except KeyError:
        raise ValueError(f"bus: topic {topic!r} has no payload type") from None


_encoder = msgspec.msgpack.Encoder()
_decoders = {kind: msgspec.msgpack.Decoder(cls) for kind, cls in _TYPES.items()}


def encode(payload: Payload) -> bytes:
    """Return the payload frame (msgpack)."""
    return _encoder.encode(payload)


def decode(topic: str, frame: bytes) -> Payload:
    """Decode the payload frame of `topic`.

    Raises ValueError for an unknown topic or another schema version, msgspec.ValidationError
    (message names the field path) or msgspec.DecodeError for a malformed frame.
    """
    kind = topic.split(".", 1)[0]
    decoder = _decoders.get(kind)
    if decoder is None:
        raise ValueError(f"bus: topic {topic!r} has no payload type")
    payload = decoder.decode(frame)
    if payload.v != SCHEMA_VERSION:
        raise ValueError(f"bus: payload v={payload.v} on {topic}, expected {SCHEMA_VERSION}")
    return payload
