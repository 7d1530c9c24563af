"""The feed's REST and Redis I/O, off its per-message path: kline backfills over REST, and the
periodic tasks (the Redis mirror flush, the bus heartbeat with `feed_stats`, and the REST polling
that replaces the market streams when `feed.disable_websocket` is set).

Each task runs forever under `procs.feed.main.serve` and ends only by raising or being cancelled
(cancellation is immediate: every wait is an `asyncio.sleep` or one Redis or REST call). All of
them use the feed through `FeedHost`, the part of `procs.feed.main.Feed` they need.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Protocol

import msgspec

from procs.feed.logic.state import INTERVAL, CacheMirror, backfill_start_ms, closed_new_klines
from shared import log
from shared.bus import Publisher
from shared.cache import Cache, CacheUnavailableError
from shared.config import MAX_KLINES_PER_REQUEST, Config
from shared.exchange.errors import ExchangeError
from shared.exchange.rest import ExchangeClient
from shared.exchange.streams import StreamPool
from shared.exchange.userstream import UserDataStream
from shared.schemas import binance as b
from shared.schemas import bus
from shared.shm.rings import KlineWriter

POLL_PAGE_ROWS = 99  # klines page while polling: limit < 100 costs weight 1


class FeedHost(Protocol):
    """What the periodic tasks use of the feed (`procs.feed.main.Feed`)."""

    cfg: Config
    client: ExchangeClient
    pub: Publisher
    mirror: CacheMirror
    writer: KlineWriter
    log: log.EventLogger
    redis_failures: int
    is_redis_down: bool
    backfills: int
    backfill_failures: int
    rest_fallbacks: int
    bad_messages: int
    pool: StreamPool | None
    user: UserDataStream | None

    def warn(self, kind: str, event: str, **fields: object) -> None: ...

    def warning_cleared(self, kind: str) -> None: ...

    def store_mark(self, mark: b.MarkPrice) -> None: ...

    def store_kline(self, k: b.Kline) -> bool: ...


def log_feed_stats(feed: FeedHost) -> None:
    """Log `feed_stats`: the stream connections' counters summed, and the feed's own."""
    parts = [c.stats() for c in (feed.pool, feed.user) if c is not None]
    feed.log.info(
        "feed_stats",
        connected=sum(p.connected for p in parts),
        streams=sum(p.streams for p in parts),
        reconnects=sum(p.reconnects for p in parts),
        queue_depth=sum(p.queue_depth for p in parts),
        drops=sum(p.drops for p in parts),
        bad_messages=feed.bad_messages + sum(p.bad_messages for p in parts),
        open_klines_dropped=sum(p.open_klines_dropped for p in parts),
        backfills=feed.backfills,
        rest_fallbacks=feed.rest_fallbacks,
        backfill_failures=feed.backfill_failures,
        redis_failures=feed.redis_failures,
        published=feed.pub.published,
    )


async def backfill_klines(
    feed: FeedHost, symbol: str, reason: str, page: int = MAX_KLINES_PER_REQUEST
) -> bool:
    """Store the closed bars missing after the last stored one (none stored: the last
    `backfill_bars`) over REST, `page` rows per request; return False (logged, counted)
    when REST failed."""
    last = feed.writer.last_open_time_ms(symbol)
    bars = 0
    try:
        while True:
            if last is None:
                count = feed.cfg.feed.backfill_bars
                rows = await feed.client.klines(symbol, INTERVAL, limit=count + 1)
                new = closed_new_klines(rows, None)[-count:]
            else:
                rows = await feed.client.klines(
                    symbol, INTERVAL, backfill_start_ms(last), limit=page
                )
                new = closed_new_klines(rows, last)
            bars += sum(feed.store_kline(k) for k in new)
            reached = feed.writer.last_open_time_ms(symbol)
            if last is None or len(rows) < page or reached == last:
                break
            last = reached
    except ExchangeError as e:
        feed.backfill_failures += 1
        feed.warn("backfill", "backfill_failed", symbol=symbol, reason=reason, error=str(e)[:200])
        return False
    if reason == "poll":  # DISABLE_WEBSOCKET: every poll, not an event worth a line
        feed.log.debug("klines_polled", symbol=symbol, bars=bars)
        return True
    feed.backfills += 1
    feed.log.info("klines_backfilled", symbol=symbol, reason=reason, bars=bars)
    return True


async def flush_cache(feed: FeedHost, cache: Cache) -> None:
    """Write the mirror's changes to Redis every `cache_flush_interval_s`, forever; while Redis
    is down, warn (rate-limited), wait `cache_retry_s` and rewrite everything once it answers."""
    f = feed.cfg.feed
    while True:
        await asyncio.sleep(f.cache_flush_interval_s)
        batch = feed.mirror.take()
        if batch.is_empty:
            continue
        try:
            await cache.write_feed(
                batch.is_full, batch.latest, batch.seqs, batch.orders, batch.removed_orders
            )
        except CacheUnavailableError as e:
            feed.mirror.failed()
            feed.redis_failures += 1
            feed.is_redis_down = True
            feed.warn("redis", "redis_unavailable", error=str(e)[:200], retry_in_s=f.cache_retry_s)
            await asyncio.sleep(f.cache_retry_s)
            continue
        if feed.is_redis_down:
            feed.is_redis_down = False
            feed.warning_cleared("redis")
            feed.log.info("redis_recovered", topics=len(batch.latest))


async def publish_heartbeats(feed: FeedHost, cache: Cache, process: str) -> None:
    """Publish `heartbeat.<process>` (bus and its Redis mirror) every heartbeat interval and log
    `feed_stats` every stats interval, forever."""
    f = feed.cfg.feed
    next_stats_s = time.monotonic() + f.stats_interval_s
    while True:
        await asyncio.sleep(f.heartbeat_interval_s)
        beat = bus.BusHeartbeat(
            ts_ms=time.time_ns() // 1_000_000, pid=os.getpid(), published=feed.pub.published
        )
        seq = feed.pub.publish(bus.heartbeat_topic(process), beat)
        beat = msgspec.structs.replace(beat, source=process, seq=seq)  # as published
        try:  # stale after 3 intervals (rule 8); a dead Redis is reported by flush_cache
            ttl_ms = int(3000 * f.heartbeat_interval_s)
            await cache.write_heartbeat(process, bus.encode(beat), ttl_ms)
        except CacheUnavailableError:
            pass
        if time.monotonic() >= next_stats_s:
            next_stats_s += f.stats_interval_s
            log_feed_stats(feed)


async def poll_rest(feed: FeedHost) -> None:
    """DISABLE_WEBSOCKET: poll marks (premiumIndex, all symbols, weight 10) and each symbol's
    new klines (a page under 100 rows, weight 1) every `rest_poll_interval_s`, forever."""
    symbols = set(feed.cfg.feed.symbols)
    while True:
        try:
            marks = await feed.client.mark_prices()
        except ExchangeError as e:
            feed.warn("backfill", "mark_poll_failed", error=str(e)[:200])
        else:
            for mark in (m for m in marks if m.symbol in symbols):
                feed.store_mark(mark)
        for symbol in feed.cfg.feed.symbols:
            await backfill_klines(feed, symbol, "poll", page=POLL_PAGE_ROWS)
        await asyncio.sleep(feed.cfg.feed.rest_poll_interval_s)
