"""The feed's closed klines reach shared memory, Redis and the bus with the exchange's values, and
a late subscriber that loads the Redis snapshot continues exactly after it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from shared.bus import Subscriber, bus_endpoint
from shared.cache import Cache
from shared.schemas import bus
from shared.shm.rings import KlineColumn, KlineReader
from tests.integration.feed.checks import assert_no_hole, open_times, rest_klines
from tests.integration.feed.conftest import BACKFILL_BARS, WINDOW_BARS, FeedProcess, wait_for_log
from tests.paper_exchange_fixture import PaperExchangeProcess
from tests.services import RedisServer, eventually

TOPIC = "kline.1m.BTCUSDT"


def test_closed_klines_reach_shm_redis_and_the_bus_with_the_exchange_values(
    start_feed: Callable[..., FeedProcess],
    fast_paper: PaperExchangeProcess,
    redis_instance: RedisServer,
) -> None:
    feed = start_feed()

    async def receive_klines(count: int) -> list[bus.Kline]:
        got: list[bus.Kline] = []
        with Subscriber([bus_endpoint(feed.instance, "feed")], [TOPIC]) as sub:
            while len(got) < count:
                received = await sub.receive(10.0)
                assert received is not None, feed.log_text()
                assert isinstance(received.payload, bus.Kline)
                got.append(received.payload)
        return got

    klines = asyncio.run(receive_klines(3))
    assert [k.open_time_ms - klines[0].open_time_ms for k in klines] == [0, 60_000, 120_000]
    assert [k.seq - klines[0].seq for k in klines] == [0, 1, 2]
    assert all(k.is_closed and k.source == "feed" for k in klines)

    reader = KlineReader(feed.instance)
    try:
        window = reader.window("BTCUSDT", WINDOW_BARS)
        assert reader.mark("BTCUSDT") is not None
    finally:
        reader.close()
    assert len(window) >= BACKFILL_BARS + 3
    assert_no_hole(window)
    assert {k.open_time_ms for k in klines} <= set(open_times(window))

    rows = rest_klines(fast_paper, "BTCUSDT", open_times(window)[0], len(window))
    expected = [[float(r[c]) for c in range(11)] for r in rows[: len(window)]]
    assert window.tolist() == expected  # KlineColumn order is Binance's row order
    by_open = {int(r[0]): r for r in rows}
    for k in klines:
        r = by_open[k.open_time_ms]
        assert (k.open, k.high, k.low, k.close, k.volume) == tuple(float(v) for v in r[1:6])

    def mirrored() -> bool:  # Redis is written every cache_flush_interval_s
        return feed.snapshot(redis_instance.url).seqs.get(TOPIC, 0) >= klines[-1].seq

    eventually(mirrored, 5.0)
    snapshot = feed.snapshot(redis_instance.url)
    latest = msgspec.msgpack.decode(snapshot.latest[TOPIC], type=bus.Kline)
    assert latest.seq == snapshot.seqs[TOPIC]
    assert latest.open_time_ms >= klines[-1].open_time_ms
    assert latest.close == float(by_open.get(latest.open_time_ms, rows[-1])[KlineColumn.CLOSE])

    # The heartbeat's Redis mirror expires 3 intervals (0.2 s here) after the last beat.
    async def heartbeat_mirror() -> tuple[bytes | None, int]:
        async with Cache(redis_instance.url, feed.instance, 2.0) as cache:
            return await cache.read_heartbeat("feed")

    payload, ttl_ms = asyncio.run(heartbeat_mirror())
    assert payload is not None and 0 < ttl_ms <= 600
    beat = msgspec.msgpack.decode(payload, type=bus.BusHeartbeat)
    assert feed.process is not None
    assert beat.pid == feed.process.pid and beat.source == "feed"
    feed.kill()
    eventually(lambda: asyncio.run(heartbeat_mirror())[0] is None, 5.0)


def test_late_subscriber_loads_the_snapshot_then_receives_only_newer_messages(
    start_feed: Callable[..., FeedProcess], redis_instance: RedisServer
) -> None:
    feed = start_feed()
    # Marks come from `!markPrice@arr@1s`, one `marks.all` message per frame; Redis also keeps
    # each symbol's latest mark under `mark.<S>`, with the seq of the message it came in.
    topics = {TOPIC, "kline.1m.ETHUSDT", bus.MARKS_TOPIC}
    snapshot_topics = topics | {"mark.BTCUSDT", "mark.ETHUSDT"}
    eventually(lambda: snapshot_topics <= set(feed.snapshot(redis_instance.url).seqs), 15.0)
    first = feed.snapshot(redis_instance.url)
    marks = msgspec.msgpack.decode(first.latest[bus.MARKS_TOPIC], type=bus.Marks)
    assert marks.seq == first.seqs[bus.MARKS_TOPIC]
    assert {e.symbol for e in marks.marks} == {"BTCUSDT", "ETHUSDT"}  # feed.symbols only
    for entry in marks.marks:
        mark = msgspec.msgpack.decode(first.latest[f"mark.{entry.symbol}"], type=bus.MarkPrice)
        assert (mark.price, mark.ts_ms, mark.seq) == (entry.price, entry.ts_ms, marks.seq)

    async def scenario() -> None:
        endpoint = bus_endpoint(feed.instance, "feed")
        with Subscriber([endpoint], ["kline.1m.", "marks."]) as sub:
            probe = await sub.receive(5.0)  # the subscription is live (this message is consumed)
            assert probe is not None
            async with Cache(redis_instance.url, feed.instance, 2.0) as cache:
                snapshot = await cache.load_feed_snapshot()
            sub.load_snapshot(snapshot.seqs)
            firsts: dict[str, bus.Payload] = {}
            while not topics <= set(firsts):
                received = await sub.receive(5.0)
                assert received is not None
                assert received.payload.seq > snapshot.seqs[received.topic]
                firsts.setdefault(received.topic, received.payload)
        for topic, payload in firsts.items():
            # Exactly the message after the snapshot (or after the probe, when that was newer):
            # nothing in between was lost, nothing older came through.
            floor = snapshot.seqs[topic]
            if topic == probe.topic:
                floor = max(floor, probe.payload.seq)
            assert payload.seq == floor + 1, (topic, payload.seq, floor)
            if isinstance(payload, bus.Kline) and floor == snapshot.seqs[topic]:
                before = msgspec.msgpack.decode(snapshot.latest[topic], type=bus.Kline)
                assert payload.open_time_ms == before.open_time_ms + 60_000
        assert sub.bad_messages == 0

    asyncio.run(scenario())


def test_with_websocket_disabled_klines_and_marks_are_polled_over_rest(
    start_feed: Callable[..., FeedProcess], fast_paper: PaperExchangeProcess
) -> None:
    feed = start_feed(env={"SLT_DISABLE_WEBSOCKET": "1"})
    wait_for_log(feed, "feed_polling_rest")
    reader = KlineReader(feed.instance)
    try:
        first = open_times(reader.window("ETHUSDT", WINDOW_BARS))[-1]
        eventually(lambda: open_times(reader.window("ETHUSDT", WINDOW_BARS))[-1] > first, 10.0)
        window = reader.window("ETHUSDT", WINDOW_BARS)
        mark = eventually(lambda: reader.mark("ETHUSDT"), 5.0)
    finally:
        reader.close()
    assert_no_hole(window)
    rows = rest_klines(fast_paper, "ETHUSDT", open_times(window)[0], len(window))
    assert window.tolist() == [[float(r[c]) for c in range(11)] for r in rows[: len(window)]]
    assert mark is not None
    market_sockets = [x for x in feed.log_events("ws_connected") if "market-" in x]
    assert market_sockets == []
