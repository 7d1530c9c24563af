"""The feed's REST and Redis I/O, off its per-message path: kline backfills over REST, and the
periodic tasks (the Redis mirror flush, the bus heartbeat with `feed_stats`, and the REST polling
that replaces the market streams when `feed.disable_websocket` is set).

Each task runs forever under `procs.feed.main.serve` and ends only by raising or being cancelled
(cancellation is immediate: every wait is an `asyncio.sleep` or one Redis or REST call). Each
takes only the parts of the feed it uses: the feed's `FeedCounters` and `Warnings`
(`procs.feed.health`), and `Feed.store_kline` or `Feed.store_mark` as callbacks.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from procs.feed.health import FeedCounters, Warnings
from procs.feed.logic.state import INTERVAL, CacheMirror, backfill_start_ms, closed_new_klines
from shared import log
from shared.bus import Publisher
from shared.cache import Cache, CacheUnavailableError
from shared.config import MAX_KLINES_PER_REQUEST, FeedConfig
from shared.exchange.errors import ExchangeError
from shared.exchange.rest import ExchangeClient
from shared.exchange.streams import StreamPool, StreamStats
from shared.exchange.userstream import UserDataStream
from shared.schemas import binance as b
from shared.schemas import bus
from shared.shm.rings import KlineWriter

POLL_PAGE_ROWS = 99  # klines page while polling: limit < 100 costs weight 1


def log_feed_stats(
    logger: log.EventLogger, counters: FeedCounters, published: int, parts: Sequence[StreamStats]
) -> None:
    """Log `feed_stats`: the stream connections' counters (`parts`) summed, and the feed's own
    (`published`: messages the bus publisher sent)."""
    logger.info(
        "feed_stats",
        connected=sum(p.connected for p in parts),
        streams=sum(p.streams for p in parts),
        reconnects=sum(p.reconnects for p in parts),
        queue_depth=sum(p.queue_depth for p in parts),
        drops=sum(p.drops for p in parts),
        bad_messages=counters.bad_messages + sum(p.bad_messages for p in parts),
        open_klines_dropped=sum(p.open_klines_dropped for p in parts),
        backfills=counters.backfills,
        rest_fallbacks=counters.rest_fallbacks,
        backfill_failures=counters.backfill_failures,
        redis_failures=counters.redis_failures,
        published=published,
    )


async def backfill_klines(
    client: ExchangeClient,
    writer: KlineWriter,
    store_kline: Callable[[b.Kline], bool],
    counters: FeedCounters,
    warnings: Warnings,
    logger: log.EventLogger,
    symbol: str,
    reason: str,
    *,
    backfill_bars: int,
    page: int = MAX_KLINES_PER_REQUEST,
) -> bool:
    """Store (with `store_kline`) the closed bars missing after the last one in `writer` (none
    stored: the last `backfill_bars`) over REST, `page` rows per request; return False (warned,
    counted) when REST failed."""
    last = writer.last_open_time_ms(symbol)
    bars = 0
    try:
        while True:
            if last is None:
                rows = await client.klines(symbol, INTERVAL, limit=backfill_bars + 1)
                new = closed_new_klines(rows, None)[-backfill_bars:]
            else:
                rows = await client.klines(symbol, INTERVAL, backfill_start_ms(last), limit=page)
                new = closed_new_klines(rows, last)
            bars += sum(store_kline(k) for k in new)
            reached = writer.last_open_time_ms(symbol)
            if last is None or len(rows) < page or reached == last:
                break
            last = reached
    except ExchangeError as e:
        counters.backfill_failures += 1
        warnings.warn(
            "backfill", "backfill_failed", symbol=symbol, reason=reason, error=str(e)[:200]
        )
        return False
    if reason == "poll":  # DISABLE_WEBSOCKET: every poll, not an event worth a line
        logger.debug("klines_polled", symbol=symbol, bars=bars)
        return True
    counters.backfills += 1
    logger.info("klines_backfilled", symbol=symbol, reason=reason, bars=bars)
    return True


async def flush_cache(
    mirror: CacheMirror,
    cache: Cache,
    counters: FeedCounters,
    warnings: Warnings,
    logger: log.EventLogger,
    settings: FeedConfig,
) -> None:
    """Write the mirror's changes to Redis every `cache_flush_interval_s`, forever; while Redis
    is down, warn (rate-limited), wait `cache_retry_s` and rewrite everything once it answers."""
    while True:
        await asyncio.sleep(settings.cache_flush_interval_s)
        batch = mirror.take()
        if batch.is_empty:
            continue
        try:
            await cache.write_feed(
                batch.is_full, batch.latest, batch.seqs, batch.orders, batch.removed_orders
            )
        except CacheUnavailableError as e:
            mirror.failed()
            counters.redis_failures += 1
            counters.is_redis_down = True
            retry_s = settings.cache_retry_s
            warnings.warn("redis", "redis_unavailable", error=str(e)[:200], retry_in_s=retry_s)
            await asyncio.sleep(retry_s)
            continue
        if counters.is_redis_down:
            counters.is_redis_down = False
            warnings.cleared("redis")
            logger.info("redis_recovered", topics=len(batch.latest))


async def publish_heartbeats(
    pub: Publisher,
    cache: Cache,
    process: str,
    counters: FeedCounters,
    connections: Sequence[StreamPool | UserDataStream],
    logger: log.EventLogger,
    settings: FeedConfig,
) -> None:
    """Publish `heartbeat.<process>` (bus and its Redis mirror) every `heartbeat_interval_s` and
    log `feed_stats` every `stats_interval_s`, forever. `connections` are the stream connections
    open so far: the caller adds each as it opens it, and each log line reads them anew."""
    next_stats_s = time.monotonic() + settings.stats_interval_s
    while True:
        await asyncio.sleep(settings.heartbeat_interval_s)
        beat = bus.BusHeartbeat(
            ts_ms=time.time_ns() // 1_000_000, pid=os.getpid(), published=pub.published
        )
        seq = pub.publish(bus.heartbeat_topic(process), beat)
        beat = msgspec.structs.replace(beat, source=process, seq=seq)  # as published
        try:  # stale after 3 intervals (rule 8); a dead Redis is reported by flush_cache
            ttl_ms = int(3000 * settings.heartbeat_interval_s)
            await cache.write_heartbeat(process, bus.encode(beat), ttl_ms)
        except CacheUnavailableError:
            pass
        if time.monotonic() >= next_stats_s:
            next_stats_s += settings.stats_interval_s
            parts = [c.stats() for c in connections]
            log_feed_stats(logger, counters, pub.published, parts)


async def poll_rest(
    client: ExchangeClient,
    settings: FeedConfig,
    store_mark: Callable[[b.MarkPrice], None],
    backfill: Callable[[str, str, int], Awaitable[bool]],
    warnings: Warnings,
) -> None:
    """DISABLE_WEBSOCKET: poll marks (premiumIndex, all symbols, weight 10) and each symbol's
    new klines (`backfill(symbol, "poll", page)`, a page under 100 rows, weight 1) every
    `rest_poll_interval_s`, forever."""
    symbols = set(settings.symbols)
    while True:
        try:
            marks = await client.mark_prices()
        except ExchangeError as e:
            warnings.warn("backfill", "mark_poll_failed", error=str(e)[:200])
        else:
            for mark in (m for m in marks if m.symbol in symbols):
                store_mark(mark)
        for symbol in settings.symbols:
            await backfill(symbol, "poll", POLL_PAGE_ROWS)
        await asyncio.sleep(settings.rest_poll_interval_s)
