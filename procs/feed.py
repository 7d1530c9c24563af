"""The feed (supervisord program `feed`, `python -m procs.feed [--mode paper|live]`): turns the
exchange's streams into klines, marks, positions and orders for every other process.

Subscribes to: `<s>@kline_1m` and `<s>@markPrice@1s` of every `feed.symbols` (one `StreamPool`),
the account's user-data stream (`UserDataStream`), and REST for backfills and account snapshots.
Publishes on ZeroMQ (`feed.bus_endpoint`, default ipc://@slt-<instance>-feed-bus): closed
`kline.1m.<S>`, `mark.<S>`, `position.<S>`, `order.<S>` and `heartbeat.feed`; each message's
seq and payload also go to Redis (`Keys.feed_latest`/`feed_seqs`, open orders in `feed_orders`),
the Clone-pattern snapshot a late subscriber loads before dropping older messages.
Owns: the shared-memory kline windows and marks `slt-<instance>-klines` (sole writer; a restart
continues them), its heartbeat slot, the instance lock `ipc://@slt-<instance>-feed`.

Windows have no holes: the last `backfill_bars` closed bars (or, after a restart, those since the
last stored bar) are loaded over REST after the streams start, every reconnect (`Gap`) backfills
its symbols, and a closed kline that does not follow the last stored bar is preceded by a REST
backfill; a bar is never stored past a hole (if REST fails, the next kline retries).
Redis is a cache: when it is down the feed warns (rate-limited) and goes on with shm and ZeroMQ,
then rewrites everything once Redis answers again. Bad events are counted, logged (rate-limited,
first 200 bytes) and skipped. Logs: connects, reconnects, backfills, resyncs, `feed_stats`.
`feed.disable_websocket` (or SLT_DISABLE_WEBSOCKET=1) polls klines and marks over REST instead of
the market streams (the user-data stream stays); `feed.disable_rest_fallback` never uses REST for
market data after the start backfill (reconnects and holes are then not backfilled).
Exit codes: 0 after SIGTERM/SIGINT, 2 configuration error, 1 anything else (e.g. the instance
lock is held by another feed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import uvloop

from shared import log
from shared.bus import InstanceLockedError, Publisher, bind_instance_lock, bus_endpoint
from shared.cache import Cache, CacheUnavailableError, redis_url
from shared.config import MAX_KLINES_PER_REQUEST, MODES, Config, ConfigError, load_config
from shared.core.feedstate import (
    INTERVAL,
    AccountState,
    CacheMirror,
    Message,
    backfill_start_ms,
    bus_kline,
    bus_mark,
    closed_new_klines,
    has_hole,
)
from shared.exchange.errors import ExchangeError
from shared.exchange.frames import Gap, StreamMessage
from shared.exchange.inbox import StreamItem
from shared.exchange.rest import ExchangeClient
from shared.exchange.streams import BAD_FRAME_HEAD_BYTES, StreamPool
from shared.exchange.userstream import UserDataStream
from shared.heartbeat import HeartbeatWriter, run_heartbeat
from shared.schemas import binance as b
from shared.schemas import bus
from shared.shm import KlineWriter
from shared.stack import instance_id

PROCESS = "feed"
POLL_PAGE_ROWS = 99  # klines page while polling: limit < 100 costs weight 1


def kline_row(k: b.Kline) -> list[float]:
    """Return the shm row of a kline, in `shared.shm.KlineColumn` order."""
    return [float(k.open_time_ms), float(k.open), float(k.high), float(k.low), float(k.close),
            float(k.volume), float(k.close_time_ms), float(k.quote_volume), float(k.trades),
            float(k.taker_buy_volume), float(k.taker_buy_quote_volume)]  # fmt: skip


class Feed:
    """The feed's state and handlers; `run()` wires them to streams and tasks."""

    def __init__(self, cfg: Config, client: ExchangeClient, writer: KlineWriter,
                 publisher: Publisher, logger: log.EventLogger) -> None:  # fmt: skip
        self.cfg, self.client, self.writer = cfg, client, writer
        self.pub, self.log = publisher, logger
        self.account = AccountState()
        self.mirror = CacheMirror()
        self.account_lock = asyncio.Lock()  # a resync and the user events it covers never overlap
        self.progress: dict[str, int] = {}  # heartbeat progress: name -> CLOCK_MONOTONIC ns
        self.pool: StreamPool | None = None
        self.user: UserDataStream | None = None
        self.backfills = self.rest_fallbacks = self.backfill_failures = 0
        self.bad_messages = self.redis_failures = 0
        self.is_redis_down = False
        self._warn = {k: log.Throttle(cfg.feed.warning_interval_s)
                      for k in ("bad", "redis", "backfill", "event")}  # fmt: skip

    def warn(self, kind: str, event: str, **fields: object) -> None:
        """Log a warning at most once per `warning_interval_s` per kind (with the count held)."""
        should_log, suppressed = self._warn[kind].allow(time.monotonic())
        if should_log:
            self.log.warning(event, suppressed=suppressed, **fields)

    # ---- publishing --------------------------------------------------------------------------

    def publish(self, messages: list[Message]) -> None:
        """Publish on the bus and record each message (with its seq) for the Redis mirror."""
        for topic, payload in messages:
            seq = self.pub.publish(topic, payload)
            encoded = bus.encode(msgspec.structs.replace(payload, source=PROCESS, seq=seq))
            self.mirror.set_latest(topic, encoded, seq)
            if isinstance(payload, bus.OrderState):
                is_open = payload.client_order_id in self.account.orders
                self.mirror.set_order(payload.client_order_id, encoded if is_open else None)

    def store_kline(self, k: b.Kline) -> bool:
        """Append a closed bar to shm and publish it; False when it is not newer than the last."""
        if not self.writer.append(k.symbol, kline_row(k)):
            return False
        self.publish([(bus.kline_topic(INTERVAL, k.symbol), bus_kline(k))])
        self.progress["kline"] = time.monotonic_ns()
        return True

    async def backfill(self, symbol: str, reason: str, page: int = MAX_KLINES_PER_REQUEST) -> bool:
        """Store the closed bars missing after the last stored one (none stored: the last
        `backfill_bars`) over REST, `page` rows per request; return False (logged, counted)
        when REST failed."""
        last = self.writer.last_open_time_ms(symbol)
        bars = 0
        try:
            while True:
                if last is None:
                    count = self.cfg.feed.backfill_bars
                    rows = await self.client.klines(symbol, INTERVAL, limit=count + 1)
                    new = closed_new_klines(rows, None)[-count:]
                else:
                    rows = await self.client.klines(symbol, INTERVAL, backfill_start_ms(last),
                                                    limit=page)  # fmt: skip
                    new = closed_new_klines(rows, last)
                bars += sum(self.store_kline(k) for k in new)
                reached = self.writer.last_open_time_ms(symbol)
                if last is None or len(rows) < page or reached == last:
                    break
                last = reached
        except ExchangeError as e:
            self.backfill_failures += 1
            self.warn("backfill", "backfill_failed", symbol=symbol, reason=reason,
                      error=str(e)[:200])  # fmt: skip
            return False
        if reason == "poll":  # DISABLE_WEBSOCKET: every poll, not an event worth a line
            self.log.debug("klines_polled", symbol=symbol, bars=bars)
            return True
        self.backfills += 1
        self.log.info("klines_backfilled", symbol=symbol, reason=reason, bars=bars)
        return True

    def decode(self, item: StreamMessage) -> b.StreamEvent | None:
        """Decode a stream message; None (counted, logged rate-limited) when malformed."""
        try:
            event = b.decode_event(item.data)
        except (msgspec.DecodeError, ValueError) as e:
            reason = str(e)
        else:
            if not isinstance(event, b.UnknownEvent):
                return event
            reason = f"unknown event type {event.event_type!r}"
        self.bad_messages += 1
        head = item.data[:BAD_FRAME_HEAD_BYTES].decode("utf-8", "replace")
        self.warn("bad", "bad_message", stream=item.stream, reason=reason[:200], head=head,
                  total=self.bad_messages)  # fmt: skip
        return None

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
        event = self.decode(item)
        if isinstance(event, b.KlineUpdate) and event.kline.is_closed:
            k = event.kline
            last = self.writer.last_open_time_ms(k.symbol)
            if has_hole(last, k.open_time_ms) and not self.cfg.feed.disable_rest_fallback:
                self.rest_fallbacks += 1
                if not await self.backfill(k.symbol, "hole"):
                    return  # never store past a hole; the next closed bar retries
            self.store_kline(k)
        elif isinstance(event, b.MarkPrice):
            self.store_mark(event)

    def store_mark(self, mark: b.MarkPrice) -> None:
        """Set the symbol's mark in shm and publish it."""
        self.writer.set_mark(mark.symbol, float(mark.mark_price), mark.time_ms)
        self.publish([(bus.mark_topic(mark.symbol), bus_mark(mark))])
        self.progress["mark"] = time.monotonic_ns()

    async def poll_rest(self) -> None:
        """DISABLE_WEBSOCKET: poll marks (premiumIndex, all symbols, weight 10) and each symbol's
        new klines (a page under 100 rows, weight 1) every `rest_poll_interval_s`, forever."""
        symbols = set(self.cfg.feed.symbols)
        while True:
            try:
                marks = await self.client.mark_prices()
            except ExchangeError as e:
                self.warn("backfill", "mark_poll_failed", error=str(e)[:200])
            else:
                for mark in (m for m in marks if m.symbol in symbols):
                    self.store_mark(mark)
            for symbol in self.cfg.feed.symbols:
                await self.backfill(symbol, "poll", page=POLL_PAGE_ROWS)
            await asyncio.sleep(self.cfg.feed.rest_poll_interval_s)

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
        self.log.info("account_resynced", positions=sum(1 for p in positions if p.amount),
                      open_orders=len(self.account.orders))  # fmt: skip

    # ---- periodic tasks ----------------------------------------------------------------------

    async def flush_cache(self, cache: Cache) -> None:
        """Write the mirror's changes to Redis every `cache_flush_interval_s`, forever."""
        f = self.cfg.feed
        while True:
            await asyncio.sleep(f.cache_flush_interval_s)
            batch = self.mirror.take()
            if batch.is_empty:
                continue
            try:
                await cache.write_feed(batch.is_full, batch.latest, batch.seqs, batch.orders,
                                       batch.removed_orders)  # fmt: skip
            except CacheUnavailableError as e:
                self.mirror.failed()
                self.redis_failures += 1
                self.is_redis_down = True
                self.warn("redis", "redis_unavailable", error=str(e)[:200],
                          retry_in_s=f.cache_retry_s)  # fmt: skip
                await asyncio.sleep(f.cache_retry_s)
                continue
            if self.is_redis_down:
                self.is_redis_down = False
                self._warn["redis"].reset()
                self.log.info("redis_recovered", topics=len(batch.latest))

    async def tick(self, cache: Cache) -> None:
        """Publish `heartbeat.feed` (bus and its Redis mirror) every heartbeat interval and log
        `feed_stats`, forever."""
        f = self.cfg.feed
        next_stats_s = time.monotonic() + f.stats_interval_s
        while True:
            await asyncio.sleep(f.heartbeat_interval_s)
            beat = bus.BusHeartbeat(ts_ms=time.time_ns() // 1_000_000, pid=os.getpid(),
                                    published=self.pub.published)  # fmt: skip
            seq = self.pub.publish(bus.heartbeat_topic(PROCESS), beat)
            beat = msgspec.structs.replace(beat, source=PROCESS, seq=seq)  # as published
            try:  # stale after 3 intervals (rule 8); a dead Redis is reported by flush_cache
                ttl_ms = int(3000 * f.heartbeat_interval_s)
                await cache.write_heartbeat(PROCESS, bus.encode(beat), ttl_ms)
            except CacheUnavailableError:
                pass
            if time.monotonic() >= next_stats_s:
                next_stats_s += f.stats_interval_s
                self.log_stats()

    def log_stats(self) -> None:
        parts = [c.stats() for c in (self.pool, self.user) if c is not None]
        self.log.info(
            "feed_stats", connected=sum(p.connected for p in parts),
            streams=sum(p.streams for p in parts), reconnects=sum(p.reconnects for p in parts),
            queue_depth=sum(p.queue_depth for p in parts), drops=sum(p.drops for p in parts),
            bad_messages=self.bad_messages + sum(p.bad_messages for p in parts),
            backfills=self.backfills, rest_fallbacks=self.rest_fallbacks,
            backfill_failures=self.backfill_failures, redis_failures=self.redis_failures,
            published=self.pub.published,
        )  # fmt: skip


async def consume(get: Callable[[], Awaitable[StreamItem]],
                  handle: Callable[[StreamItem], Awaitable[None]], feed: Feed) -> None:  # fmt: skip
    """Hand every item of a stream to `handle`; a failing item is logged and skipped."""
    while True:
        item = await get()
        try:
            await handle(item)
        except Exception as e:  # top of the loop: nothing an event contains may end the feed
            feed.warn("event", "event_failed", handler=handle.__name__, error=repr(e)[:200])


async def serve(cfg: Config, instance: str, logger: log.EventLogger) -> None:
    """Run the feed until cancelled."""
    f = cfg.feed
    url = redis_url(cfg.redis.url, cfg.redis.private_port)
    async with Cache(url, instance, cfg.redis.socket_timeout_s) as cache, ExchangeClient(
        cfg.exchange, cache, logger=logger
    ) as client:  # fmt: skip
        writer = KlineWriter.open(instance, f.symbols, f.window_bars)
        heartbeat = HeartbeatWriter(instance, PROCESS)
        tasks: list[asyncio.Task[None]] = []
        try:
            with Publisher(f.bus_endpoint or bus_endpoint(instance, PROCESS), PROCESS) as pub:
                feed = Feed(cfg, client, writer, pub, logger)
                logger.info("feed_started", instance=instance, symbols=len(f.symbols),
                            continued=not writer.is_new, endpoint=pub.endpoint)  # fmt: skip
                spawn = asyncio.get_running_loop().create_task
                tasks += [spawn(run_heartbeat(heartbeat, f.heartbeat_interval_s,
                                              lambda: dict(feed.progress))),
                          spawn(feed.tick(cache)), spawn(feed.flush_cache(cache))]  # fmt: skip
                names = [f"{s.lower()}@kline_1m" for s in f.symbols]
                names += [f"{s.lower()}@markPrice@1s" for s in f.symbols]
                # Streams first, then the backfill: a bar closing in between is in the queue.
                async with contextlib.AsyncExitStack() as market:
                    if not f.disable_websocket:
                        pool = StreamPool(cfg.exchange.ws_url, names, cfg.streams)
                        feed.pool = await market.enter_async_context(pool)
                    for symbol in f.symbols:
                        await feed.backfill(symbol, "start")
                    if feed.pool is not None:  # consumed only after the start backfill
                        tasks.append(spawn(consume(feed.pool.get, feed.on_market, feed)))
                    else:
                        logger.info("feed_polling_rest", interval_s=f.rest_poll_interval_s)
                        tasks.append(spawn(feed.poll_rest()))
                    feed.user = UserDataStream(
                        cfg.exchange.ws_url, client.listen_key_create,
                        client.listen_key_keepalive, feed.resync, cfg.streams,
                    )  # fmt: skip
                    async with feed.user:
                        tasks.append(spawn(consume(feed.user.get, feed.on_user, feed)))
                        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                        for task in done:
                            task.result()  # a task only ends by raising
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            heartbeat.close()
            writer.close()


async def run(cfg: Config, logger: log.EventLogger) -> None:
    """Take the instance lock and serve until SIGTERM/SIGINT (then return normally)."""
    instance = instance_id(Path(cfg.run.dir))
    with bind_instance_lock(instance, PROCESS):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        served = loop.create_task(serve(cfg, instance, logger))
        stopped = loop.create_task(stop.wait())
        await asyncio.wait({served, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not served.done():
            served.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await served


def main(argv: list[str] | None = None) -> int:
    """Run the feed; return the exit code (0 clean stop, 2 configuration error, 1 fatal)."""
    parser = argparse.ArgumentParser(prog="python -m procs.feed", description="The market feed.")
    parser.add_argument("--mode", choices=MODES, default=None, help="default: SLT_MODE or paper")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.mode)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    logger = log.setup(PROCESS, cfg.run.log_level)
    try:
        uvloop.run(run(cfg, logger))
    except (ConfigError, InstanceLockedError) as e:  # one line: a person must act
        logger.critical("feed_refused_to_start", reason=str(e))
        return 2 if isinstance(e, ConfigError) else 1
    except Exception as e:
        logger.exception("feed_failed", error=repr(e)[:300])
        return 1
    logger.info("feed_stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
