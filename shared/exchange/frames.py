"""The socket-free half of the stream client: frame validation, deduplication, sharding, URLs.

Pure (no sockets, no clock, no event loop), so `streams.py` only moves bytes and keeps time;
everything here is tested without a socket, like the `websockets` protocol layer.

Frames (BINANCE-API.md §7.1, §6.2): a combined-stream connection (`/<route>/stream?streams=…`)
wraps every payload as `{"stream": "<name>", "data": <object or array>}`; a raw connection
(`/private/ws?listenKey=…`) sends the event object itself. `parse_frame` checks that envelope and
reads only what the client needs to order and deduplicate (`e`, `E`, and `k.t`/`k.x` of klines);
the payload is handed on as raw JSON bytes for `shared.schemas.binance.decode_event`. A compact
kline or mark price frame is instead decoded once, whole, by `decode_market_frame`, and its event
travels with the message (`StreamMessage.event`); a frame that does not decode so takes the
general path, so what counts as valid or bad is the same either way.

Dedup rule (`Deduplicator`): during a proactive rollover two sockets carry the same streams, so the
same event arrives twice. A closed kline is delivered once per (stream, open time), whatever its
event time; any other market event once per (stream, event time, kline open time, is_closed); a
user-data event once per (stream, event time, payload bytes), because distinct user events can
share an event time (ACCOUNT_UPDATE and ORDER_TRADE_UPDATE of one fill). Events without `E` are
never deduplicated. Keys are remembered for the last `memory` events only (bounded).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

import msgspec
import numpy

from shared.core.backoff import backoff_delay_s
from shared.schemas.binance import MarketEvent, MarkTick, MarkTicks, decode_market_frame

Route = Literal["public", "market", "private"]

# §7.1 routing table: public = depth*, rpiDepth, bookTicker (ccxt adds trade); market = the rest.
_PUBLIC_PREFIXES = ("depth", "rpidepth", "bookticker")
USER_DATA_STREAM = "userData"  # the stream label of raw user-data frames (they carry no name)


class FrameError(ValueError):
    """A frame that is not a valid stream message; the message is the reason."""


class _KlineKeyWire(msgspec.Struct):
    t: int  # kline open time, ms
    x: bool  # is this kline closed?


class _PayloadWire(msgspec.Struct):
    e: str = ""  # event type
    E: int | str = 0  # event time, ms; a string in listenKeyExpired (§6.3)
    k: _KlineKeyWire | None = None  # the kline body of kline events


class _CombinedWire(msgspec.Struct):
    stream: str  # stream name, e.g. btcusdt@kline_1m
    data: msgspec.Raw  # the raw payload


_combined = msgspec.json.Decoder(_CombinedWire)
_payload = msgspec.json.Decoder(_PayloadWire | list[_PayloadWire])
_object = msgspec.json.Decoder(_PayloadWire)


class StreamMessage(msgspec.Struct, frozen=True):
    """One valid message of one stream, as the consumer receives it (a Struct, not a frozen
    dataclass: one is made per message, and a frozen dataclass costs 10x as much to build)."""

    stream: str  # stream name (USER_DATA_STREAM for raw user-data frames)
    data: bytes  # the raw JSON payload: an object, or an array for `!…@arr` streams
    event_type: str  # `e` ("" for arrays)
    event_time_ms: int  # `E` (of the first element for arrays; 0 when absent)
    kline_open_ms: int | None  # `k.t` of kline events, else None
    is_closed: bool  # `k.x`: the one final message of a candle
    event: MarketEvent | None = None  # the decoded event of a kline or mark frame, else None


@dataclass(frozen=True, slots=True)
class Gap:
    """A reconnect: messages between the two times may be missing (backfill over REST)."""

    connection: str  # the connection's name, e.g. market-0
    streams: tuple[str, ...]  # the streams of that connection
    disconnected_since_ms: int  # wall ms of the last message received before the loss
    reconnected_ms: int  # wall ms when the new connection opened
    reason: str  # why the old connection ended: closed, silent, suspect, ...


def _event_time_ms(value: int | str) -> int:
    if isinstance(value, int):
        return value
    if not value.isdigit():
        raise FrameError(f"event time E={value[:20]!r} is not an integer")
    return int(value)


def _is_utf8(frame: bytes | str) -> bool:
    """Return whether a frame is valid UTF-8 text (a str is; bytes are checked)."""
    if isinstance(frame, str):
        return True
    try:
        bytes(frame).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def parse_frame(frame: bytes | str, is_combined: bool) -> StreamMessage:
    """Validate one WebSocket frame and return its message; raise FrameError with the reason.

    Combined frames need a string `stream` and an object or array `data`; raw frames need an
    object with a non-empty `e`. `E` may be an integer or a digit string; `k` needs `t` and `x`.
    """
    if is_combined and type(frame) is bytes:
        fast = decode_market_frame(frame)
        if fast is not None:
            stream, data, event = fast
            if isinstance(event, MarkTick):
                return StreamMessage(
                    stream, data, "markPriceUpdate", event.time_ms, None, False, event
                )
            if isinstance(event, MarkTicks):
                return StreamMessage(stream, data, "", event.time_ms, None, False, event)
            k = event.kline
            return StreamMessage(
                stream, data, "kline", event.event_time_ms, k.open_time_ms, k.is_closed, event
            )
    try:
        if is_combined:
            envelope = _combined.decode(frame)
            if not envelope.stream:
                raise FrameError("stream name is empty")
            stream, data = envelope.stream, bytes(envelope.data)
            decoded = _payload.decode(data)
        else:
            stream = USER_DATA_STREAM
            data = frame.encode() if isinstance(frame, str) else bytes(frame)
            decoded = _object.decode(data)
            if not decoded.e:
                raise FrameError("event type e is missing")
    except msgspec.ValidationError as e:
        raise FrameError(f"wrong shape: {e}") from None
    except (msgspec.DecodeError, UnicodeError) as e:
        # Decided by the bytes, not by msgspec's wording: releases differ in whether bad UTF-8
        # raises UnicodeDecodeError or DecodeError, and in the text of either.
        if not _is_utf8(frame):
            raise FrameError("not UTF-8") from None
        raise FrameError(f"not JSON: {e}") from None
    except RecursionError:
        raise FrameError("nested too deeply") from None
    if isinstance(decoded, list):
        first_time = _event_time_ms(decoded[0].E) if decoded else 0
        return StreamMessage(stream, data, "", first_time, None, False)
    kline = decoded.k
    return StreamMessage(
        stream,
        data,
        decoded.e,
        _event_time_ms(decoded.E),
        kline.t if kline is not None else None,
        kline.x if kline is not None else False,
    )


DedupKey = tuple[object, ...]


def dedup_key(message: StreamMessage, is_user_data: bool) -> DedupKey | None:
    """Return the identity of a message for deduplication, or None (never deduplicated)."""
    if message.kline_open_ms is not None and message.is_closed:
        return ("closed", message.stream, message.kline_open_ms)
    if message.event_time_ms == 0:
        return None
    if is_user_data:
        return (message.stream, message.event_time_ms, message.data)
    return (message.stream, message.event_time_ms, message.kline_open_ms, message.is_closed)


class Deduplicator:
    """Remember the keys of the last `memory` messages; `is_new` says whether one is unseen."""

    def __init__(self, is_user_data: bool, memory: int = 8192) -> None:
        if memory < 1:
            raise ValueError(f"dedup: memory={memory} must be >= 1")
        self.is_user_data = is_user_data
        self.memory = memory
        self._seen: set[DedupKey] = set()
        self._order: deque[DedupKey] = deque()

    def is_new(self, message: StreamMessage) -> bool:
        """Return False for a duplicate; otherwise remember the message and return True."""
        key = dedup_key(message, self.is_user_data)
        if key is None:
            return True
        if key in self._seen:
            return False
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > self.memory:
            self._seen.discard(self._order.popleft())
        return True


def stream_route(name: str) -> Route:
    """Return the entry point that serves stream `name` (§7.1 routing table)."""
    if name.startswith("!"):  # all-symbol streams: !bookTicker, !markPrice@arr, ...
        kind = name[1:].partition("@")[0]
    else:
        kind = name.partition("@")[2].partition("@")[0]
    kind = kind.lower()
    if kind.startswith(_PUBLIC_PREFIXES) or kind == "trade":
        return "public"
    return "market"


def shard_streams(
    names: Iterable[str], max_per_connection: int
) -> list[tuple[Route, tuple[str, ...]]]:
    """Group stream names by route, then split each group into connections of at most
    `max_per_connection` names (sorted, duplicates removed). Raises ValueError for a bad limit."""
    if max_per_connection < 1:
        raise ValueError(f"shard: max_per_connection={max_per_connection} must be >= 1")
    by_route: dict[Route, list[str]] = {}
    for name in sorted(set(names)):
        by_route.setdefault(stream_route(name), []).append(name)
    plan: list[tuple[Route, tuple[str, ...]]] = []
    for route in sorted(by_route):
        group = by_route[route]
        count = math.ceil(len(group) / max_per_connection)
        plan.extend(
            (route, tuple(group[i * max_per_connection : (i + 1) * max_per_connection]))
            for i in range(count)
        )
    return plan


def combined_stream_url(ws_url: str, route: Route, names: Iterable[str]) -> str:
    """Return `<ws_url>/<route>/stream?streams=a/b/c` (names are URL-safe; `!` and `@` kept)."""
    joined = "/".join(quote(n, safe="@!_-.") for n in names)
    return f"{ws_url.rstrip('/')}/{route}/stream?streams={joined}"


def user_data_url(ws_url: str, listen_key: str) -> str:
    """Return `<ws_url>/private/ws?listenKey=<key>` (the form ccxt and python-binance use, §6.2)."""
    return f"{ws_url.rstrip('/')}/private/ws?listenKey={quote(listen_key, safe='')}"


def next_attempt(attempt: int, connected_for_s: float | None, healthy_after_s: float) -> int:
    """Return the back-off attempt after a connection ended: 0 when it had stayed up for
    `healthy_after_s` (a healthy period resets the back-off), else `attempt + 1`.
    `connected_for_s` is None when the connection never opened."""
    if connected_for_s is not None and connected_for_s >= healthy_after_s:
        return 0
    return attempt + 1


def reconnect_delay_s(
    attempt: int, base_s: float, cap_s: float, rng: numpy.random.Generator
) -> float:
    """Return the wait before reconnect `attempt` (from `next_attempt`), seconds: full jitter
    under a ceiling of base_s for attempts 0 and 1, then doubling up to cap_s
    (production: 5, 5, 10, 20, ... 300 s)."""
    return backoff_delay_s(max(attempt - 1, 0), base_s, cap_s, rng)
