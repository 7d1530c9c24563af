"""The user-data stream against the real paper exchange: events of a signed REST order arrive, an
expired listenKey is replaced (by the `listenKeyExpired` event and by a -1125 keep-alive), and every
(re)connect is followed by the resync callback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from shared.exchange.userstream import UserDataStream
from shared.schemas.binance import OrderUpdate, decode_event
from tests.integration.exchange.stream_fixtures import (
    Collector,
    eventually,
    fast_paper,
    fast_settings,
    sim,
)
from tests.paper_exchange_fixture import BinanceTestClient, PaperExchangeProcess

__all__ = ["fast_paper"]


class ListenKeyError(Exception):
    """A listenKey call failed; `code` is Binance's error code (like the REST client's errors)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"listenKey call answered {status}: {body}")
        self.code = body.get("code", 0) if isinstance(body, dict) else 0


def listen_key_calls(
    px: PaperExchangeProcess, session: aiohttp.ClientSession
) -> tuple[Callable[[], Awaitable[str]], Callable[[str], Awaitable[None]]]:
    """Return (create, keepalive) calling POST/PUT /fapi/v1/listenKey with the API key header."""
    headers = {"X-MBX-APIKEY": px.api_key}
    url = px.rest_url + "/fapi/v1/listenKey"

    async def create() -> str:
        async with session.post(url, headers=headers) as reply:
            body = await reply.json()
            if reply.status != 200:
                raise ListenKeyError(reply.status, body)
            return str(body["listenKey"])

    async def keepalive(key: str) -> None:
        async with session.put(url, params={"listenKey": key}, headers=headers) as reply:
            body = await reply.json()
            if reply.status != 200:
                raise ListenKeyError(reply.status, body)

    return create, keepalive


async def market_order(
    px: PaperExchangeProcess, session: aiohttp.ClientSession, side: str, reduce_only: bool = False
) -> None:
    """Place a signed MARKET order of 0.010 ETHUSDT (signature built with hmac in the helper)."""
    params = {"symbol": "ETHUSDT", "side": side, "type": "MARKET", "quantity": "0.010"}
    if reduce_only:
        params["reduceOnly"] = "true"
    reply = await BinanceTestClient(session, px.rest_url).signed("POST", "/fapi/v1/order", params)
    assert reply.status == 200, reply.text


class Resyncs:
    """A resync callback that counts its calls and can fail the first `failures` of them."""

    def __init__(self, failures: int = 0) -> None:
        self.calls = 0
        self.failures = failures

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("REST snapshot failed")


def run_user_stream(
    px: PaperExchangeProcess,
    scenario: Callable[[UserDataStream, Collector, aiohttp.ClientSession], Awaitable[None]],
    resync: Resyncs | None = None,
    **settings: Any,
) -> None:
    async def run() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            create, keepalive = listen_key_calls(px, session)
            stream = UserDataStream(
                px.ws_url, create, keepalive, resync or Resyncs(), fast_settings(**settings)
            )
            async with stream:
                seen = Collector(stream.get).start()
                try:
                    await scenario(stream, seen, session)
                finally:
                    await seen.stop()

    asyncio.run(run())


def events_of(seen: Collector, event_type: str) -> list[bytes]:
    return [m.data for m in seen.messages() if m.event_type == event_type]


def test_order_events_arrive_on_the_user_data_stream_after_the_first_resync(
    fast_paper: PaperExchangeProcess,
) -> None:
    resync = Resyncs()

    async def scenario(stream: UserDataStream, seen: Collector, s: aiohttp.ClientSession) -> None:
        await eventually(lambda: stream.resyncs == 1, 5.0)
        await market_order(fast_paper, s, "BUY")
        await eventually(lambda: events_of(seen, "ORDER_TRADE_UPDATE"), 5.0)
        await eventually(lambda: events_of(seen, "ACCOUNT_UPDATE"), 5.0)
        await market_order(fast_paper, s, "SELL", reduce_only=True)
        update = decode_event(events_of(seen, "ORDER_TRADE_UPDATE")[0])
        assert isinstance(update, OrderUpdate) and update.symbol == "ETHUSDT"
        assert stream.stats().reconnects == 0 and not seen.gaps()

    run_user_stream(fast_paper, scenario, resync)
    assert resync.calls == 1


def test_listen_key_expired_event_gets_a_new_key_a_reconnect_and_a_resync(
    fast_paper: PaperExchangeProcess,
) -> None:
    async def scenario(stream: UserDataStream, seen: Collector, s: aiohttp.ClientSession) -> None:
        await eventually(lambda: stream.resyncs == 1, 5.0)
        first_key = stream.listen_key
        expired = await sim(fast_paper, "/_sim/listenkeys/expire")
        assert expired["expired"] == 1
        await eventually(lambda: stream.resyncs == 2, 5.0)
        assert stream.listen_key != first_key
        assert events_of(seen, "listenKeyExpired")
        assert [g.reason for g in seen.gaps()] == ["listen_key_expired"]
        await market_order(fast_paper, s, "BUY")  # the new key carries the account's events
        await eventually(lambda: events_of(seen, "ORDER_TRADE_UPDATE"), 5.0)
        await market_order(fast_paper, s, "SELL", reduce_only=True)

    run_user_stream(fast_paper, scenario)


def test_keepalive_answered_minus_1125_reconnects_with_a_new_key(
    fast_paper: PaperExchangeProcess,
) -> None:
    async def scenario(stream: UserDataStream, seen: Collector, s: aiohttp.ClientSession) -> None:
        await eventually(lambda: stream.resyncs == 1, 5.0)
        first_key = stream.listen_key
        await sim(fast_paper, "/_sim/ws/stall")  # the server cannot push listenKeyExpired
        try:
            await sim(fast_paper, "/_sim/listenkeys/expire")
            await eventually(lambda: stream.resyncs >= 2, 5.0)
        finally:
            await sim(fast_paper, "/_sim/ws/unstall")
        assert stream.keepalive_failures >= 1 and stream.listen_key != first_key
        await eventually(lambda: seen.gaps(), 2.0)
        assert seen.gaps()[0].reason == "listen_key_unknown"

    # Slow heartbeats: during the stall only the keep-alive's -1125 may end the connection.
    run_user_stream(
        fast_paper, scenario, ping_interval_s=10.0, pong_timeout_s=10.0, listen_key_keepalive_s=0.3
    )


def test_mark_suspect_forces_a_reconnect_and_a_resync(fast_paper: PaperExchangeProcess) -> None:
    async def scenario(stream: UserDataStream, seen: Collector, s: aiohttp.ClientSession) -> None:
        await eventually(lambda: stream.resyncs == 1, 5.0)
        stream.mark_suspect("rest_shows_unseen_fill")
        await eventually(lambda: stream.resyncs == 2 and seen.gaps(), 5.0)
        assert seen.gaps()[0].reason == "rest_shows_unseen_fill"
        await eventually(lambda: stream.stats().connected == 1, 2.0)

    run_user_stream(fast_paper, scenario)


def test_failed_resync_drops_the_socket_and_retries_until_one_succeeds(
    fast_paper: PaperExchangeProcess,
) -> None:
    resync = Resyncs(failures=2)

    async def scenario(stream: UserDataStream, seen: Collector, s: aiohttp.ClientSession) -> None:
        await eventually(lambda: stream.resyncs == 1, 5.0)
        await eventually(lambda: stream.stats().connected == 1, 2.0)
        assert not seen.gaps()  # the first connection never delivered: nothing was lost

    run_user_stream(fast_paper, scenario, resync)
    assert resync.calls == 3


def test_user_stream_rollover_resyncs_each_new_socket_and_loses_no_event(
    fast_paper: PaperExchangeProcess,
) -> None:
    resync = Resyncs()

    async def scenario(stream: UserDataStream, seen: Collector, s: aiohttp.ClientSession) -> None:
        await eventually(lambda: stream.stats().rollovers >= 2, 8.0)
        await market_order(fast_paper, s, "BUY")
        await eventually(lambda: events_of(seen, "ORDER_TRADE_UPDATE"), 5.0)
        await market_order(fast_paper, s, "SELL", reduce_only=True)
        stats = stream.stats()
        assert stats.reconnects == 0 and not seen.gaps()
        # Each new socket is resynced (one may be mid-rollover: resynced, not yet counted).
        assert 1 + stats.rollovers <= stream.resyncs <= 2 + stats.rollovers

    run_user_stream(fast_paper, scenario, resync, max_connection_age_s=1.0)
