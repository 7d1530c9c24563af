"""The user-data stream over real sockets: listenKey REST lifecycle, every private route, user
events after a REST order, `listenKeyExpired` (BINANCE-API.md §6, §8.2, §11 items 8, 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.integration.paper.ws_harness import (
    collect,
    eventually,
    recv_json,
    recv_until,
    run,
    running_exchange,
)


def is_order_update(message: object) -> bool:
    return isinstance(message, dict) and message.get("e") == "ORDER_TRADE_UPDATE"


def test_connector_subscribes_klines_and_its_listen_key_on_ws_with_one_repeated_id(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex:
            key = await ex.listen_key()
            async with connect(ex.ws_url + "/ws") as ws:
                for params in (["btcusdt@kline_1m"], [key]):
                    request = {"method": "SUBSCRIBE", "params": params, "id": 1795421739525}
                    await ws.send(json.dumps(request))
                    await recv_until(ws, lambda m: m == {"result": None, "id": 1795421739525})
                await ex.market_order()
                update = await recv_until(ws, is_order_update)
                assert update["o"]["s"] == "BTCUSDT" and update["o"]["X"] in ("NEW", "FILLED")

    run(body())


@pytest.mark.parametrize("route", ["/private/ws?listenKey={key}", "/private/ws/{key}"])
def test_private_routes_deliver_user_events_raw(tmp_path: Path, route: str) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex:
            key = await ex.listen_key()
            async with connect(ex.ws_url + route.format(key=key)) as ws:
                await ex.market_order()
                first = await recv_json(ws)
                assert first["e"] in ("ORDER_TRADE_UPDATE", "TRADE_LITE", "ACCOUNT_UPDATE")
                fills = [m for m in [first, *await collect(ws, 0.5)] if is_order_update(m)]
                assert fills[-1]["o"]["X"] == "FILLED" and isinstance(fills[-1]["E"], int)

    run(body())


def test_private_stream_route_wraps_events_with_the_listen_key(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex:
            key = await ex.listen_key()
            async with connect(ex.ws_url + f"/private/stream?listenKey={key}") as ws:
                await ex.market_order()
                message = await recv_until(ws, lambda m: is_order_update(m["data"]))
                assert message["stream"] == key

    run(body())


def test_events_filter_delivers_only_the_named_event_types(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex:
            key = await ex.listen_key()
            url = f"{ex.ws_url}/private/ws?listenKey={key}&events=ACCOUNT_UPDATE"
            async with connect(url) as ws:
                await ex.market_order()
                types = {m["e"] for m in await collect(ws, 1.0)}
                assert types == {"ACCOUNT_UPDATE"}

    run(body())


def test_a_listen_key_on_the_market_entry_point_gets_no_user_events(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex:
            key = await ex.listen_key()
            async with connect(ex.ws_url + f"/market/ws/{key}") as ws:
                await ex.market_order()
                assert await collect(ws, 0.8) == []

    run(body())


def test_listen_key_rest_lifecycle(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex:
            key = await ex.listen_key()
            assert await ex.listen_key() == key  # POST while active: the same key, extended
            put = await ex.rest.control("PUT", "/fapi/v1/listenKey")
            assert (put.status, put.body) == (200, {"listenKey": key})
            unknown = await ex.rest.control("PUT", "/fapi/v1/listenKey", listenKey="nope")
            assert (unknown.status, unknown.body) == (
                400,
                {"code": -1125, "msg": "This listenKey does not exist."},
            )
            no_api_key = await ex.rest.control("POST", "/fapi/v1/listenKey", key=None)
            assert no_api_key.status == 401 and no_api_key.body["code"] in (-2014, -2015)
            async with connect(ex.ws_url + f"/private/ws?listenKey={key}") as ws:
                deleted = await ex.rest.control("DELETE", "/fapi/v1/listenKey", listenKey=key)
                assert (deleted.status, deleted.body) == (200, {})
                with pytest.raises(ConnectionClosed) as closed:
                    await collect(ws, 3.0)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
            again = await ex.rest.control("PUT", "/fapi/v1/listenKey", listenKey=key)
            assert again.body["code"] == -1125
            assert await ex.listen_key() != key

    run(body())


def test_expired_listen_key_sends_one_expiry_event_with_a_string_time_then_nothing(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path) as ex:
            key = await ex.listen_key()
            async with connect(ex.ws_url + f"/private/ws?listenKey={key}") as ws:
                assert (await ex.sim("/_sim/listenkeys/expire"))["expired"] == 1
                expired = await recv_json(ws)
                assert expired["e"] == "listenKeyExpired" and expired["listenKey"] == key
                assert isinstance(expired["E"], str) and expired["E"].isdigit()
                await ex.market_order()
                assert await collect(ws, 0.8) == []  # the socket stays open, silent

    run(body())


def test_listen_key_expires_after_its_validity_in_real_time_unless_kept_alive(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path, listen_key_validity_s=0.6, speed=60.0) as ex:
            key = await ex.listen_key()
            async with connect(ex.ws_url + f"/private/ws/{key}") as ws:
                for _ in range(4):  # 1.2 s of keep-alives every 0.3 s: no expiry
                    assert await collect(ws, 0.3) == []
                    await ex.rest.control("PUT", "/fapi/v1/listenKey", listenKey=key)
                expired = await recv_json(ws, 2.0)
                assert expired == {"e": "listenKeyExpired", "E": expired["E"], "listenKey": key}
            await eventually(lambda: not ex.px.hub.connections, 2.0)

    run(body())
