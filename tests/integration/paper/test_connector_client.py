"""Binance's own futures connector (binance-futures-connector 4.2.0), unmodified, trades on the
paper exchange: every parameter in the query string even for POST/DELETE, an empty JSON-typed
body, and a WebSocket that SUBSCRIBEs klines and the listenKey on `/ws` with one repeated
millisecond id (BINANCE-API.md §8.2). Only `base_url` / `stream_url` point at the paper exchange.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from binance.error import ClientError
from binance.um_futures import UMFutures
from binance.websocket.um_futures.websocket_client import UMFuturesWebsocketClient

from tests.services import eventually

SYMBOL = "BTCUSDT"


@pytest.fixture
def client(paper_exchange: Any) -> Iterator[UMFutures]:
    um = UMFutures(
        key=paper_exchange.api_key,
        secret=paper_exchange.api_secret,
        base_url=paper_exchange.rest_url,
        timeout=10,
    )
    yield um
    um.session.close()  # its pooled keep-alive socket would otherwise leak into later tests


def test_connector_rest_round_trip_with_query_string_orders(client: UMFutures) -> None:
    info = client.exchange_info()
    assert SYMBOL in {s["symbol"] for s in info["symbols"]}
    klines = client.klines(SYMBOL, "1m", limit=3)
    assert len(klines) == 3 and all(len(row) == 12 for row in klines)

    assert client.change_leverage(symbol=SYMBOL, leverage=5)["leverage"] == 5
    entry = client.new_order(
        symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.002, newOrderRespType="RESULT"
    )
    assert entry["status"] == "FILLED" and entry["executedQty"] == "0.002"
    average = Decimal(entry["avgPrice"])

    # No algo-order method in this connector (deprecated before the migration): sign_request.
    trigger = (average * Decimal("0.9")).quantize(Decimal("0.1"))
    stop = client.sign_request(
        "POST",
        "/fapi/v1/algoOrder",
        {
            "algoType": "CONDITIONAL",
            "symbol": SYMBOL,
            "side": "SELL",
            "type": "STOP_MARKET",
            "triggerPrice": str(trigger),
            "closePosition": "true",
            "workingType": "MARK_PRICE",
        },
    )
    assert stop["algoStatus"] == "NEW" and stop["closePosition"] is True
    assert Decimal(stop["triggerPrice"]) == trigger

    (position,) = [p for p in client.get_position_risk(symbol=SYMBOL) if p["positionAmt"] != "0"]
    assert position["positionAmt"] == "0.002"
    assert Decimal(position["entryPrice"]) == average

    # A conditional type on the regular order endpoint is refused as on Binance since 2025-12.
    with pytest.raises(ClientError) as refused:
        client.new_order(
            symbol=SYMBOL,
            side="SELL",
            type="STOP_MARKET",
            stopPrice=str(trigger),
            closePosition="true",
        )
    assert (refused.value.status_code, refused.value.error_code) == (400, -4120)

    closed = client.new_order(
        symbol=SYMBOL,
        side="SELL",
        type="MARKET",
        quantity=0.002,
        reduceOnly="true",
        newOrderRespType="RESULT",
    )
    assert closed["status"] == "FILLED"
    assert all(p["positionAmt"] in ("0", "0.000") for p in client.get_position_risk(symbol=SYMBOL))
    cancelled = client.sign_request("DELETE", "/fapi/v1/algoOpenOrders", {"symbol": SYMBOL})
    assert cancelled["code"] == 200
    assert client.sign_request("GET", "/fapi/v1/openAlgoOrders", {"symbol": SYMBOL}) == []


def test_connector_websocket_gets_klines_and_user_events_via_subscribe(
    client: UMFutures, paper_exchange: Any
) -> None:
    messages: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_message(_ws: object, raw: str) -> None:
        with lock:
            messages.append(json.loads(raw))

    def events(kind: str) -> list[dict[str, Any]]:
        with lock:
            return [m for m in messages if m.get("e") == kind]

    listen_key = client.new_listen_key()["listenKey"]
    ws = UMFuturesWebsocketClient(stream_url=paper_exchange.ws_url, on_message=on_message)
    try:
        ws.kline(symbol="btcusdt", interval="1m")
        ws.user_data(listen_key=listen_key)
        eventually(lambda: events("kline"), 15)
        kline = events("kline")[-1]
        assert kline["s"] == SYMBOL and kline["k"]["i"] == "1m"
        # Both SUBSCRIBEs are acknowledged, each echoing its id with the same JSON type.
        eventually(lambda: sum(1 for m in messages if "result" in m) >= 2, 10)

        client.new_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.001)
        eventually(lambda: events("ORDER_TRADE_UPDATE"), 10)
        eventually(lambda: any(e["o"]["X"] == "FILLED" for e in events("ORDER_TRADE_UPDATE")), 10)
        assert events("ACCOUNT_UPDATE")[-1]["a"]["P"][0]["pa"] == "0.001"
    finally:
        ws.stop()
        # The connector's stop() only sends a close frame and never closes its socket.
        ws.socket_manager.ws.shutdown()
