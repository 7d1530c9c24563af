"""WebSocket routes, payload wrapping, entry-point categories and the control protocol of the paper
exchange over real sockets (BINANCE-API.md §7.1, §7.2, §11 items 8-9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.integration.paper.ws_harness import collect, recv_json, recv_until, run, running_exchange


def test_ccxt_connects_to_market_ws_0_then_subscribes_klines(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex, connect(ex.ws_url + "/market/ws/0") as ws:
            request = {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 1}
            await ws.send(json.dumps(request))
            assert await recv_json(ws) == {"result": None, "id": 1}
            event = await recv_json(ws)
            assert event["e"] == "kline" and event["s"] == "BTCUSDT"
            assert event["k"]["i"] == "1m" and event["k"]["T"] == event["k"]["t"] + 59_999

    run(body())


def test_raw_streams_chained_in_the_path_arrive_unwrapped(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex:
            async with connect(ex.ws_url + "/ws/btcusdt@aggTrade/ethusdt@bookTicker") as ws:
                seen: set[tuple[str, str]] = set()
                for message in await collect(ws, 1.2):
                    assert "stream" not in message
                    seen.add((message["e"], message["s"]))
                assert seen == {("aggTrade", "BTCUSDT"), ("bookTicker", "ETHUSDT")}

    run(body())


def test_combined_stream_route_wraps_payloads_with_the_stream_name(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex:
            url = ex.ws_url + "/stream?streams=btcusdt@kline_1m/btcusdt@markPrice@1s"
            async with connect(url) as ws:
                kinds = {}
                for message in await collect(ws, 2.2):
                    assert set(message) == {"stream", "data"}
                    kinds[message["stream"]] = message["data"]["e"]
                assert kinds == {
                    "btcusdt@kline_1m": "kline",
                    "btcusdt@markPrice@1s": "markPriceUpdate",
                }

    run(body())


def test_entry_points_send_only_their_own_category(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex:
            async with connect(ex.ws_url + "/public/ws/btcusdt@kline_1m/btcusdt@bookTicker") as ws:
                assert {m["e"] for m in await collect(ws, 1.0)} == {"bookTicker"}
            streams = "btcusdt@bookTicker/btcusdt_perpetual@continuousKline_1m"
            async with connect(f"{ex.ws_url}/market/stream?streams={streams}") as ws:
                messages = await collect(ws, 1.0)
                assert {m["stream"] for m in messages} == {"btcusdt_perpetual@continuousKline_1m"}
                data = messages[0]["data"]
                assert data["e"] == "continuous_kline" and data["ps"] == "BTCUSDT"
                assert data["ct"] == "PERPETUAL"

    run(body())


def test_mark_price_aliases_and_the_all_symbols_array(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path, speed=10.0) as ex:
            streams = "btcusdt@markPrice@3s/!markPrice@arr@1s"
            async with connect(f"{ex.ws_url}/market/ws/{streams}") as ws:
                messages = await collect(ws, 1.0)
                singles = [m for m in messages if isinstance(m, dict)]
                arrays = [m for m in messages if isinstance(m, list)]
                assert singles and all(m["s"] == "BTCUSDT" for m in singles)
                assert arrays and {e["s"] for e in arrays[0]} == {"BTCUSDT", "ETHUSDT"}
                assert all(isinstance(e["E"], int) and isinstance(e["p"], str) for e in arrays[0])

    run(body())


def test_set_property_combined_wraps_later_payloads_on_a_raw_connection(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex, connect(ex.ws_url + "/ws") as ws:
            await ws.send('{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":"s-1"}')
            assert await recv_json(ws) == {"result": None, "id": "s-1"}
            await ws.send('{"method":"SET_PROPERTY","params":["combined",true],"id":5}')
            await recv_until(ws, lambda m: m == {"result": None, "id": 5})
            await ws.send('{"method":"GET_PROPERTY","params":["combined"],"id":2}')
            await recv_until(ws, lambda m: m == {"result": True, "id": 2})
            wrapped = await recv_json(ws)
            assert wrapped["stream"] == "btcusdt@aggTrade" and wrapped["data"]["e"] == "aggTrade"

    run(body())


def test_unsubscribe_stops_data_and_list_subscriptions_reports_names(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex:
            async with connect(ex.ws_url + "/market/ws/btcusdt@aggTrade/btcusdt@depth") as ws:
                await ws.send('{"method":"UNSUBSCRIBE","params":["btcusdt@aggTrade"],"id":312}')
                await recv_until(ws, lambda m: m == {"result": None, "id": 312})
                await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":3}')
                assert await recv_json(ws) == {"result": ["btcusdt@depth"], "id": 3}
                assert await collect(ws, 0.7) == []

    run(body())


@pytest.mark.parametrize(
    ("text", "expected_code", "expected_id"),
    [("{oops", 3, None), ('{"method":"PING","id":9}', 2, 9)],
)
def test_bad_control_messages_get_error_replies_and_the_socket_stays_open(
    tmp_path: Path, text: str, expected_code: int, expected_id: int | None
) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex, connect(ex.ws_url + "/ws") as ws:
            await ws.send(text)
            reply = await recv_json(ws)
            assert reply["error"]["code"] == expected_code and reply["id"] == expected_id
            await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":1}')
            assert await recv_json(ws) == {"result": [], "id": 1}

    run(body())


def test_more_incoming_messages_than_the_limit_per_second_close_the_connection(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path, ws_max_incoming_per_s=5) as ex:
            async with connect(ex.ws_url + "/ws", ping_interval=None) as ws:
                for i in range(6):
                    await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
                with pytest.raises(ConnectionClosed) as closed:
                    await collect(ws, 3.0)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

    run(body())
