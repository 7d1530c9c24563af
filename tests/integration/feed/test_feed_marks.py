"""The feed's marks from `!markPrice@arr@1s` (feed.mark_stream = "all"), through its own
per-message path: a `StreamConnection`'s frame check -> `Inbox` -> `Feed.on_market`, with real
shared memory and a real ZeroMQ subscriber. One frame becomes one `marks.all` message holding our
symbols only; shm and the Redis mirror hold each symbol's latest; symbols of the market that are
not ours are skipped without counting as bad; a malformed array is counted bad once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from shared.bus import Publisher, Subscriber, bus_endpoint
from shared.config import Config
from shared.schemas import bus
from shared.shm.rings import KlineReader, KlineWriter, Mark
from tests.integration.feed.conftest import FeedPath, feed_parts

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "binance" / "nautilus-docs-derived"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
STREAM = "!markPrice@arr@1s"


def array_frame(prices: dict[str, str], event_ms: int) -> bytes:
    """Binance's array of the real mark payload, one element per symbol, all stamped alike."""
    base = json.loads((FIXTURES / "rs_market_data_json_mark_price_stream.json").read_text())
    items = [{**base, "E": event_ms, "s": s, "p": p} for s, p in prices.items()]
    return json.dumps({"stream": STREAM, "data": items}, separators=(",", ":")).encode()


@pytest.fixture
def parts() -> Iterator[tuple[Config, KlineWriter, Publisher, str]]:
    with feed_parts(SYMBOLS, 10, "marks") as made:
        yield made


def test_a_mark_array_becomes_one_marks_message_of_our_symbols(
    parts: tuple[Config, KlineWriter, Publisher, str],
) -> None:
    cfg, writer, publisher, instance = parts
    path = FeedPath.build(cfg, writer, publisher)
    feed, conn, push = path.feed, path.conn, path.push
    now = time.time_ns() // 1_000_000

    async def scenario() -> list[Any]:
        got: list[Any] = []
        with Subscriber([bus_endpoint(instance, "feed")], ["marks.", "mark."]) as sub:
            await asyncio.sleep(0.3)  # the subscription reaches the publisher
            market = {"SOLUSDT": "150.5", "ETHUSDT": "2500.25", "BTCUSDT": "65000.5"}
            await push(array_frame(market, now))
            await push(array_frame({"SOLUSDT": "151.0"}, now + 1000))  # none of ours
            foreign = json.loads(array_frame({"BTCUSDT": "1"}, now + 2000))
            foreign["data"].append({"e": "kline", "E": now + 2000, "s": "ETHUSDT"})
            await push(json.dumps(foreign, separators=(",", ":")).encode())
            await push(array_frame({"ETHUSDT": "2600.0", "BTCUSDT": "66000.0"}, now + 3000))
            # A bad price costs its own mark only; a per-symbol frame's, the frame.
            await push(array_frame({"ETHUSDT": "NaN", "BTCUSDT": "-1"}, now + 4000))
            single = json.loads(array_frame({"BTCUSDT": "0"}, now + 5000))
            single = {"stream": "btcusdt@markPrice@1s", "data": single["data"][0]}
            await push(json.dumps(single, separators=(",", ":")).encode())
            while (received := await sub.receive(1.0)) is not None:
                got.append(received)
        return got

    got = asyncio.run(scenario())
    assert [r.topic for r in got] == [bus.MARKS_TOPIC, bus.MARKS_TOPIC]
    first, last = got[0].payload, got[1].payload
    assert isinstance(first, bus.Marks) and isinstance(last, bus.Marks)
    assert first.ts_ms == now and last.seq == first.seq + 1
    assert [(e.symbol, e.price, e.ts_ms) for e in first.marks] == [
        ("ETHUSDT", 2500.25, now),
        ("BTCUSDT", 65000.5, now),
    ]
    assert first.marks[0].funding_rate == 0.00038167  # the real payload's other fields
    assert first.marks[0].next_funding_time_ms == 1562306400000
    # The array with a kline in it, the two bad prices of one array, the zero-priced frame.
    assert (feed.counters.bad_messages, conn.bad_messages) == (4, 0)

    reader = KlineReader(instance)
    try:
        assert reader.mark("BTCUSDT") == Mark(66000.0, now + 3000)
        assert reader.mark("ETHUSDT") == Mark(2600.0, now + 3000)
    finally:
        reader.close()
    batch = feed.mirror.take()  # what the next Redis flush writes
    assert batch.seqs[bus.MARKS_TOPIC] == batch.seqs["mark.BTCUSDT"] == last.seq
    mark = msgspec.msgpack.decode(batch.latest["mark.ETHUSDT"], type=bus.MarkPrice)
    assert (mark.price, mark.ts_ms, mark.seq, mark.source) == (2600.0, now + 3000, last.seq, "feed")
    assert bus.decode(bus.MARKS_TOPIC, batch.latest[bus.MARKS_TOPIC]) == last
