"""Regular-order endpoints: place, query, cancel, list, batch (BINANCE-API.md §5.9, §5.11, §5.12).

Parameter checks run in this order, each raising Binance's code: symbol (-1102, -1121), side
(-1117), type (-1116; STOP* types -4120 since the algo migration), positionSide (-4061/-4060),
reduceOnly, quantity, timeInForce (-1115) and price for LIMIT (price on MARKET -1106),
newOrderRespType (-1136), newClientOrderId (-4015), selfTradePreventionMode (-5039), priceMatch,
then the filters: quantity (-4003, -1111, -4023, -4004/-4005 against LOT_SIZE or, for MARKET,
MARKET_LOT_SIZE), price (-4001, -1111, -4013, -4002, -4014) and PERCENT_PRICE against the mark
(-4016/-4024). `matching.prepare` then applies the account checks.

With `EngineConfig.legacy_conditional_on_order_endpoint` a STOP* order on /fapi/v1/order is
translated (stopPrice -> triggerPrice, newClientOrderId -> clientAlgoId, activationPrice ->
activatePrice) and placed as an algo order, answering the algo reply; off (Binance since
2025-12-09) it is refused with -4120.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from procs.paper_exchange.engine import params as p
from procs.paper_exchange.engine.algo import CANCEL_ALL_DONE, post_algo_order
from procs.paper_exchange.engine.ledger import Ledger
from procs.paper_exchange.engine.matching import OrderRequest, execute, finish_order, prepare
from procs.paper_exchange.engine.orders import CONDITIONAL_TYPES, Order, order_reply
from procs.paper_exchange.engine.specs import ZERO, check_percent_price, check_price, check_quantity
from procs.paper_exchange.errors import (
    ApiError,
    invalid_value,
    missing_either,
    not_required,
    rejected,
)

MAX_BATCH_ORDERS = 5
MAX_BATCH_CANCELS = 10


def parse_order(ledger: Ledger, params: p.Params, now_ms: int) -> tuple[OrderRequest, str]:
    """Read and check a LIMIT/MARKET order; return it and its newOrderRespType."""
    symbol = p.required(params, "symbol")
    spec = ledger.spec(symbol)
    side = p.choice(params, "side", ("BUY", "SELL"), rejected(-1117), None)
    order_type = p.choice(
        params, "type", ("LIMIT", "MARKET", *CONDITIONAL_TYPES), rejected(-1116), None
    )
    if order_type in CONDITIONAL_TYPES:
        raise rejected(-4120)
    p.check_position_side(params, ledger.is_dual_side)
    reduce_only = p.boolean(params, "reduceOnly")
    qty = p.required_decimal(params, "quantity")
    if order_type == "LIMIT":
        tif = p.choice(params, "timeInForce", p.TIME_IN_FORCE, rejected(-1115), None)
        price = p.required_decimal(params, "price")
    else:
        tif = "GTC"  # what Binance reports for MARKET orders
        if p.text(params, "price") is not None:
            raise not_required("price")
        price = ZERO
    resp_type = p.response_type(params)
    client_order_id = p.client_id(params, "newClientOrderId")
    stp = p.stp_mode(params, "NONE")
    p.check_price_match(params)
    check_quantity(spec, qty, is_market=order_type == "MARKET")
    if order_type == "LIMIT":
        check_price(spec, price)
        check_percent_price(spec, price, ledger.market.mark_price(symbol, now_ms))
    request = OrderRequest(
        symbol=symbol,
        side=side,
        type=order_type,
        time_in_force=tif,
        qty=qty,
        price=price,
        reduce_only=reduce_only,
        client_order_id=client_order_id,
        stp_mode=stp,
    )
    return request, resp_type


def _legacy_algo_params(params: p.Params) -> p.Params:
    renamed = {
        "stopPrice": "triggerPrice",
        "newClientOrderId": "clientAlgoId",
        "activationPrice": "activatePrice",
    }
    out = {renamed.get(k, k): v for k, v in params.items()}
    out["algoType"] = "CONDITIONAL"
    return out


def place(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """Place one order from client parameters; return its reply (ACK or RESULT view)."""
    if (
        p.text(params, "type") in CONDITIONAL_TYPES
        and ledger.cfg.legacy_conditional_on_order_endpoint
    ):
        return post_algo_order(ledger, _legacy_algo_params(params), now_ms)
    request, resp_type = parse_order(ledger, params, now_ms)
    order = execute(ledger, prepare(ledger, request, now_ms), now_ms)
    spec = ledger.spec(order.symbol)
    if resp_type == "ACK":
        # ACK answers the state at acceptance, before any fill (§5.9, §11.7).
        accepted = dataclasses.replace(
            order,
            status="NEW",
            executed_qty=ZERO,
            cum_quote=ZERO,
            update_ms=order.time_ms,
            expire_reason="0",
        )
        return order_reply(accepted, spec, is_query=False)
    return order_reply(order, spec, is_query=False)


def post_order(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """POST /fapi/v1/order."""
    ledger.ensure_started(now_ms)
    return place(ledger, params, now_ms)


def _find(ledger: Ledger, params: p.Params, missing_code: int) -> Order:
    symbol = p.required(params, "symbol")
    ledger.spec(symbol)
    order_id = p.integer(params, "orderId")
    client_order_id = p.text(params, "origClientOrderId")
    if order_id is None and client_order_id is None:
        raise missing_either("orderId", "origClientOrderId")
    return _lookup(ledger, symbol, order_id, client_order_id, missing_code)


def _lookup(
    ledger: Ledger,
    symbol: str,
    order_id: int | None,
    client_order_id: str | None,
    missing_code: int,
) -> Order:
    found: Order | None
    if order_id is not None:
        found = ledger.orders.get(order_id)
    else:
        # A client id may repeat once the earlier order is closed: the latest one wins.
        matches = [
            o
            for o in ledger.orders.values()
            if o.client_order_id == client_order_id and o.symbol == symbol
        ]
        found = matches[-1] if matches else None
    if found is None or found.symbol != symbol:
        raise rejected(missing_code)
    return found


def get_order(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """GET /fapi/v1/order; -2013 when unknown."""
    ledger.ensure_started(now_ms)
    order = _find(ledger, params, -2013)
    return order_reply(order, ledger.spec(order.symbol), is_query=True)


def _cancel(ledger: Ledger, order: Order, now_ms: int) -> dict[str, Any]:
    if not order.is_open:
        raise rejected(-2011)
    finish_order(ledger, order, "CANCELED", now_ms)
    return order_reply(order, ledger.spec(order.symbol), is_query=False)


def delete_order(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """DELETE /fapi/v1/order; -2011 when unknown or already final."""
    ledger.ensure_started(now_ms)
    return _cancel(ledger, _find(ledger, params, -2011), now_ms)


def get_open_order(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """GET /fapi/v1/openOrder; -2013 when unknown or no longer open."""
    ledger.ensure_started(now_ms)
    order = _find(ledger, params, -2013)
    if not order.is_open:
        raise rejected(-2013)
    return order_reply(order, ledger.spec(order.symbol), is_query=True)


def _optional_symbol(ledger: Ledger, params: p.Params) -> str | None:
    symbol = p.text(params, "symbol")
    if symbol is not None:
        ledger.spec(symbol)
    return symbol


def get_open_orders(ledger: Ledger, params: p.Params, now_ms: int) -> list[dict[str, Any]]:
    """GET /fapi/v1/openOrders (symbol optional)."""
    ledger.ensure_started(now_ms)
    symbol = _optional_symbol(ledger, params)
    return [
        order_reply(o, ledger.spec(o.symbol), is_query=True) for o in ledger.open_orders(symbol)
    ]


def get_all_orders(ledger: Ledger, params: p.Params, now_ms: int) -> list[dict[str, Any]]:
    """GET /fapi/v1/allOrders: from `orderId` on, else the most recent `limit`, oldest first."""
    ledger.ensure_started(now_ms)
    symbol = _optional_symbol(ledger, params)
    from_id = p.integer(params, "orderId")
    start = p.integer(params, "startTime")
    end = p.integer(params, "endTime")
    count = p.limit(params, 500, 1000)
    rows = [
        o
        for o in ledger.orders.values()
        if (symbol is None or o.symbol == symbol)
        and (from_id is None or o.order_id >= from_id)
        and (start is None or o.time_ms >= start)
        and (end is None or o.time_ms <= end)
    ]
    rows = rows[:count] if from_id is not None else rows[-count:]
    return [order_reply(o, ledger.spec(o.symbol), is_query=True) for o in rows]


def cancel_all(ledger: Ledger, symbol: str, now_ms: int) -> None:
    """Cancel every open regular order of `symbol` (x=X=CANCELED each)."""
    for order in ledger.open_orders(symbol):
        if order.is_open:
            finish_order(ledger, order, "CANCELED", now_ms)


def delete_all_open_orders(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """DELETE /fapi/v1/allOpenOrders: regular orders only, algo orders stay (§5.11)."""
    ledger.ensure_started(now_ms)
    symbol = p.required(params, "symbol")
    ledger.spec(symbol)
    cancel_all(ledger, symbol, now_ms)
    return dict(CANCEL_ALL_DONE)


def post_batch_orders(ledger: Ledger, params: p.Params, now_ms: int) -> list[dict[str, Any]]:
    """POST /fapi/v1/batchOrders: up to 5 orders, each answered in place; HTTP 200 always."""
    ledger.ensure_started(now_ms)
    items = p.json_list(p.required(params, "batchOrders"), "batchOrders")
    if not 1 <= len(items) <= MAX_BATCH_ORDERS:
        raise rejected(-4082)
    replies: list[dict[str, Any]] = []
    for item in items:
        try:
            replies.append(place(ledger, p.item_params(item, "batchOrders"), now_ms))
        except ApiError as e:
            replies.append(e.body())
    return replies


def _id_list(params: p.Params, *names: str) -> list[str] | None:
    for name in names:
        raw = p.text(params, name)
        if raw is not None:
            return [str(v) for v in p.json_list(raw, names[0])]
    return None


def delete_batch_orders(ledger: Ledger, params: p.Params, now_ms: int) -> list[dict[str, Any]]:
    """DELETE /fapi/v1/batchOrders by orderIdList or origClientOrderIdList (either spelling)."""
    ledger.ensure_started(now_ms)
    symbol = p.required(params, "symbol")
    ledger.spec(symbol)
    # ccxt sends the lower-case aliases (§5.12).
    order_ids = _id_list(params, "orderIdList", "orderidlist")
    client_ids = _id_list(params, "origClientOrderIdList", "origclientorderidlist")
    if order_ids is None and client_ids is None:
        raise missing_either("orderIdList", "origClientOrderIdList")
    keys: list[tuple[int | None, str | None]]
    if order_ids is not None:
        if not all(v.lstrip("-").isdigit() for v in order_ids):
            raise invalid_value("orderIdList")
        keys = [(int(v), None) for v in order_ids]
    else:
        keys = [(None, v) for v in client_ids or []]
    if len(keys) > MAX_BATCH_CANCELS:
        raise ApiError(400, -4032, "Exceed maximum cancel order size.")
    replies: list[dict[str, Any]] = []
    for order_id, client_id in keys:
        try:
            order = _lookup(ledger, symbol, order_id, client_id, -2011)
            replies.append(_cancel(ledger, order, now_ms))
        except ApiError as e:
            replies.append(e.body())
    return replies
