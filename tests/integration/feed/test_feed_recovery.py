"""The feed recovers without holes: a dropped WebSocket is backfilled over REST, a `kill -9` feed
is continued by the next one in the same shm windows (a reader attached throughout never sees a
torn row), and a stopped Redis leaves shm and the bus running."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from pathlib import Path

from shared.bus import Subscriber, bus_endpoint
from shared.schemas import bus
from shared.shm.heartbeat import Heartbeat, read_heartbeats
from shared.shm.rings import KlineReader
from shared.shm.segment import TornReadError
from tests.integration.feed.checks import assert_no_hole, assert_rows_whole, open_times
from tests.integration.feed.conftest import (
    BACKFILL_BARS,
    WINDOW_BARS,
    FeedProcess,
    sim,
    wait_for_log,
)
from tests.paper_exchange_fixture import PaperExchangeProcess
from tests.services import eventually, redis_server


def bars_of(feed: FeedProcess, reason: str, symbol: str) -> list[int]:
    """Return the `bars` of each `klines_backfilled` line with this reason and symbol."""
    lines = [
        x
        for x in feed.log_events("klines_backfilled")
        if f"reason={reason}" in x and f"symbol={symbol}" in x
    ]
    return [int(re.search(r"bars=(\d+)", x).group(1)) for x in lines]  # type: ignore[union-attr]


def window_of(instance: str, symbol: str = "BTCUSDT") -> list[int]:
    reader = KlineReader(instance)
    try:
        window = reader.window(symbol, WINDOW_BARS)
    finally:
        reader.close()
    assert_no_hole(window)
    return open_times(window)


def test_dropped_websocket_is_reconnected_and_the_missed_klines_backfilled(
    start_feed: Callable[..., FeedProcess], fast_paper: PaperExchangeProcess
) -> None:
    feed = start_feed()
    wait_for_log(feed, "account_resynced")
    eventually(lambda: len(window_of(feed.instance)) >= BACKFILL_BARS + 1, 10.0)

    async def lose_three_minutes() -> None:
        # Stalled sockets get nothing while the clock jumps, then are dropped: the candles that
        # closed meanwhile never arrive on any socket, so only the REST backfill can fill them.
        await sim(fast_paper, "/_sim/ws/stall")
        try:
            await sim(fast_paper, "/_sim/clock/jump?ms=180000")
            await sim(fast_paper, "/_sim/ws/drop")
        finally:
            await sim(fast_paper, "/_sim/ws/unstall")

    before = window_of(feed.instance)[-1]
    asyncio.run(lose_three_minutes())
    eventually(lambda: sum(bars_of(feed, "reconnect", "BTCUSDT")) >= 2, 10.0)
    assert feed.log_events("ws_reconnected") or feed.log_events("ws_disconnected")
    eventually(lambda: window_of(feed.instance)[-1] >= before + 6 * 60_000, 10.0)
    after = window_of(feed.instance)  # asserts no hole and no duplicate
    assert before in after


def test_killed_feed_is_continued_by_the_next_without_hole_duplicate_or_torn_row(
    start_feed: Callable[..., FeedProcess],
) -> None:
    first = start_feed()
    eventually(lambda: len(window_of(first.instance)) >= BACKFILL_BARS + 2, 10.0)
    reader = KlineReader(first.instance)
    reads, torn_waits, failures = [0], [0], []
    done = threading.Event()

    def read_forever() -> None:  # a reader attached through the crash and the restart
        while not done.is_set():
            try:
                window = reader.window("BTCUSDT", WINDOW_BARS)
                assert_rows_whole(window)
                assert_no_hole(window)
                reads[0] += 1
            except TornReadError:
                torn_waits[0] += 1  # a write left open by the kill: refused, never returned
            except AssertionError as e:
                failures.append(str(e))

    thread = threading.Thread(target=read_forever, daemon=True)
    thread.start()
    try:
        eventually(lambda: reads[0] > 100, 5.0)
        first.kill()
        killed_last = window_of(first.instance)[-1]
        second = start_feed()
        wait_for_log(second, "feed_started")
        assert "continued=True" in second.log_events("feed_started")[0]
        eventually(lambda: window_of(second.instance)[-1] >= killed_last + 3 * 60_000, 10.0)
        reads_after = reads[0]
        eventually(lambda: reads[0] > reads_after + 100, 5.0)
    finally:
        done.set()
        thread.join(5.0)
        reader.close()
    assert failures == []
    window = window_of(second.instance)
    assert killed_last in window and len(window) > BACKFILL_BARS + 3


def test_feed_without_redis_keeps_publishing_to_shm_and_the_bus(
    start_feed: Callable[..., FeedProcess], tmp_path: Path
) -> None:
    with redis_server(tmp_path / "own-redis") as redis:
        feed = start_feed(redis_url=redis.url)
        eventually(lambda: "kline.1m.BTCUSDT" in feed.snapshot(redis.url).seqs, 10.0)
        redis.stop()
        wait_for_log(feed, "redis_unavailable")
        last = window_of(feed.instance)[-1]

        async def receive_klines(count: int) -> list[bus.Kline]:
            got: list[bus.Kline] = []
            with Subscriber([bus_endpoint(feed.instance, "feed")], ["kline.1m.BTCUSDT"]) as s:
                while len(got) < count:
                    received = await s.receive(10.0)
                    assert received is not None, feed.log_text()
                    assert isinstance(received.payload, bus.Kline)
                    got.append(received.payload)
            return got

        klines = asyncio.run(receive_klines(2))
        assert klines[-1].open_time_ms > last
        eventually(lambda: window_of(feed.instance)[-1] >= klines[-1].open_time_ms, 5.0)
        assert feed.is_running()
        assert feed.log_events("feed_stats")


def test_second_feed_of_an_instance_exits_1_and_sigterm_stops_the_first_with_0(
    start_feed: Callable[..., FeedProcess],
) -> None:
    first = start_feed()
    wait_for_log(first, "feed_started")
    second = start_feed()
    assert second.process is not None and second.process.wait(timeout=15) == 1
    assert "is feed already running" in second.log_events("feed_refused_to_start")[0]
    beat = eventually(lambda: read_heartbeats(first.instance).get("feed"), 5.0)
    assert isinstance(beat, Heartbeat) and beat.pid == first.process.pid  # type: ignore[union-attr]
    eventually(lambda: read_heartbeats(first.instance)["feed"].progress_ns["kline"] > 0, 5.0)
    eventually(lambda: read_heartbeats(first.instance)["feed"].progress_ns["reconcile"] > 0, 5.0)
    assert first.stop() == 0
    assert first.log_events("feed_stopped")
