"""Signed requests over real sockets: the order flow in each client's style, and Binance's auth
errors with Binance's HTTP statuses (BINANCE-API.md §2.1-§2.5)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest

from tests.paper_exchange_fixture import (
    BinanceTestClient,
    PaperExchangeProcess,
    Reply,
    call,
    now_ms,
    start_paper_exchange,
)


@pytest.fixture(scope="module")
def px(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaperExchangeProcess]:
    process = start_paper_exchange(tmp_path_factory.mktemp("auth"))
    yield process
    process.stop()


def signed(
    px: PaperExchangeProcess,
    method: str,
    path: str,
    params: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Reply:
    return call(px, lambda c: c.signed(method, path, params, **kwargs))


def resting_buy_price(px: PaperExchangeProcess, symbol: str = "BTCUSDT") -> str:
    """A BUY LIMIT price 2 % under the market: rests, and passes PERCENT_PRICE."""
    last = Decimal(
        call(px, lambda c: c.public("/fapi/v1/ticker/price", symbol=symbol)).body["price"]
    )
    return str((last * Decimal("0.98")).quantize(Decimal("0.1"), rounding=ROUND_DOWN))


@pytest.mark.parametrize("style", ["ccxt", "connector", "python-binance"])
def test_limit_order_round_trip_in_each_client_style(px: PaperExchangeProcess, style: str) -> None:
    client_id = f"auth-{style}-{now_ms()}"[:36]
    placed = signed(
        px,
        "POST",
        "/fapi/v1/order",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.002",
            "price": resting_buy_price(px),
            "newClientOrderId": client_id,
        },
        style=style,
    )
    assert placed.status == 200, placed.text
    assert placed.body["status"] == "NEW" and placed.body["clientOrderId"] == client_id
    assert "code" not in placed.body
    assert placed.headers["X-MBX-ORDER-COUNT-10S"] and placed.headers["X-MBX-ORDER-COUNT-1M"]

    open_orders = signed(px, "GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"}, style=style)
    assert client_id in [o["clientOrderId"] for o in open_orders.body]

    cancel = {"symbol": "BTCUSDT", "origClientOrderId": client_id}
    canceled = signed(px, "DELETE", "/fapi/v1/order", cancel, style=style)
    assert canceled.status == 200, canceled.text
    assert canceled.body["status"] == "CANCELED"


def test_market_order_opens_a_position_visible_in_position_risk(px: PaperExchangeProcess) -> None:
    placed = signed(
        px,
        "POST",
        "/fapi/v1/order",
        {
            "symbol": "ETHUSDT",
            "side": "BUY",
            "type": "MARKET",
            "quantity": "0.010",
            "newOrderRespType": "RESULT",
        },
    )
    assert placed.status == 200, placed.text
    assert placed.body["status"] == "FILLED"
    positions = signed(px, "GET", "/fapi/v3/positionRisk", {"symbol": "ETHUSDT"}).body
    assert [p["positionAmt"] for p in positions] == ["0.010"]
    closed = signed(
        px,
        "POST",
        "/fapi/v1/order",
        {
            "symbol": "ETHUSDT",
            "side": "SELL",
            "type": "MARKET",
            "quantity": "0.010",
            "reduceOnly": "true",
        },
        style="connector",
    )
    assert closed.status == 200, closed.text


def test_upper_case_hex_signature_is_accepted(px: PaperExchangeProcess) -> None:
    async def use(c: BinanceTestClient) -> Reply:
        from tests.paper_exchange_fixture import hmac_sha256_hex

        text = f"timestamp={now_ms()}"
        query = text + "&signature=" + hmac_sha256_hex(c.api_secret, text).upper()
        return await c.raw("GET", "/fapi/v2/balance", query, headers={"X-MBX-APIKEY": c.api_key})

    reply = call(px, use)
    assert reply.status == 200, reply.text
    assert reply.body[0]["asset"] == "USDT"


def test_stale_timestamp_is_1021_with_400(px: PaperExchangeProcess) -> None:
    reply = signed(px, "GET", "/fapi/v2/balance", timestamp_ms=now_ms() - 10_000)
    assert (reply.status, reply.body["code"]) == (400, -1021)
    assert reply.body["msg"] == "Timestamp for this request is outside of the recvWindow."


def test_future_timestamp_is_1021_with_400(px: PaperExchangeProcess) -> None:
    reply = signed(px, "GET", "/fapi/v2/balance", timestamp_ms=now_ms() + 5_000)
    assert (reply.status, reply.body["code"]) == (400, -1021)


def test_recv_window_admits_an_older_timestamp_and_caps_at_60000(px: PaperExchangeProcess) -> None:
    older = now_ms() - 10_000
    assert (
        signed(px, "GET", "/fapi/v2/balance", timestamp_ms=older, recv_window_ms=20_000).status
        == 200
    )
    reply = signed(px, "GET", "/fapi/v2/balance", recv_window_ms=60_001)
    assert (reply.status, reply.body["code"]) == (400, -1131)


def test_wrong_secret_is_1022_with_400(px: PaperExchangeProcess) -> None:
    reply = signed(px, "GET", "/fapi/v2/balance", secret="not-the-secret")
    assert (reply.status, reply.body) == (
        400,
        {"code": -1022, "msg": "Signature for this request is not valid."},
    )


def test_unknown_api_key_is_2015_with_401(px: PaperExchangeProcess) -> None:
    reply = signed(px, "POST", "/fapi/v1/order", {"symbol": "BTCUSDT"}, key="Z" * 64)
    assert (reply.status, reply.body["code"]) == (401, -2015)
    assert "X-MBX-USED-WEIGHT-1M" in reply.headers


def test_missing_api_key_is_2014_with_401(px: PaperExchangeProcess) -> None:
    reply = call(
        px, lambda c: c.raw("GET", "/fapi/v2/balance", f"timestamp={now_ms()}&signature=ab")
    )
    assert (reply.status, reply.body["code"]) == (401, -2014)


def test_missing_signature_and_timestamp_are_1102(px: PaperExchangeProcess) -> None:
    headers = {"X-MBX-APIKEY": px.api_key}
    no_signature = call(
        px, lambda c: c.raw("GET", "/fapi/v2/balance", f"timestamp={now_ms()}", headers=headers)
    )
    assert (no_signature.status, no_signature.body["code"]) == (400, -1102)
    assert "'signature'" in no_signature.body["msg"]
    no_timestamp = call(
        px, lambda c: c.raw("GET", "/fapi/v2/balance", "signature=ab", headers=headers)
    )
    assert (no_timestamp.status, no_timestamp.body["code"]) == (400, -1102)
    assert "'timestamp'" in no_timestamp.body["msg"]


def test_listen_key_needs_only_the_api_key(px: PaperExchangeProcess) -> None:
    headers = {"X-MBX-APIKEY": px.api_key}
    created = call(px, lambda c: c.raw("POST", "/fapi/v1/listenKey", headers=headers))
    assert created.status == 200 and len(created.body["listenKey"]) == 64
    refused = call(px, lambda c: c.raw("POST", "/fapi/v1/listenKey"))
    assert (refused.status, refused.body["code"]) == (401, -2014)


def test_leverage_bracket_is_signed_and_keeps_numbers(px: PaperExchangeProcess) -> None:
    reply = signed(px, "GET", "/fapi/v1/leverageBracket", {"symbol": "BTCUSDT"})
    assert reply.status == 200, reply.text
    first = reply.body["brackets"][0]
    assert list(first) == [
        "bracket",
        "initialLeverage",
        "notionalCap",
        "notionalFloor",
        "maintMarginRatio",
        "cum",
    ]
    assert isinstance(first["notionalCap"], int) and isinstance(first["maintMarginRatio"], float)
    unsigned = call(px, lambda c: c.public("/fapi/v1/leverageBracket"))
    assert unsigned.status == 401
