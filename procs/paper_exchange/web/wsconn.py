"""One WebSocket connection of the paper exchange: its send queue, reader, writer and keep-alive.

`ws.py` accepts the connection and fans stream data out to it; this module owns what happens on
the socket (BINANCE-API.md §7.1, §7.2, §11 items 8-10):
- the reader applies control messages (`streams.apply_control`), answers ping frames with a pong
  carrying the same payload, records pongs (any payload, solicited or not), and closes the
  connection past `ws_max_incoming_per_s` incoming frames (pings, pongs and JSON all count, §7.1);
- the writer drains the bounded `Outbox` onto the socket;
- the keeper sends a ping frame every `ws_ping_interval_s`, closes when a ping got no pong within
  `ws_pong_timeout_s`, and force-closes after `ws_max_lifetime_s` (Binance: 24 h) so a client's
  reconnect logic gets exercised.
While the `ws_stalled` fault is on, nothing is written and no ping is sent or answered, so a
client's own ping timeout fires; the keeper does not judge pongs during a stall (the server is
"frozen") and restarts its pong clock when the stall ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Protocol

from aiohttp import WSCloseCode, WSMsgType, web

from procs.paper_exchange.web.streams import Entry, Subscriptions, apply_control, dumps, frame

STALL_POLL_S = 0.02  # how often a stalled writer/keeper looks whether the stall ended, seconds


class FaultsView(Protocol):
    @property
    def ws_stalled(self) -> bool: ...


class Outbox:
    """A connection's bounded send queue.

    Overflow policy (STYLE: every queue states it): market data drops the oldest queued market
    message and counts it in `dropped`; reliable messages (user-data events, control replies) are
    never dropped. A reliable message that finds the queue full first evicts the oldest market
    message; if only reliable messages are queued, `put_reliable` returns False and the caller
    aborts the connection, so the client reconnects and resyncs over REST instead of silently
    missing an order or balance update.
    """

    def __init__(self, max_messages: int) -> None:
        self.max_messages = max_messages
        self.dropped = 0  # market messages dropped by the overflow policy
        self._items: deque[tuple[bool, str]] = deque()  # (is_reliable, text)
        self._wakeup = asyncio.Event()
        self.is_closing = False

    def __len__(self) -> int:
        return len(self._items)

    def _evict_oldest_market(self) -> bool:
        for i, (is_reliable, _text) in enumerate(self._items):
            if not is_reliable:
                del self._items[i]
                self.dropped += 1
                return True
        return False

    def put_market(self, text: str) -> None:
        """Queue market data; when full drop the oldest market message (or this one)."""
        if len(self._items) >= self.max_messages and not self._evict_oldest_market():
            self.dropped += 1
            return
        self._items.append((False, text))
        self._wakeup.set()

    def put_reliable(self, text: str) -> bool:
        """Queue a message that must not be lost; False when it cannot be queued."""
        if len(self._items) >= self.max_messages and not self._evict_oldest_market():
            return False
        self._items.append((True, text))
        self._wakeup.set()
        return True

    def close(self) -> None:
        """Make `get` return None from now on (the writer then closes the socket)."""
        self.is_closing = True
        self._wakeup.set()

    async def get(self) -> str | None:
        """Wait for the next message; None once `close` was called."""
        while not self.is_closing:
            if self._items:
                return self._items.popleft()[1]
            self._wakeup.clear()
            await self._wakeup.wait()
        return None


class Connection:
    """A client's socket plus its subscriptions; created by `ws.py` after the handshake."""

    def __init__(
        self,
        conn_id: int,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        entry: Entry,
        subs: Subscriptions,
        events: frozenset[str] | None,
        max_queue: int,
    ) -> None:
        self.id = conn_id
        self.ws = ws
        self.entry = entry
        self.subs = subs
        self.events = events  # user-data event types to deliver (None: all), `&events=` filter
        self.outbox = Outbox(max_queue)
        self.sent = 0  # messages written to the socket
        self.close_code: int = WSCloseCode.OK
        self.close_reason = ""  # why the server closed it; empty when the client did
        self._transport = transport
        self._awaiting_pong_since: float | None = None  # loop time of the first unanswered ping

    def send_market(self, name: str, raw_json: str) -> None:
        """Queue one market payload of stream `name`, wrapped as this connection wants it."""
        self.outbox.put_market(frame(name, raw_json, self.subs.is_combined))

    def send_user(self, name: str, raw_json: str) -> None:
        """Queue one user-data event; abort the connection when it cannot be queued."""
        if not self.outbox.put_reliable(frame(name, raw_json, self.subs.is_combined)):
            self.abort("user_data_queue_full")

    def close_soon(self, code: int, reason: str) -> None:
        """Ask the writer to send a close frame (code, reason) and end the connection."""
        if not self.close_reason:
            self.close_code, self.close_reason = code, reason
        self.outbox.close()

    def abort(self, reason: str) -> None:
        """Drop the TCP connection without a close frame (what a client sees as a dead socket)."""
        if not self.close_reason:
            self.close_code, self.close_reason = WSCloseCode.ABNORMAL_CLOSURE, reason
        self.outbox.close()
        if self._transport is not None:
            self._transport.abort()

    @property
    def is_aborted(self) -> bool:
        """Whether the server dropped the TCP connection (no close frame is due)."""
        return self.close_code == WSCloseCode.ABNORMAL_CLOSURE

    async def write_loop(self, faults: FaultsView) -> None:
        """Drain the outbox onto the socket, then send the close frame the server asked for.

        During a stall it waits (a close frame waits too); an abort ends it at once.
        """
        while True:
            text = await self.outbox.get()
            # `Faults.ws_stalled` is a plain switch the control API flips, so it is polled.
            while faults.ws_stalled and not self.is_aborted:  # noqa: ASYNC110
                await asyncio.sleep(STALL_POLL_S)
            if text is None or self.is_aborted:
                break
            await self.ws.send_str(text)
            self.sent += 1
        if not self.ws.closed and not self.is_aborted:
            await self.ws.close(code=self.close_code, message=self.close_reason.encode())

    async def keep_loop(
        self, faults: FaultsView, ping_s: float, pong_timeout_s: float, lifetime_s: float
    ) -> None:
        """Send pings, enforce the pong timeout and the lifetime; return after asking to close."""
        loop = asyncio.get_running_loop()
        opened = loop.time()
        next_ping = opened + ping_s
        while True:
            now = loop.time()
            deadline = min(next_ping, opened + lifetime_s)
            if self._awaiting_pong_since is not None:
                deadline = min(deadline, self._awaiting_pong_since + pong_timeout_s)
            await asyncio.sleep(max(0.0, deadline - now) if not faults.ws_stalled else STALL_POLL_S)
            now = loop.time()
            if now >= opened + lifetime_s:
                self.close_soon(WSCloseCode.GOING_AWAY, "connection lifetime exceeded")
                return
            if faults.ws_stalled:
                self._awaiting_pong_since = None  # a frozen server judges nothing
                next_ping = now + ping_s
                continue
            since = self._awaiting_pong_since
            if since is not None and now - since >= pong_timeout_s:
                self.close_soon(WSCloseCode.POLICY_VIOLATION, "pong timeout")
                return
            if now >= next_ping:
                next_ping = now + ping_s
                if self._awaiting_pong_since is None:
                    self._awaiting_pong_since = now
                with contextlib.suppress(ConnectionResetError):
                    await self.ws.ping(b"")

    async def read_loop(self, faults: FaultsView, max_incoming_per_s: int) -> None:
        """Handle incoming frames until the socket closes; control replies are queued reliably."""
        loop = asyncio.get_running_loop()
        arrivals: deque[float] = deque()
        async for msg in self.ws:
            now = loop.time()
            arrivals.append(now)
            while arrivals and arrivals[0] <= now - 1.0:
                arrivals.popleft()
            if len(arrivals) > max_incoming_per_s:
                # §7.1: more than 10 incoming messages per second -> disconnect.
                self.close_soon(WSCloseCode.POLICY_VIOLATION, "too many messages")
                return
            if msg.type is WSMsgType.PONG:
                self._awaiting_pong_since = None
            elif msg.type is WSMsgType.PING:
                if not faults.ws_stalled:
                    with contextlib.suppress(ConnectionResetError):
                        await self.ws.pong(msg.data)
            elif msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                data = msg.data
                text = data if isinstance(data, str) else data.decode("utf-8", "replace")
                if not self.outbox.put_reliable(dumps(apply_control(self.subs, text))):
                    self.abort("reply_queue_full")  # the client sends but does not read
                    return
            elif msg.type is WSMsgType.ERROR:
                return
