"""Heartbeats, forced disconnect and the WebSocket faults of the paper exchange over real sockets
(BINANCE-API.md §7.1, §11 item 10; `/_sim/ws/stall`, `/_sim/ws/drop`), with shrunk intervals."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from tests.integration.paper.ws_harness import collect, eventually, recv_json, run, running_exchange

FAST_PINGS = {"ws_ping_interval_s": 0.2, "ws_pong_timeout_s": 0.5}


def test_server_pings_and_closes_a_client_that_never_answers(tmp_path: Path) -> None:
    async def body() -> None:
        async with (
            running_exchange(tmp_path, **FAST_PINGS) as ex,
            aiohttp.ClientSession() as session,
            session.ws_connect(ex.ws_url + "/market/ws/0", autoping=False) as ws,
        ):
            started = time.monotonic()
            pings = 0
            while (msg := await ws.receive(timeout=3.0)).type is aiohttp.WSMsgType.PING:
                pings += 1
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008
            assert pings >= 2
            assert 0.6 <= time.monotonic() - started < 2.0

    run(body())


def test_pongs_with_any_payload_and_unsolicited_pongs_keep_the_connection(tmp_path: Path) -> None:
    async def body() -> None:
        async with (
            running_exchange(tmp_path, **FAST_PINGS) as ex,
            aiohttp.ClientSession() as session,
            session.ws_connect(ex.ws_url + "/market/ws/0", autoping=False) as ws,
        ):
            await ws.pong(b"unsolicited")
            pings = 0
            deadline = time.monotonic() + 1.5
            while (left := deadline - time.monotonic()) > 0:
                try:
                    msg = await ws.receive(timeout=left)
                except TimeoutError:
                    break
                assert msg.type is aiohttp.WSMsgType.PING, msg
                pings += 1
                await ws.pong(b"" if pings % 2 else b"some other payload")
            assert pings >= 5 and not ws.closed

    run(body())


def test_connection_is_closed_after_its_maximum_lifetime(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path, ws_max_lifetime_s=0.8) as ex:
            async with connect(ex.ws_url + "/market/ws/btcusdt@aggTrade") as ws:
                started = time.monotonic()
                with pytest.raises(ConnectionClosed) as closed:
                    await collect(ws, 3.0)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
                assert 0.7 <= time.monotonic() - started < 2.0

    run(body())


def test_stalled_exchange_sends_nothing_and_answers_no_ping(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex:
            url = ex.ws_url + "/market/ws/btcusdt@aggTrade"
            async with connect(url, ping_interval=0.2, ping_timeout=0.4) as ws:
                await recv_json(ws)
                await ex.sim("/_sim/ws/stall")
                await asyncio.sleep(0.1)  # frames already on the wire may still arrive
                with pytest.raises(ConnectionClosedError) as closed:
                    assert await collect(ws, 3.0) == []
                assert closed.value.sent is not None and closed.value.sent.code == 1011
            async with connect(url, ping_interval=None) as ws:
                assert await collect(ws, 0.6) == []  # connected, still stalled
                await ex.sim("/_sim/ws/unstall")
                assert (await recv_json(ws))["e"] == "aggTrade"

    run(body())


def test_drop_aborts_every_connection_without_a_close_frame(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex:
            key = await ex.listen_key()
            async with (
                connect(ex.ws_url + "/market/ws/btcusdt@aggTrade") as market,
                connect(ex.ws_url + f"/private/ws?listenKey={key}") as private,
            ):
                await recv_json(market)
                await eventually(lambda: len(ex.px.hub.connections) == 2, 2.0)
                assert (await ex.sim("/_sim/ws/drop"))["dropped"] == 2
                for ws in (market, private):
                    with pytest.raises(ConnectionClosedError) as closed:
                        await collect(ws, 3.0)
                    assert closed.value.rcvd is None  # no close frame: a dead socket
            await eventually(lambda: not ex.px.hub.connections, 2.0)

    run(body())


def test_private_connection_that_cannot_take_more_user_events_is_aborted(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path, ws_queue_max_messages=3) as ex:
            key = await ex.listen_key()
            async with connect(ex.ws_url + f"/private/ws?listenKey={key}") as ws:
                await eventually(lambda: len(ex.px.hub.connections) == 1, 2.0)
                await ex.sim("/_sim/ws/stall")  # nothing is written: the queue only fills
                await ex.market_order("BUY")
                await ex.market_order("SELL")
                await eventually(lambda: not ex.px.hub.connections, 2.0)
                await ex.sim("/_sim/ws/unstall")
                with pytest.raises(ConnectionClosedError) as closed:
                    await collect(ws, 3.0)
                assert closed.value.rcvd is None  # aborted: the client reconnects and resyncs

    run(body())
