"""WebSocket stream client: combined market streams and the raw user-data stream (§7, §6.2).

`StreamConnection` keeps one logical connection for a fixed set of streams alive forever:
- Heartbeat: server pings are answered by `websockets`; the client pings every `ping_interval_s`
  and a missing pong within `pong_timeout_s` kills the socket (the library's keepalive). A market
  connection that stays open but delivers no valid message for `silence_timeout_s` is dead too
  (a stalled server still holds the TCP connection open); `mark_suspect()` forces the same.
- Reconnect: exponential back-off with full jitter (`core.backoff.backoff_delay_s`, ceiling
  `reconnect_base_s · 2^n` up to `reconnect_cap_s`), reset after `healthy_after_s` connected.
  After every reconnect a `Gap` is queued so the consumer can backfill over REST.
- Rollover: at `max_connection_age_s` (Binance disconnects at 24 h) a second socket opens; once it
  delivers (market) or is open (user data) the old one closes. No gap: `frames.Deduplicator`
  removes the events both sockets carried.
- Queue (`Inbox`) between the socket readers and the consumer, bounded, with a stated policy:
  market data drops the oldest message and counts it; user data never drops: a full queue
  blocks the reader, so the socket is not read meanwhile (its pong goes unseen and the library
  may close it); once the consumer catches up the reader sees the close, and the reconnect
  queues a `Gap` and calls `on_open` (a REST resync). `Gap`s are never dropped.
- Malformed frames are counted, logged with their first 200 bytes by a rate-limited `bad_message`
  warning, and skipped; nothing a frame contains can end the reader.
- `drops_open_klines` (the feed, which stores closed bars only): an open kline update
  (`frames`' `is_open_kline_frame`: a valid frame with `"x":false`) is counted as a valid message
  (silence detection, last-message age) and `open_klines_dropped`, but is neither decoded nor
  queued. Binance pushes one every 250 ms per symbol, most of a kline stream's traffic.

`StreamPool` shards any number of market streams over connections of at most
`max_streams_per_connection`, grouped by route (`/public` for bookTicker and depth, `/market` for
the rest), all feeding one `Inbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import numpy
import websockets
from websockets.asyncio.client import ClientConnection, connect

from shared import log
from shared.config import StreamsConfig
from shared.exchange.frames import (
    Deduplicator,
    FrameError,
    Gap,
    StreamMessage,
    combined_stream_url,
    next_attempt,
    parse_frame,
    reconnect_delay_s,
    shard_streams,
)
from shared.exchange.inbox import Inbox, StreamItem
from shared.schemas.binance import is_open_kline_frame

UrlSource = Callable[[], Awaitable[str]]
BAD_FRAME_HEAD_BYTES = 200  # how much of a malformed frame a warning shows
MAX_FRAME_BYTES = 1 << 22  # largest frame accepted; `!markPrice@arr` is ~100 KB

_log = log.get("exchange")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class StreamStats:
    """A snapshot of one connection (or of a pool, summed)."""

    connected: int  # connections open now
    streams: int  # stream names served
    reconnects: int  # reconnects after a lost connection (rollovers not counted)
    rollovers: int  # proactive replacements before the 24 h limit
    queue_depth: int  # items waiting for the consumer
    drops: int  # messages dropped by the queue's drop-oldest policy
    bad_messages: int  # malformed frames skipped
    duplicates: int  # messages removed by the deduplicator
    messages: int  # valid messages queued
    last_message_age_s: float | None  # seconds since the last valid message; None before one
    open_klines_dropped: int = 0  # valid open kline updates dropped unqueued (drops_open_klines)


class _Socket:
    """One open WebSocket of a StreamConnection and its reader task."""

    def __init__(self, ws: ClientConnection, opened_s: float) -> None:
        self.ws = ws
        self.opened_s = opened_s  # monotonic
        self.valid_frames = 0  # valid messages read on this socket, duplicates included
        self.last_valid_s = opened_s  # monotonic time of the last valid message
        self.reader: asyncio.Task[str] | None = None


class StreamConnection:
    """One logical connection for a fixed set of streams, kept alive until `close()`.

    `url` returns the URL of the next socket (awaited before each connect, so the user-data
    stream can fetch a listenKey). `on_open` is awaited after every socket opens (including a
    rollover) while the reader already runs; if it raises, the socket is dropped and reconnected.
    `inspect` sees every valid message in the reader (keep it fast, it must not raise), except
    the open kline updates that `drops_open_klines` drops before decoding them.
    """

    def __init__(
        self,
        name: str,
        url: UrlSource,
        streams: tuple[str, ...],
        settings: StreamsConfig,
        inbox: Inbox,
        *,
        is_combined: bool = True,
        is_user_data: bool = False,
        drops_open_klines: bool = False,
        silence_timeout_s: float | None = None,
        on_open: Callable[[], Awaitable[None]] | None = None,
        inspect: Callable[[StreamMessage], None] | None = None,
        rng: numpy.random.Generator | None = None,
    ) -> None:
        self.name = name
        self.streams = streams
        self.settings = settings
        self.inbox = inbox
        self.is_combined = is_combined
        self.is_user_data = is_user_data
        self.drops_open_klines = drops_open_klines and is_combined
        self.silence_timeout_s = silence_timeout_s
        self._url = url
        self._on_open = on_open
        self._inspect = inspect
        self._rng = rng or numpy.random.default_rng()
        self._dedup = Deduplicator(is_user_data)
        self._bad_throttle = log.Throttle(settings.bad_message_log_interval_s)
        self._suspect_reason = ""
        self._task: asyncio.Task[None] | None = None
        self._current: _Socket | None = None
        self._last_message_s: float | None = None  # monotonic (wall time: _last_message_ms)
        self.reconnects = 0
        self.rollovers = 0
        self.bad_messages = 0
        self.duplicates = 0
        self.messages = 0
        self.open_klines_dropped = 0

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the connection task (returns at once; connecting happens in the background)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def close(self) -> None:
        """Stop reconnecting and close the socket (bounded by `close_timeout_s`)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def mark_suspect(self, reason: str = "suspect") -> None:
        """Declare the open socket dead (e.g. REST shows changes it never delivered): reconnect."""
        self._suspect_reason = reason

    def stats(self) -> StreamStats:
        """Return the connection's counters now."""
        age = None if self._last_message_s is None else time.monotonic() - self._last_message_s
        return StreamStats(
            connected=int(self._current is not None),
            streams=len(self.streams),
            reconnects=self.reconnects,
            rollovers=self.rollovers,
            queue_depth=len(self.inbox),
            drops=self.inbox.dropped,
            bad_messages=self.bad_messages,
            duplicates=self.duplicates,
            messages=self.messages,
            last_message_age_s=age,
            open_klines_dropped=self.open_klines_dropped,
        )

    # --- the socket ---------------------------------------------------------------------------

    async def _open(self, lost: tuple[int, str] | None = None) -> _Socket:
        """Connect, queue the `Gap` of a loss (`lost`: wall ms of the last message, reason)
        ahead of the new socket's messages, start the reader, then await `on_open`."""
        s = self.settings
        self._suspect_reason = ""  # a suspicion is about the socket it was raised on
        url = await asyncio.wait_for(self._url(), timeout=s.user_call_timeout_s)
        ws = await connect(
            url,
            open_timeout=s.open_timeout_s,
            ping_interval=s.ping_interval_s,
            ping_timeout=s.pong_timeout_s,
            close_timeout=s.close_timeout_s,
            max_size=MAX_FRAME_BYTES,
            proxy=None,
            compression=None,
        )
        sock = _Socket(ws, time.monotonic())
        try:
            if lost is not None:
                self.reconnects += 1
                gap = Gap(self.name, self.streams, lost[0], _wall_ms(), lost[1])
                await self.inbox.put(gap)
                _log.info(
                    "ws_reconnected",
                    connection=self.name,
                    reason=lost[1],
                    gap_ms=gap.reconnected_ms - lost[0],
                )
            else:
                _log.info("ws_connected", connection=self.name, streams=len(self.streams))
            sock.reader = asyncio.get_running_loop().create_task(self._read(sock))
            if self._on_open is not None:
                await asyncio.wait_for(self._on_open(), timeout=s.user_call_timeout_s)
        except BaseException:  # cancelled or on_open failed: no socket may leak
            await self._drop(sock)
            raise
        return sock

    async def _drop(self, sock: _Socket) -> None:
        """Close a socket (closing handshake bounded by close_timeout_s) and end its reader."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sock.ws.close(), timeout=self.settings.close_timeout_s)
        if sock.reader is not None:
            sock.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sock.reader

    def _last_message_ms(self) -> int:
        """Return the wall ms of the last valid message (now when there was none), derived
        from its monotonic time: the per-frame path stamps only one clock."""
        now_ms = _wall_ms()
        if self._last_message_s is None:
            return now_ms
        return now_ms - round((time.monotonic() - self._last_message_s) * 1000)

    def accept_frame(self, frame: bytes | str, sock: _Socket | None = None) -> StreamMessage | None:
        """Validate, inspect and deduplicate one frame (read on `sock`); return the message to
        queue, or None (malformed: counted and logged, rate-limited; duplicate: counted; an open
        kline under `drops_open_klines`: counted). Never raises."""
        if self.drops_open_klines and type(frame) is bytes and is_open_kline_frame(frame):
            now_s = time.monotonic()
            if sock is not None:
                sock.valid_frames += 1
                sock.last_valid_s = now_s
            self.open_klines_dropped += 1
            self._last_message_s = now_s
            return None
        try:
            message = parse_frame(frame, self.is_combined)
        except FrameError as e:
            self._bad_frame(str(e), frame)
            return None
        now_s = time.monotonic()
        if sock is not None:
            sock.valid_frames += 1
            sock.last_valid_s = now_s
        if self._inspect is not None:
            self._inspect(message)
        if not self._dedup.is_new(message):
            self.duplicates += 1
            return None
        self.messages += 1
        self._last_message_s = now_s
        return message

    async def _read(self, sock: _Socket) -> str:
        """Read frames into the inbox until the socket ends; return why it ended.

        No deadline on `recv` itself: the keepalive (pong timeout) and `_watch` (silence,
        suspect) close the socket, which ends `recv` (DESIGN-RULES 11)."""
        try:
            while True:
                message = self.accept_frame(await sock.ws.recv(decode=False), sock)
                if message is not None:
                    await self.inbox.put(message)
        except websockets.ConnectionClosed as e:
            frame = e.rcvd or e.sent
            return f"closed code={frame.code if frame else 'none'}"
        except Exception as e:  # top of the reader loop: log, end the socket, reconnect
            _log.exception("ws_reader_failed", connection=self.name, error=repr(e))
            return "reader_error"

    def _bad_frame(self, reason: str, frame: bytes | str) -> None:
        self.bad_messages += 1
        should_log, suppressed = self._bad_throttle.allow(time.monotonic())
        if should_log:
            head = frame[:BAD_FRAME_HEAD_BYTES]
            text = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
            _log.warning(
                "bad_message",
                connection=self.name,
                reason=reason,
                head=text,
                suppressed=suppressed,
                total=self.bad_messages,
            )

    # --- supervision --------------------------------------------------------------------------

    def _tick_s(self) -> float:
        limits = [self.settings.max_connection_age_s, self.settings.pong_timeout_s]
        if self.silence_timeout_s is not None:
            limits.append(self.silence_timeout_s)
        return max(0.01, min(1.0, min(limits) / 4))

    async def _watch(self, sock: _Socket) -> str:
        """Return when `sock` must be replaced: "rollover", or why it is dead."""
        assert sock.reader is not None
        tick = self._tick_s()
        while True:
            done, _pending = await asyncio.wait({sock.reader}, timeout=tick)
            if done:
                return sock.reader.result()
            now = time.monotonic()
            if self._suspect_reason:
                reason, self._suspect_reason = self._suspect_reason, ""
                return reason
            silence = self.silence_timeout_s
            if (
                silence is not None
                and not self.inbox.is_blocked
                and now - sock.last_valid_s > silence
            ):
                return "silent"
            if now - sock.opened_s >= self.settings.max_connection_age_s:
                return "rollover"

    async def _roll_over(self, old: _Socket) -> _Socket:
        """Open a successor of `old`; return it once it delivers (user data: once open), after
        closing `old`. On failure close the successor and return `old` (retried next tick)."""
        new: _Socket | None = None
        try:
            new = await self._open()
            deadline = time.monotonic() + self.settings.rollover_timeout_s
            while not self.is_user_data and new.valid_frames == 0:
                if time.monotonic() > deadline or (new.reader is not None and new.reader.done()):
                    await self._drop(new)
                    raise TimeoutError("the new connection delivered nothing")
                await asyncio.sleep(self._tick_s())
        except asyncio.CancelledError:
            if new is not None:
                await self._drop(new)
            raise
        except Exception as e:  # keep the old socket; try again after a tenth of the age
            _log.warning("ws_rollover_failed", connection=self.name, error=repr(e))
            old.opened_s = time.monotonic() - self.settings.max_connection_age_s * 0.9
            return old
        await self._drop(old)
        self.rollovers += 1
        _log.info("ws_rolled_over", connection=self.name, streams=len(self.streams))
        return new

    async def _run(self) -> None:
        s = self.settings
        attempt = 0
        lost: tuple[int, str] | None = None  # wall ms of the last message before a loss, why
        while True:
            try:
                sock = await self._open(lost)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # connect or on_open failed: back off and try again
                attempt = next_attempt(attempt, None, s.healthy_after_s)
                delay = reconnect_delay_s(attempt, s.reconnect_base_s, s.reconnect_cap_s, self._rng)
                _log.warning(
                    "ws_connect_failed",
                    connection=self.name,
                    error=repr(e)[:200],
                    attempt=attempt,
                    retry_in_s=round(delay, 3),
                )
                await asyncio.sleep(delay)
                continue
            self._current = sock
            try:
                reason = await self._watch(sock)
                while reason == "rollover":
                    sock = self._current = await self._roll_over(sock)
                    reason = await self._watch(sock)
            finally:
                self._current = None
                await self._drop(sock)
            lost = (self._last_message_ms(), reason)
            attempt = next_attempt(attempt, time.monotonic() - sock.opened_s, s.healthy_after_s)
            delay = reconnect_delay_s(attempt, s.reconnect_base_s, s.reconnect_cap_s, self._rng)
            _log.warning(
                "ws_disconnected", connection=self.name, reason=reason, retry_in_s=round(delay, 3)
            )
            await asyncio.sleep(delay)


class StreamPool:
    """Market streams sharded over connections of at most `max_streams_per_connection`, one queue.

    Use as `async with StreamPool(...) as pool:` then `await pool.get()` (or `async for`).
    """

    def __init__(
        self,
        ws_url: str,
        streams: Iterable[str],
        settings: StreamsConfig,
        *,
        drops_open_klines: bool = False,
        rng: numpy.random.Generator | None = None,
    ) -> None:
        self.inbox = Inbox(settings.queue_max_messages, "drop_oldest")
        rng = rng or numpy.random.default_rng()
        self.connections: list[StreamConnection] = []
        counts: dict[str, int] = {}
        for route, names in shard_streams(streams, settings.max_streams_per_connection):
            index = counts[route] = counts.get(route, -1) + 1
            url = combined_stream_url(ws_url, route, names)
            self.connections.append(
                StreamConnection(
                    f"{route}-{index}",
                    _constant(url),
                    names,
                    settings,
                    self.inbox,
                    drops_open_klines=drops_open_klines,
                    silence_timeout_s=settings.silence_timeout_s,
                    rng=rng,
                )
            )

    async def __aenter__(self) -> StreamPool:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Start every connection (in the background)."""
        for conn in self.connections:
            conn.start()

    async def close(self) -> None:
        """Close every connection."""
        await asyncio.gather(*(conn.close() for conn in self.connections))

    async def get(self) -> StreamItem:
        """Wait for the next message or gap of any connection."""
        return await self.inbox.get()

    def __aiter__(self) -> StreamPool:
        return self

    async def __anext__(self) -> StreamItem:
        return await self.inbox.get()

    def stats(self) -> StreamStats:
        """Return the counters summed over the connections (the queue is shared)."""
        parts = [conn.stats() for conn in self.connections]
        ages = [p.last_message_age_s for p in parts if p.last_message_age_s is not None]
        return StreamStats(
            connected=sum(p.connected for p in parts),
            streams=sum(p.streams for p in parts),
            reconnects=sum(p.reconnects for p in parts),
            rollovers=sum(p.rollovers for p in parts),
            queue_depth=len(self.inbox),
            drops=self.inbox.dropped,
            bad_messages=sum(p.bad_messages for p in parts),
            duplicates=sum(p.duplicates for p in parts),
            messages=sum(p.messages for p in parts),
            last_message_age_s=min(ages) if ages else None,
            open_klines_dropped=sum(p.open_klines_dropped for p in parts),
        )


def _constant(url: str) -> UrlSource:
    async def source() -> str:
        return url

    return source
