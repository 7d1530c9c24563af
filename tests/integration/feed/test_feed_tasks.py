"""The feed's tasks (`procs.feed.tasks`) given only their collaborators, no `Feed`: `feed_stats`
from the feed's counters and the connections' own, and the Redis mirror flush through real
Redis outages (counted, warned once per outage, everything rewritten once Redis answers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from procs.feed.health import FeedCounters, Warnings
from procs.feed.logic.state import CacheMirror
from procs.feed.tasks import flush_cache, log_feed_stats
from shared import log
from shared.cache import Cache, FeedSnapshot
from shared.config import FeedConfig
from shared.exchange.streams import StreamStats
from tests.services import redis_server

FIRST, SECOND = "mark.BTCUSDT", "mark.ETHUSDT"


def stream_stats(**counts: int) -> StreamStats:
    """A connection's counters: zero but for `counts`."""
    zero = dict.fromkeys(
        (
            "connected",
            "streams",
            "reconnects",
            "rollovers",
            "queue_depth",
            "drops",
            "bad_messages",
            "duplicates",
            "messages",
            "open_klines_dropped",
        ),
        0,
    )
    return StreamStats(**{**zero, **counts}, last_message_age_s=None)


def lines_of(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f" {event}" in r.getMessage()]


async def eventually_async(
    predicate: Callable[[], Awaitable[bool] | bool], timeout_s: float
) -> None:
    """Poll `predicate` (sync or async) until true; AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout_s}s")


def test_feed_stats_sums_the_connections_and_adds_the_feeds_own_counters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="slt.feed")
    counters = FeedCounters(
        backfills=3, backfill_failures=1, rest_fallbacks=2, bad_messages=4, redis_failures=5
    )
    pool = stream_stats(
        connected=2,
        streams=6,
        reconnects=1,
        queue_depth=7,
        drops=8,
        bad_messages=1,
        open_klines_dropped=90,
    )
    user = stream_stats(connected=1, streams=1, reconnects=2, queue_depth=1, bad_messages=2)
    log_feed_stats(log.get("feed"), counters, 1234, [pool, user])
    [line] = lines_of(caplog, "feed_stats")
    assert line.split(" ", 4)[1:] == [
        "INFO",
        "feed",
        "feed_stats",
        "connected=3 streams=7 reconnects=3 queue_depth=8 drops=8 bad_messages=7"
        " open_klines_dropped=90 backfills=3 rest_fallbacks=2 backfill_failures=1"
        " redis_failures=5 published=1234",
    ]


def test_flush_cache_counts_a_redis_outage_warns_once_and_rewrites_everything_once_it_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="slt.feed")
    settings = FeedConfig(cache_flush_interval_s=0.01, cache_retry_s=0.05)
    logger = log.get("feed")
    counters, mirror = FeedCounters(), CacheMirror("feed")
    warnings = Warnings(logger, 60.0, ("redis",))  # one line per outage within the test

    with redis_server(tmp_path) as redis:

        def stop_and_forget() -> None:
            """Stop Redis and delete its files: it comes back empty."""
            redis.stop()
            for path in redis.dir.iterdir():
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.name != "redis.log":
                    path.unlink()

        async def scenario() -> FeedSnapshot:
            async with Cache(redis.url, "tasks" + uuid.uuid4().hex[:8], 0.5) as cache:

                async def holds(topics: set[str]) -> bool:
                    return set((await cache.load_feed_snapshot()).latest) == topics

                flush = flush_cache(mirror, cache, counters, warnings, logger, settings)
                task = asyncio.get_running_loop().create_task(flush)
                try:
                    mirror.set_latest(FIRST, b"first", 1)
                    await eventually_async(lambda: holds({FIRST}), 5.0)
                    await asyncio.to_thread(stop_and_forget)
                    mirror.set_latest(SECOND, b"second", 2)
                    await eventually_async(lambda: counters.redis_failures >= 3, 5.0)
                    await asyncio.to_thread(redis.restart)
                    await eventually_async(lambda: not counters.is_redis_down, 10.0)
                    snapshot = await cache.load_feed_snapshot()
                    # Cleared on recovery: the next outage warns at once.
                    await asyncio.to_thread(redis.stop)
                    mirror.set_latest(FIRST, b"third", 3)
                    await eventually_async(
                        lambda: len(lines_of(caplog, "redis_unavailable")) == 2, 5.0
                    )
                    return snapshot
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

        snapshot = asyncio.run(scenario())

    assert snapshot.latest == {FIRST: b"first", SECOND: b"second"}
    assert snapshot.seqs == {FIRST: 1, SECOND: 2}
    assert counters.redis_failures >= 4 and counters.is_redis_down
    assert (counters.backfills, counters.rest_fallbacks, counters.bad_messages) == (0, 0, 0)
    recovered = lines_of(caplog, "redis_recovered")
    assert [line.split(" ", 4)[3:] for line in recovered] == [["redis_recovered", "topics=2"]]
    unavailable = lines_of(caplog, "redis_unavailable")
    assert [line.split(" ")[1:4] for line in unavailable] == [
        ["WARNING", "feed", "redis_unavailable"]
    ] * 2
    assert all(" suppressed=0 " in line for line in unavailable)
