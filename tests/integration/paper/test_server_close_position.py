"""Over real sockets: the paper exchange refuses a second closePosition stop in one direction
with Binance's -4130, and its HTTP fault can single out one request of a sequence (a move of a
stop whose second placement fails)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.paper_exchange_fixture import (
    API_KEY,
    BinanceTestClient,
    PaperExchangeProcess,
    Reply,
    call,
    start_paper_exchange,
)

SYMBOL = "BTCUSDT"
CLOSE_POSITION_EXISTS = {
    "code": -4130,
    "msg": "An open stop or take profit order with GTE and closePosition in the direction is "
    "existing.",
}


@pytest.fixture(scope="module")
def px(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaperExchangeProcess]:
    process = start_paper_exchange(tmp_path_factory.mktemp("close-position"))
    yield process
    process.stop()


def signed(px: PaperExchangeProcess, method: str, path: str, **params: Any) -> Reply:
    async def use(client: BinanceTestClient) -> Reply:
        return await client.signed(method, path, params)

    return call(px, use)


def control(px: PaperExchangeProcess, sim_path: str, **params: Any) -> Reply:
    """POST to the control API; `params` may hold `method` and `path` (the fault's filters)."""
    headers = {"X-MBX-APIKEY": API_KEY}
    reply = call(px, lambda c: c.raw("POST", sim_path, urlencode(params), headers=headers))
    assert reply.status == 200, reply.text
    return reply


def stop(trigger: Decimal, client_id: str, **extra: str) -> dict[str, str]:
    return {
        "algoType": "CONDITIONAL",
        "symbol": SYMBOL,
        "side": "SELL",
        "type": "STOP_MARKET",
        "triggerPrice": str(trigger),
        "workingType": "MARK_PRICE",
        "clientAlgoId": client_id,
        **({"closePosition": "true"} if not extra else extra),
    }


def open_long(px: PaperExchangeProcess, qty: str) -> Decimal:
    reply = signed(
        px,
        "POST",
        "/fapi/v1/order",
        symbol=SYMBOL,
        side="BUY",
        type="MARKET",
        quantity=qty,
        newOrderRespType="RESULT",
    )
    assert reply.status == 200, reply.text
    return Decimal(reply.body["avgPrice"])


def cleanup(px: PaperExchangeProcess, qty: str) -> None:
    control(px, "/_sim/http/ok")
    signed(px, "DELETE", "/fapi/v1/algoOpenOrders", symbol=SYMBOL)
    signed(px, "POST", "/fapi/v1/order", symbol=SYMBOL, side="SELL", type="MARKET", quantity=qty)


def test_second_close_position_stop_in_one_direction_gets_binances_4130_over_rest(
    px: PaperExchangeProcess,
) -> None:
    entry = open_long(px, "0.010")
    first = (entry * Decimal("0.95")).quantize(Decimal("0.1"))
    try:
        placed = signed(px, "POST", "/fapi/v1/algoOrder", **stop(first, "slt-r1-stop-0"))
        assert placed.status == 200, placed.text
        moved = signed(px, "POST", "/fapi/v1/algoOrder", **stop(first + 100, "slt-r1-stop-1"))
        assert (moved.status, moved.body) == (400, CLOSE_POSITION_EXISTS)
        assert moved.headers["Content-Type"].startswith("application/json")
        # A reduce-only quantity stop in the same direction is accepted beside it.
        bridge = stop(first + 100, "slt-r1-bridge-1", quantity="0.010", reduceOnly="true")
        assert signed(px, "POST", "/fapi/v1/algoOrder", **bridge).status == 200
        cancelled = signed(px, "DELETE", "/fapi/v1/algoOrder", clientAlgoId="slt-r1-stop-0")
        assert cancelled.status == 200, cancelled.text
        again = signed(px, "POST", "/fapi/v1/algoOrder", **stop(first + 100, "slt-r1-stop-1"))
        assert again.status == 200, again.text
        resting = signed(px, "GET", "/fapi/v1/openAlgoOrders", symbol=SYMBOL).body
        assert sorted(o["clientAlgoId"] for o in resting) == ["slt-r1-bridge-1", "slt-r1-stop-1"]
    finally:
        cleanup(px, "0.010")


def test_http_fault_on_one_method_and_path_lets_the_first_k_requests_through(
    px: PaperExchangeProcess,
) -> None:
    entry = open_long(px, "0.010")
    trigger = (entry * Decimal("0.95")).quantize(Decimal("0.1"))
    try:
        control(
            px,
            "/_sim/http/fail",
            status=503,
            seconds=30,
            method="POST",
            path="/fapi/v1/algoOrder",
            skip=1,
        )
        first = signed(px, "POST", "/fapi/v1/algoOrder", **stop(trigger, "slt-f1-stop-0"))
        assert first.status == 200, first.text  # let through: the skip
        second = stop(trigger - 100, "slt-f1-bridge-0", quantity="0.010", reduceOnly="true")
        failed = signed(px, "POST", "/fapi/v1/algoOrder", **second)
        assert failed.status == 503 and failed.body["code"] == -1008
        # Other methods and paths are not touched by the fault.
        listed = signed(px, "GET", "/fapi/v1/openAlgoOrders", symbol=SYMBOL)
        assert [o["clientAlgoId"] for o in listed.body] == ["slt-f1-stop-0"]
        status = call(px, lambda c: c.control("GET", "/_sim/status")).body["faults"]
        assert (status["http_error_method"], status["http_error_path"]) == (
            "POST",
            "/fapi/v1/algoOrder",
        )
        control(px, "/_sim/http/ok")
        assert signed(px, "POST", "/fapi/v1/algoOrder", **second).status == 200
    finally:
        cleanup(px, "0.010")
