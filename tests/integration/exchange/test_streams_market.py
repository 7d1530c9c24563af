"""The market stream client against the real paper exchange (--speed 60): combined routes,
reconnects after a dropped and a stalled connection, and a gapless proactive rollover."""

from __future__ import annotations

import asyncio
import itertools

from shared.exchange.streams import StreamPool
from shared.schemas.binance import KlineUpdate, decode_event
from tests.integration.exchange.stream_fixtures import (
    Collector,
    eventually,
    fast_paper,
    fast_settings,
    sim,
)
from tests.paper_exchange_fixture import PaperExchangeProcess

__all__ = ["fast_paper"]

KLINES = ("btcusdt@kline_1m", "ethusdt@kline_1m")


def test_klines_and_book_tickers_arrive_sharded_over_the_market_and_public_routes(
    fast_paper: PaperExchangeProcess,
) -> None:
    async def run() -> None:
        streams = [*KLINES, "btcusdt@bookTicker"]
        async with StreamPool(
            fast_paper.ws_url, streams, fast_settings(max_streams_per_connection=1)
        ) as pool:
            seen = Collector(pool.get).start()
            await eventually(lambda: all(seen.closed_klines(s) for s in KLINES), 10.0)
            await eventually(
                lambda: any(m.stream.endswith("@bookTicker") for m in seen.messages()), 5.0
            )
            await seen.stop()
            names = sorted(c.name for c in pool.connections)
            stats = pool.stats()
        assert names == ["market-0", "market-1", "public-0"]
        assert (stats.connected, stats.streams, stats.reconnects) == (3, 3, 0)
        assert stats.bad_messages == 0 and stats.drops == 0
        closed = next(m for m in seen.messages() if m.is_closed)
        update = decode_event(closed.data)
        assert isinstance(update, KlineUpdate) and update.kline.is_closed
        assert update.kline.open_time_ms == closed.kline_open_ms

    asyncio.run(run())


def test_dropped_connection_reconnects_within_the_back_off_and_emits_a_gap(
    fast_paper: PaperExchangeProcess,
) -> None:
    async def run() -> None:
        async with StreamPool(fast_paper.ws_url, KLINES, fast_settings()) as pool:
            seen = Collector(pool.get).start()
            await eventually(lambda: seen.messages(), 5.0)
            dropped = await sim(fast_paper, "/_sim/ws/drop")
            assert dropped["dropped"] >= 1
            # Back-off ceiling 0.1 s after a short-lived connection, plus the handshake.
            await eventually(lambda: seen.gaps(), 3.0)
            gap = seen.gaps()[0]
            after = len(seen.items)
            await eventually(lambda: len(seen.messages()) > after, 3.0)
            await seen.stop()
            stats = pool.stats()
        assert gap.streams == KLINES and gap.connection == "market-0"
        assert gap.disconnected_since_ms <= gap.reconnected_ms
        assert gap.reason.startswith("closed")
        assert stats.reconnects == 1 and stats.connected == 1

    asyncio.run(run())


def test_stalled_connection_is_detected_by_ping_or_silence_timeout_and_reconnected(
    fast_paper: PaperExchangeProcess,
) -> None:
    async def run() -> None:
        async with StreamPool(fast_paper.ws_url, KLINES, fast_settings()) as pool:
            seen = Collector(pool.get).start()
            await eventually(lambda: seen.messages(), 5.0)
            await sim(fast_paper, "/_sim/ws/stall")
            try:
                # Pong timeout 0.5 s after a ping every 0.5 s, or 1 s of silence.
                await eventually(lambda: pool.stats().reconnects >= 1, 4.0)
            finally:
                await sim(fast_paper, "/_sim/ws/unstall")
            await eventually(lambda: seen.gaps(), 3.0)
            before = len(seen.messages())
            await eventually(lambda: len(seen.messages()) > before, 5.0)
            await seen.stop()
        gap = seen.gaps()[0]
        assert gap.reason == "silent" or gap.reason.startswith("closed")
        assert gap.reconnected_ms - gap.disconnected_since_ms >= 500  # nothing came in the stall

    asyncio.run(run())


def test_proactive_rollover_delivers_each_closed_kline_exactly_once_without_a_gap(
    fast_paper: PaperExchangeProcess,
) -> None:
    async def run() -> None:
        settings = fast_settings(max_connection_age_s=1.5, silence_timeout_s=3.0)
        async with StreamPool(fast_paper.ws_url, KLINES, settings) as pool:
            seen = Collector(pool.get).start()
            await eventually(lambda: pool.stats().rollovers >= 4, 20.0)
            await seen.stop()
            stats = pool.stats()
        assert stats.reconnects == 0 and not seen.gaps()
        assert stats.duplicates > 0  # the sockets overlapped and the copies were removed
        for stream in KLINES:
            opens = seen.closed_klines(stream)
            assert len(opens) >= 4
            assert [b - a for a, b in itertools.pairwise(opens)] == [60_000] * (len(opens) - 1), (
                stream,
                opens,
            )

    asyncio.run(run())
