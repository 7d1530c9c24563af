"""WebSocket side of the paper exchange: routes, stream fan-out, user-data stream, listenKey REST.

Owned here (DESIGN.md "Server ↔ WebSocket interface"): `StreamHub` (`px.hub`), the listenKey
endpoints `POST/PUT/DELETE /fapi/v1/listenKey`, and `add_ws_routes(app, px, hub)`, which
`build_app` calls; they see the exchange as an `ExchangeHost` (host.py). The server's step loop
calls `hub.on_step(now_ms)` once per push interval and `hub.push_user_events(events, now_ms)` with
the engine's user-data events.

Routes (BINANCE-API.md §7.1, §6.2, §11 item 8), each on the REST port:
    /ws, /ws/<a>/<b>…, /stream?streams=<a>/<b>…                  legacy root: serves every category
    /{public,market,private}/ws[/<a>/<b>…], …/stream?streams=…   serves its own category only
    /private/ws?listenKey=<key>[&events=<E1>,<E2>], /private/ws/<key>, /private/stream?listenKey=…
A stream of another category than the entry point's gets no data, as after Binance's 2026 split
(`/public/ws/btcusdt@kline_1m` is silent); unknown names are accepted and silent (ccxt opens
`/market/ws/0`). The legacy root is lenient and serves everything, including a listenKey sent by
SUBSCRIBE (the deprecated connector, §8.2). Payloads are raw on `/ws`, `{"stream","data"}` on
`/stream` or after SET_PROPERTY combined=true.

Logs: `ws_connected` / `ws_disconnected` per connection and a `ws_stats` summary every minute,
never a line per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import WSCloseCode, web

from procs.paper_exchange.errors import ApiError
from procs.paper_exchange.web.auth import decode_body, parse_params
from procs.paper_exchange.web.feeds import MarketFeeds
from procs.paper_exchange.web.host import ExchangeHost
from procs.paper_exchange.web.streams import (
    Entry,
    Stream,
    Subscriptions,
    dumps,
    is_served_on,
    split_stream_names,
    stream_category,
)
from procs.paper_exchange.web.userstream import (
    UNKNOWN_KEY_CODE,
    UNKNOWN_KEY_MSG,
    UnknownListenKeyError,
    listen_key_expired_event,
)
from procs.paper_exchange.web.wsconn import Connection
from shared import log

_log = log.get("paper_exchange")

STATS_INTERVAL_S = 60.0  # real seconds between `ws_stats` summaries
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_MESSAGE_BYTES = 1 << 20  # largest incoming frame; a SUBSCRIBE of 1024 names is ~40 KB


class StreamHub:
    """Every open connection, the market feeds and the user-data fan-out."""

    def __init__(self, px: ExchangeHost) -> None:
        self._px = px
        self.connections: dict[int, Connection] = {}
        self.feeds = MarketFeeds(px.market, px.public.specs)
        self._next_id = 1
        self._tasks: set[asyncio.Task[Any]] = set()  # connection handlers, awaited at shutdown
        self._next_stats_s = time.monotonic() + STATS_INTERVAL_S
        self._sent_before = 0  # messages sent by connections already closed
        self._dropped_before = 0

    # --- the server's calls -------------------------------------------------------------------

    def on_step(self, now_ms: int) -> None:
        """Push market data for simulated time `now_ms` and announce expired listenKeys.

        Called once per `ws_push_interval_ms` of real time. While `ws_stalled` nothing is queued;
        the feeds keep their state, so closed candles are still sent (in order) after the stall.
        """
        if self._px.faults.ws_stalled:
            return
        for key in self._px.listen_keys.take_expired(self._px.real_ms()):
            self._send_to_key(key, [listen_key_expired_event(key, now_ms)], is_final=True)
            self._px.mark_dirty()
        wanted: dict[Stream, list[tuple[Connection, str]]] = {}
        for conn in self.connections.values():
            for name, stream in conn.subs.names.items():
                if is_served_on(conn.entry, stream_category(stream)):
                    wanted.setdefault(stream, []).append((conn, name))
        for stream, payloads in self.feeds.collect(wanted.keys(), now_ms).items():
            for conn, name in wanted[stream]:
                for raw in payloads:
                    conn.send_market(name, raw)
        self._log_stats()

    def push_user_events(self, events: list[dict[str, Any]], now_ms: int) -> None:
        """Send user-data events (engine wire dicts, in order) to the active listenKey's streams.

        Never dropped: a connection that cannot queue one is aborted (see `Outbox`).
        """
        key = self._px.listen_keys.active(self._px.real_ms())
        if key is not None and events:
            self._send_to_key(key, events, is_final=False)

    def drop_all(self) -> int:
        """Abort every connection without a close frame (fault injection); return how many."""
        conns = list(self.connections.values())
        for conn in conns:
            conn.abort("dropped_by_fault")
        return len(conns)

    def close_listen_key(self, key: str) -> None:
        """Close every connection subscribed to `key` (after DELETE /fapi/v1/listenKey).

        A `/ws` connection that also carries market streams (the connector's) closes as a whole:
        Binance "closes the stream", and the client reconnects and subscribes again.
        """
        for conn in list(self.connections.values()):
            if key in conn.subs.names:
                conn.close_soon(WSCloseCode.OK, "listenKey deleted")

    async def close_all(self, _app: web.Application | None = None) -> None:
        """Close every connection with 1001 going-away (app shutdown)."""
        for conn in list(self.connections.values()):
            conn.close_soon(WSCloseCode.GOING_AWAY, "server shutdown")
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)

    # --- internals ----------------------------------------------------------------------------

    def _send_to_key(self, key: str, events: Iterable[dict[str, Any]], is_final: bool) -> None:
        for conn in list(self.connections.values()):
            if key not in conn.subs.names or not is_served_on(conn.entry, "private"):
                continue
            for event in events:
                # `&events=` filters the account events; the expiry notice always goes out.
                if is_final or conn.events is None or event.get("e") in conn.events:
                    conn.send_user(key, dumps(event))

    def _log_stats(self) -> None:
        now = time.monotonic()
        if now < self._next_stats_s:
            return
        self._next_stats_s = now + STATS_INTERVAL_S
        conns = self.connections.values()
        _log.info(
            "ws_stats",
            connections=len(self.connections),
            streams=sum(len(c.subs.names) for c in conns),
            messages_sent=self._sent_before + sum(c.sent for c in conns),
            messages_dropped=self._dropped_before + sum(c.outbox.dropped for c in conns),
        )

    async def serve(
        self,
        request: web.Request,
        entry: Entry,
        is_combined: bool,
        names: list[str],
        events: frozenset[str] | None,
    ) -> web.StreamResponse:
        """Run one connection from handshake to close; returns when the socket is gone."""
        cfg = self._px.cfg
        subs = Subscriptions(is_combined=is_combined)
        if not subs.add(names):
            raise web.HTTPBadRequest(text=f"too many streams, the limit is {subs.max_streams}")
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=MAX_MESSAGE_BYTES)
        transport = request.transport
        await ws.prepare(request)
        conn = Connection(
            self._next_id, ws, transport, entry, subs, events, cfg.ws_queue_max_messages
        )
        self._next_id += 1
        self.connections[conn.id] = conn
        path = _loggable_path(request.path)
        _log.info("ws_connected", conn=conn.id, path=path, streams=len(subs.names))
        faults = self._px.faults
        loop = asyncio.get_running_loop()
        opened = loop.time()
        writer = loop.create_task(conn.write_loop(faults))
        keeper = loop.create_task(
            conn.keep_loop(
                faults, cfg.ws_ping_interval_s, cfg.ws_pong_timeout_s, cfg.ws_max_lifetime_s
            )
        )
        reader = asyncio.current_task()
        if reader is not None:
            self._tasks.add(reader)
        try:
            with contextlib.suppress(ConnectionError):
                await conn.read_loop(faults, cfg.ws_max_incoming_per_s)
            if conn.close_reason and not conn.is_aborted:  # let the writer send the close frame
                with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(writer), timeout=5.0)
        finally:
            for task in (writer, keeper):
                task.cancel()
            await asyncio.gather(writer, keeper, return_exceptions=True)
            self.connections.pop(conn.id, None)
            self._sent_before += conn.sent
            self._dropped_before += conn.outbox.dropped
            if reader is not None:
                self._tasks.discard(reader)
            _log.info(
                "ws_disconnected",
                conn=conn.id,
                path=path,
                reason=conn.close_reason or "client_closed",
                close_code=conn.close_code if conn.close_reason else ws.close_code,
                lifetime_s=round(loop.time() - opened, 1),
                messages_sent=conn.sent,
                messages_dropped=conn.outbox.dropped,
            )
        return ws


def _loggable_path(path: str) -> str:
    """Return `path` with listenKeys cut to their first four characters (STYLE: secrets)."""
    parts = path.split("/")
    return "/".join(p[:4] + "…" if len(p) >= 32 and "@" not in p else p for p in parts)


def _split_param(value: str) -> list[str]:
    # §12: the separator of `listenKey=`/`events=` lists is unconfirmed; accept "," and "/".
    return [part for part in value.replace("/", ",").split(",") if part]


def _connection_handler(hub: StreamHub, entry: Entry, is_combined: bool) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        names = split_stream_names(request.match_info.get("streams", ""))
        names += split_stream_names(request.query.get("streams", ""))
        names += _split_param(request.query.get("listenKey", ""))
        events_text = request.query.get("events", "")
        events = frozenset(_split_param(events_text)) if events_text else None
        return await hub.serve(request, entry, is_combined, names, events)

    return handle


async def _listen_key_param(request: web.Request) -> str | None:
    """Return `listenKey` from the query or a form body (the connector uses the query, §8.2)."""
    query = request.raw_path.partition("?")[2]
    return parse_params(query, decode_body(await request.read())).get("listenKey") or None


def _listen_key_handlers(px: ExchangeHost, hub: StreamHub) -> tuple[Handler, Handler, Handler]:
    """POST/PUT/DELETE /fapi/v1/listenKey: USER_STREAM security, API key only (§6.1).

    `px.check_api_key` and the -1125 reply raise ApiError; the server's middleware answers it.
    """

    async def post(request: web.Request) -> web.StreamResponse:
        px.check_api_key(request)
        key = px.listen_keys.open(px.real_ms())
        px.mark_dirty()
        return web.json_response({"listenKey": key})

    async def put(request: web.Request) -> web.StreamResponse:
        px.check_api_key(request)
        try:
            key = px.listen_keys.keepalive(await _listen_key_param(request), px.real_ms())
        except UnknownListenKeyError:
            raise ApiError(400, UNKNOWN_KEY_CODE, UNKNOWN_KEY_MSG) from None
        px.mark_dirty()
        return web.json_response({"listenKey": key})

    async def delete(request: web.Request) -> web.StreamResponse:
        px.check_api_key(request)
        try:
            key = px.listen_keys.close(await _listen_key_param(request), px.real_ms())
        except UnknownListenKeyError:
            raise ApiError(400, UNKNOWN_KEY_CODE, UNKNOWN_KEY_MSG) from None
        px.mark_dirty()
        hub.close_listen_key(key)
        return web.json_response({})

    return post, put, delete


def add_ws_routes(app: web.Application, px: ExchangeHost, hub: StreamHub) -> None:
    """Register every WebSocket route and the listenKey endpoints on `app`; `hub` serves them."""
    prefixes: tuple[tuple[str, Entry], ...] = (
        ("", "root"),
        ("/public", "public"),
        ("/market", "market"),
        ("/private", "private"),
    )
    for prefix, entry in prefixes:
        raw = _connection_handler(hub, entry, is_combined=False)
        app.router.add_get(f"{prefix}/ws", raw)
        app.router.add_get(prefix + "/ws/{streams:.+}", raw)
        app.router.add_get(f"{prefix}/stream", _connection_handler(hub, entry, is_combined=True))
    post, put, delete = _listen_key_handlers(px, hub)
    app.router.add_post("/fapi/v1/listenKey", post)
    app.router.add_put("/fapi/v1/listenKey", put)
    app.router.add_delete("/fapi/v1/listenKey", delete)
    app.on_shutdown.append(hub.close_all)
