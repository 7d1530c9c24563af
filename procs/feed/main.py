"""The feed (supervisord program `feed`, `python -m procs.feed [--mode paper|live]`): turns the
exchange's streams into klines, marks, positions and orders for every other process.

Subscribes to: `<s>@kline_1m` of every `feed.symbols` and `!markPrice@arr@1s` (every symbol's
mark, one frame a second; `feed.mark_stream = "symbol"`: `<s>@markPrice@1s` each) in one
`StreamPool`, the account's user-data stream (`UserDataStream`), and REST for backfills and
account snapshots.
Publishes on ZeroMQ (`feed.bus_endpoint`, default ipc://@slt-<instance>-feed-bus): closed
`kline.1m.<S>`, `marks.all` (the marks of a `!markPrice@arr` frame, ours only, in one message;
`mark.<S>` per mark from per-symbol streams and the REST poll), `position.<S>`, `order.<S>` and
`heartbeat.feed`; each message's seq and payload also go to Redis (`Keys.feed_latest`/
`feed_seqs`: a mark under `mark.<S>` whichever way it came; open orders in `feed_orders`), the
Clone-pattern snapshot a late subscriber loads before dropping older messages.
Owns: the shared-memory kline windows and marks `slt-<instance>-klines` (sole writer; a restart
continues them), its heartbeat slot, the instance lock `ipc://@slt-<instance>-feed`.

Windows have no holes: the last `backfill_bars` closed bars (or, after a restart, those since the
last stored bar) are loaded over REST after the streams start, every reconnect (`Gap`) backfills
its symbols, and a closed kline that does not follow the last stored bar is preceded by a REST
backfill; a bar is never stored past a hole (if REST fails, the next kline retries).
Redis is a cache: when it is down the feed warns (rate-limited) and goes on with shm and ZeroMQ,
then rewrites everything once Redis answers again. Bad events are counted, logged (rate-limited,
first 200 bytes) and skipped. Logs: connects, reconnects, backfills, resyncs, `feed_stats`.
Per message: kline and mark frames are decoded once, by the frame check; open kline updates
(4 a second per symbol, unused) are dropped there, undecoded. REST and Redis: `procs.feed.tasks`.
`feed.disable_websocket` (or SLT_DISABLE_WEBSOCKET=1) polls klines and marks over REST instead of
the market streams (the user-data stream stays); `feed.disable_rest_fallback` never uses REST for
market data after the start backfill (reconnects and holes are then not backfilled).
Exit codes: 0 after SIGTERM/SIGINT, 2 configuration error, 1 anything else (e.g. the instance
lock is held by another feed).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable

import msgspec

from procs.feed.health import FeedCounters, Warnings
from procs.feed.logic.state import (
    INTERVAL,
    AccountState,
    CacheMirror,
    Message,
    bus_kline,
    bus_mark,
    has_hole,
    is_feed_bar,
    kline_row,
)
from procs.feed.tasks import backfill_klines, flush_cache, poll_rest, publish_heartbeats
from shared import log
from shared.bus import Publisher, bus_endpoint
from shared.cache import Cache, redis_url
from shared.config import MAX_KLINES_PER_REQUEST, Config
from shared.exchange.frames import Gap, StreamMessage
from shared.exchange.inbox import StreamItem
from shared.exchange.rest import ExchangeClient
from shared.exchange.streams import BAD_FRAME_HEAD_BYTES, StreamPool
from shared.exchange.userstream import UserDataStream
from shared.process import cancel_tasks, process_main, wait_tasks
from shared.schemas import binance as b
from shared.schemas import bus
from shared.shm.heartbeat import HeartbeatWriter, run_heartbeat
from shared.shm.rings import KlineWriter

PROCESS = "feed"
MARK_ALL_STREAM = "!markPrice@arr@1s"  # every symbol's mark in one frame per second


class Feed:
    """The feed's state and handlers; `run()` wires them to streams and tasks."""

    def __init__(
        self,
        cfg: Config,
        client: ExchangeClient,
        writer: KlineWriter,
        publisher: Publisher,
        logger: log.EventLogger,
    ) -> None:
        self.cfg, self.client, self.writer = cfg, client, writer
        self.pub, self.log = publisher, logger
        self.account = AccountState()
        self.mirror = CacheMirror(PROCESS)  # stamps payloads as the Publisher does
        self.mark_topics = {s: bus.mark_topic(s) for s in cfg.feed.symbols}  # also: is it ours?
        self.kline_topics = {s: bus.kline_topic(INTERVAL, s) for s in cfg.feed.symbols}
        self.account_lock = asyncio.Lock()  # a resync and the user events it covers never overlap
        self.progress: dict[str, int] = {}  # heartbeat progress: name -> CLOCK_MONOTONIC ns
        self.counters = FeedCounters()  # feed_stats; flush_cache and backfill_klines count too
        self.warnings = Warnings(
            logger, cfg.feed.warning_interval_s, ("bad", "redis", "backfill", "event")
        )

    # ---- publishing --------------------------------------------------------------------------

    def publish(self, messages: list[Message]) -> None:
        """Publish on the bus and record each message (with its seq) for the Redis mirror."""
        for topic, payload in messages:
            self.publish_one(topic, payload)

    def publish_one(self, topic: str, payload: bus.Payload) -> None:
        """Publish one message; the mirror keeps the struct and encodes only the latest per
        topic when it is flushed (an order state is encoded now: the open orders need it)."""
        seq = self.pub.publish(topic, payload)
        if not isinstance(payload, bus.OrderState):
            self.mirror.set_latest(topic, payload, seq)
            return
        encoded = bus.encode(msgspec.structs.replace(payload, source=PROCESS, seq=seq))
        self.mirror.set_latest(topic, encoded, seq)
        is_open = payload.client_order_id in self.account.orders
        self.mirror.set_order(payload.client_order_id, encoded if is_open else None)

    def store_kline(self, k: b.Kline) -> bool:
        """Append a closed bar to shm and publish it; False when it is not newer than the last."""
        if not self.writer.append(k.symbol, kline_row(k)):
            return False
        self.publish_one(self.kline_topics[k.symbol], bus_kline(k))
        self.progress["kline"] = time.monotonic_ns()
        return True

    async def backfill(self, symbol: str, reason: str, page: int = MAX_KLINES_PER_REQUEST) -> bool:
        """Store `symbol`'s missing closed bars over REST (`procs.feed.tasks.backfill_klines`);
        False (warned, counted) when REST failed."""
        return await backfill_klines(
            self.client,
            self.writer,
            self.store_kline,
            self.counters,
            self.warnings,
            self.log,
            symbol,
            reason,
            backfill_bars=self.cfg.feed.backfill_bars,
            page=page,
        )

    def decode(self, item: StreamMessage) -> b.StreamEvent | b.MarketEvent | None:
        """Return the message's event (decoded by the frame check, or now); None (counted,
        logged rate-limited) when malformed."""
        if item.event is not None:
            return item.event
        try:
            event = b.decode_event(item.data)
        except (msgspec.DecodeError, ValueError) as e:
            reason = str(e)
        else:
            if not isinstance(event, b.UnknownEvent):
                return event
            reason = f"unknown event type {event.event_type!r}"
        self.bad(item.stream, reason, item.data)
        return None

    def bad(self, stream: str, reason: str, data: bytes = b"") -> None:
        """Count and log (rate-limited, with the first 200 bytes of `data` when given) a
        malformed message, or a malformed part of one."""
        self.counters.bad_messages += 1
        head = {"head": data[:BAD_FRAME_HEAD_BYTES].decode("utf-8", "replace")} if data else {}
        self.warnings.warn(
            "bad",
            "bad_message",
            stream=stream,
            reason=reason[:200],
            **head,
            total=self.counters.bad_messages,
        )

    # ---- handlers ----------------------------------------------------------------------------

    async def on_market(self, item: StreamItem) -> None:
        """Handle one market message, or backfill the symbols of a reconnected connection."""
        if isinstance(item, Gap):
            if self.cfg.feed.disable_rest_fallback:
                return
            wanted = {stream.split("@", 1)[0].upper() for stream in item.streams}
            for symbol in (s for s in self.cfg.feed.symbols if s in wanted):
                await self.backfill(symbol, "reconnect")
            return
        event = item.event if item.event is not None else self.decode(item)
        if isinstance(event, b.MarkTicks):
            self.store_marks(event)
        elif isinstance(event, (b.MarkTick, b.MarkPrice)):
            if event.symbol in self.mark_topics:
                self.store_mark(event)
            else:
                self.bad(
                    item.stream,
                    f"mark of {event.symbol[:40]!r}, not one of feed.symbols",
                    item.data,
                )
        elif isinstance(event, b.KlineUpdate) and event.kline.is_closed:
            k = event.kline
            if k.symbol not in self.kline_topics or not is_feed_bar(k):
                bar = f"{k.symbol[:40]!r} {k.interval[:8]} t={k.open_time_ms} T={k.close_time_ms}"
                self.bad(item.stream, f"closed kline {bar} is not a bar of the feed", item.data)
                return
            last = self.writer.last_open_time_ms(k.symbol)
            if has_hole(last, k.open_time_ms) and not self.cfg.feed.disable_rest_fallback:
                self.counters.rest_fallbacks += 1
                if not await self.backfill(k.symbol, "hole"):
                    return  # never store past a hole; the next closed bar retries
            self.store_kline(k)

    def store_marks(self, frame: b.MarkTicks) -> None:
        """Set the marks of our symbols in shm and publish them as one `marks.all` message (the
        array holds every symbol of the market; the others are skipped, not counted as bad).
        The Redis mirror keeps each symbol's latest under `mark.<S>` for late joiners."""
        for reason in frame.rejected:  # its other marks still count
            self.bad("!markPrice@arr", reason)
        topics = self.mark_topics
        entries = [
            bus.MarkEntry(
                m.symbol,
                m.mark_price,
                m.index_price,
                m.funding_rate,
                m.next_funding_time_ms,
                m.time_ms,
            )
            for m in frame.ticks
            if m.symbol in topics
        ]
        if not entries:
            return
        self.writer.set_marks(
            [e.symbol for e in entries], [e.price for e in entries], [e.ts_ms for e in entries]
        )
        set_latest = self.mirror.set_latest
        marks = bus.Marks(ts_ms=frame.time_ms, marks=tuple(entries))
        seq = self.pub.publish(bus.MARKS_TOPIC, marks)
        set_latest(bus.MARKS_TOPIC, marks, seq)
        for e in entries:
            set_latest(topics[e.symbol], e, seq)
        self.progress["mark"] = time.monotonic_ns()

    def store_mark(self, mark: b.MarkTick | b.MarkPrice) -> None:
        """Set the symbol's mark in shm and publish it (KeyError for a symbol not ours); a mark
        price that is not finite and positive (REST replies are not checked on decoding) is
        counted bad and dropped."""
        if not b.is_price(mark.mark_price):
            self.bad(
                "mark",
                f"mark price {mark.mark_price} of {mark.symbol[:40]!r} is not finite and positive",
            )
            return
        payload = bus_mark(mark)
        self.writer.set_mark(mark.symbol, payload.price, mark.time_ms)
        self.publish_one(self.mark_topics[mark.symbol], payload)
        self.progress["mark"] = time.monotonic_ns()

    async def on_user(self, item: StreamItem) -> None:
        """Apply one user-data event to the account state and publish what changed."""
        self.progress["user_data"] = time.monotonic_ns()
        if isinstance(item, Gap):
            return  # the reconnect's resync (UserDataStream on_open) replaced the state
        event = self.decode(item)
        async with self.account_lock:
            if isinstance(event, b.AccountUpdate):
                self.publish(self.account.apply_account_update(event))
            elif isinstance(event, b.OrderUpdate):
                self.publish(self.account.apply_order_update(event))
            elif isinstance(event, b.AlgoUpdate):
                self.publish(self.account.apply_algo_update(event))

    async def resync(self) -> None:
        """Replace positions and open (regular and algo) orders with a REST snapshot."""
        async with self.account_lock:
            positions = await self.client.position_risk()
            orders = await self.client.open_orders()
            algo_orders = await self.client.open_algo_orders()
            messages = self.account.replace(positions, orders, algo_orders)
            self.mirror.replace_orders({})  # publish() sets the open ones again
            self.publish(messages)
        self.progress["reconcile"] = time.monotonic_ns()
        self.log.info(
            "account_resynced",
            positions=sum(1 for p in positions if p.amount),
            open_orders=len(self.account.orders),
        )


async def consume(
    get: Callable[[], Awaitable[StreamItem]],
    handle: Callable[[StreamItem], Awaitable[None]],
    warnings: Warnings,
) -> None:
    """Hand every item of a stream to `handle`; a failing item is logged and skipped."""
    while True:
        item = await get()
        try:
            await handle(item)
        except Exception as e:  # top of the loop: nothing an event contains may end the feed
            warnings.warn("event", "event_failed", handler=handle.__name__, error=repr(e)[:200])


async def serve(cfg: Config, instance: str, logger: log.EventLogger, _stop: asyncio.Event) -> None:
    """Run the feed until cancelled."""
    f = cfg.feed
    url = redis_url(cfg.redis.url, cfg.redis.private_port)
    async with (
        Cache(url, instance, cfg.redis.socket_timeout_s) as cache,
        ExchangeClient(cfg.exchange, cache, logger=logger) as client,
    ):
        writer = KlineWriter.open(instance, f.symbols, f.window_bars)
        heartbeat = HeartbeatWriter(instance, PROCESS)
        tasks: list[asyncio.Task[None]] = []
        connections: list[StreamPool | UserDataStream] = []  # feed_stats sums their counters
        try:
            with Publisher(f.bus_endpoint or bus_endpoint(instance, PROCESS), PROCESS) as pub:
                feed = Feed(cfg, client, writer, pub, logger)
                logger.info(
                    "feed_started",
                    instance=instance,
                    symbols=len(f.symbols),
                    continued=not writer.is_new,
                    endpoint=pub.endpoint,
                )
                spawn = asyncio.get_running_loop().create_task
                tasks += [
                    spawn(
                        run_heartbeat(
                            heartbeat, f.heartbeat_interval_s, lambda: dict(feed.progress)
                        )
                    ),
                    spawn(
                        publish_heartbeats(
                            pub, cache, PROCESS, feed.counters, connections, logger, f
                        )
                    ),
                    spawn(flush_cache(feed.mirror, cache, feed.counters, feed.warnings, logger, f)),
                ]
                names = [f"{s.lower()}@kline_1m" for s in f.symbols]
                if f.mark_stream == "all":
                    names.append(MARK_ALL_STREAM)
                else:
                    names += [f"{s.lower()}@markPrice@1s" for s in f.symbols]
                # Streams first, then the backfill: a bar closing in between is in the queue.
                async with contextlib.AsyncExitStack() as market:
                    pool: StreamPool | None = None
                    if not f.disable_websocket:
                        pool = StreamPool(
                            cfg.exchange.ws_url, names, cfg.streams, drops_open_klines=True
                        )  # only closed bars are kept
                        await market.enter_async_context(pool)
                        connections.append(pool)
                    for symbol in f.symbols:
                        await feed.backfill(symbol, "start")
                    if pool is not None:  # consumed only after the start backfill
                        tasks.append(spawn(consume(pool.get, feed.on_market, feed.warnings)))
                    else:
                        logger.info("feed_polling_rest", interval_s=f.rest_poll_interval_s)
                        poll = poll_rest(client, f, feed.store_mark, feed.backfill, feed.warnings)
                        tasks.append(spawn(poll))
                    user = UserDataStream(
                        cfg.exchange.ws_url,
                        client.listen_key_create,
                        client.listen_key_keepalive,
                        feed.resync,
                        cfg.streams,
                    )
                    connections.append(user)
                    async with user:
                        tasks.append(spawn(consume(user.get, feed.on_user, feed.warnings)))
                        await wait_tasks(tasks)
        finally:
            await cancel_tasks(tasks)
            heartbeat.close()
            writer.close()


def main(argv: list[str] | None = None) -> int:
    """Run the feed; return the exit code (0 clean stop, 2 configuration error, 1 fatal)."""
    return process_main(PROCESS, "The market feed.", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
