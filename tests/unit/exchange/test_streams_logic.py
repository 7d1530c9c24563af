"""The stream client's socket-free rules: sharding and routes, URLs, the dedup rule, the reconnect
back-off schedule, and the queue's overflow policies."""

from __future__ import annotations

import asyncio

import numpy
import pytest

from shared.exchange.frames import (
    Deduplicator,
    Gap,
    StreamMessage,
    combined_stream_url,
    next_attempt,
    reconnect_delay_s,
    shard_streams,
    stream_route,
    user_data_url,
)
from shared.exchange.inbox import Inbox


def kline(stream: str, event_ms: int, open_ms: int, is_closed: bool) -> StreamMessage:
    return StreamMessage(stream, b"{}", "kline", event_ms, open_ms, is_closed)


def user_event(event_ms: int, data: bytes) -> StreamMessage:
    return StreamMessage("userData", data, "ORDER_TRADE_UPDATE", event_ms, None, False)


# ---- routes and sharding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "route"),
    [
        ("btcusdt@kline_1m", "market"),
        ("btcusdt@markPrice", "market"),
        ("btcusdt@markPrice@1s", "market"),
        ("!markPrice@arr@1s", "market"),
        ("btcusdt@aggTrade", "market"),
        ("btcusdt_perpetual@continuousKline_1m", "market"),
        ("btcusdt@bookTicker", "public"),
        ("!bookTicker", "public"),
        ("btcusdt@depth5@100ms", "public"),
        ("btcusdt@depth", "public"),
        ("btcusdt@rpiDepth@500ms", "public"),
        ("btcusdt@trade", "public"),
    ],
)
def test_stream_route_follows_the_2026_routing_table(name: str, route: str) -> None:
    assert stream_route(name) == route


def test_shard_streams_splits_450_klines_into_200_200_50_and_keeps_routes_apart() -> None:
    klines = [f"s{i:03d}usdt@kline_1m" for i in range(450)]
    tickers = [f"s{i:03d}usdt@bookTicker" for i in range(3)]
    plan = shard_streams([*klines, *tickers, klines[0]], 200)
    assert [(route, len(names)) for route, names in plan] == [
        ("market", 200),
        ("market", 200),
        ("market", 50),
        ("public", 3),
    ]
    market = [n for route, names in plan if route == "market" for n in names]
    assert market == sorted(klines)  # each stream exactly once, deterministic order


def test_shard_streams_with_no_streams_plans_no_connection() -> None:
    assert shard_streams([], 200) == []


def test_shard_streams_rejects_a_zero_limit() -> None:
    with pytest.raises(ValueError, match="max_per_connection=0"):
        shard_streams(["btcusdt@kline_1m"], 0)


def test_urls_use_the_combined_route_and_the_private_query_form() -> None:
    url = combined_stream_url("ws://h:1/", "market", ["btcusdt@kline_1m", "!markPrice@arr"])
    assert url == "ws://h:1/market/stream?streams=btcusdt@kline_1m/!markPrice@arr"
    assert user_data_url("wss://x", "abc") == "wss://x/private/ws?listenKey=abc"


# ---- dedup rule ----------------------------------------------------------------------------------


def test_closed_kline_is_delivered_once_whatever_its_event_time() -> None:
    dedup = Deduplicator(is_user_data=False)
    assert dedup.is_new(kline("btcusdt@kline_1m", 1000, 0, True))
    assert not dedup.is_new(kline("btcusdt@kline_1m", 1000, 0, True))
    assert not dedup.is_new(kline("btcusdt@kline_1m", 1250, 0, True))
    assert dedup.is_new(kline("ethusdt@kline_1m", 1000, 0, True))  # another stream


def test_open_kline_updates_are_deduplicated_by_event_time() -> None:
    dedup = Deduplicator(is_user_data=False)
    assert dedup.is_new(kline("btcusdt@kline_1m", 1000, 60000, False))
    assert not dedup.is_new(kline("btcusdt@kline_1m", 1000, 60000, False))
    assert dedup.is_new(kline("btcusdt@kline_1m", 1250, 60000, False))
    # The closed candle and the next open one share a push's event time: both are new.
    assert dedup.is_new(kline("btcusdt@kline_1m", 1250, 0, True))


def test_user_events_with_one_event_time_are_all_delivered_unless_identical() -> None:
    dedup = Deduplicator(is_user_data=True)
    assert dedup.is_new(user_event(5, b'{"e":"ACCOUNT_UPDATE"}'))
    assert dedup.is_new(user_event(5, b'{"e":"ORDER_TRADE_UPDATE"}'))
    assert not dedup.is_new(user_event(5, b'{"e":"ORDER_TRADE_UPDATE"}'))


def test_events_without_event_time_are_never_deduplicated() -> None:
    dedup = Deduplicator(is_user_data=False)
    message = StreamMessage("x@y", b"{}", "", 0, None, False)
    assert dedup.is_new(message) and dedup.is_new(message)


def test_deduplicator_forgets_beyond_its_memory() -> None:
    dedup = Deduplicator(is_user_data=False, memory=2)
    first = kline("a@kline_1m", 1, 0, True)
    assert dedup.is_new(first)
    assert dedup.is_new(kline("a@kline_1m", 2, 60000, True))
    assert dedup.is_new(kline("a@kline_1m", 3, 120000, True))
    assert dedup.is_new(first)  # evicted: memory is bounded


# ---- back-off schedule ---------------------------------------------------------------------------


def test_reconnect_delay_ceilings_double_from_5_to_300_seconds() -> None:
    rng = numpy.random.default_rng(7)
    ceilings = []
    for attempt in range(10):
        draws = [reconnect_delay_s(attempt, 5.0, 300.0, rng) for _ in range(2000)]
        assert min(draws) >= 0.0
        ceilings.append(max(draws))
    expected = [5, 5, 10, 20, 40, 80, 160, 300, 300, 300]
    for seen, limit in zip(ceilings, expected, strict=True):
        assert limit * 0.98 <= seen <= limit


def test_reconnect_delay_is_reproducible_with_a_seeded_generator() -> None:
    a = [reconnect_delay_s(3, 5.0, 300.0, numpy.random.default_rng(1)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_next_attempt_grows_after_short_connections_and_resets_after_a_healthy_one() -> None:
    assert next_attempt(0, None, 60.0) == 1  # never opened
    assert next_attempt(3, 5.0, 60.0) == 4  # up 5 s only
    assert next_attempt(6, 60.0, 60.0) == 0  # up a healthy minute


# ---- queue policies ------------------------------------------------------------------------------


def test_drop_oldest_inbox_evicts_oldest_message_and_counts_it() -> None:
    async def run() -> tuple[list[int], int]:
        inbox = Inbox(3, "drop_oldest")
        for i in range(5):
            await inbox.put(kline("a@kline_1m", i + 1, 0, False))
        items = [inbox.get_nowait() for _ in range(3)]
        return [i.event_time_ms for i in items if isinstance(i, StreamMessage)], inbox.dropped

    assert asyncio.run(run()) == ([3, 4, 5], 2)


def test_drop_oldest_inbox_never_drops_a_gap() -> None:
    async def run() -> list[str]:
        inbox = Inbox(2, "drop_oldest")
        await inbox.put(Gap("market-0", ("a@kline_1m",), 1, 2, "closed"))
        for i in range(3):
            await inbox.put(kline("a@kline_1m", i + 1, 0, False))
        await inbox.put(Gap("market-0", ("a@kline_1m",), 3, 4, "silent"))
        return [type(inbox.get_nowait()).__name__ for _ in range(len(inbox))]

    assert asyncio.run(run()) == ["Gap", "Gap"]


def test_block_inbox_holds_the_writer_until_the_consumer_takes_one() -> None:
    async def run() -> tuple[bool, bool, int]:
        inbox = Inbox(1, "block")
        await inbox.put(kline("a@kline_1m", 1, 0, False))
        writer = asyncio.create_task(inbox.put(kline("a@kline_1m", 2, 0, False)))
        await asyncio.sleep(0.01)
        was_blocked = inbox.is_blocked and not writer.done()
        first = await inbox.get()
        await asyncio.wait_for(writer, 1.0)
        second = await inbox.get()
        ordered = [first, second] == [
            kline("a@kline_1m", 1, 0, False),
            kline("a@kline_1m", 2, 0, False),
        ]
        return was_blocked, ordered, inbox.dropped

    assert asyncio.run(run()) == (True, True, 0)
