"""Order and algo-order records and their REST reply shapes (BINANCE-API.md §5.9, §5.10).

A regular `Order` lives in the matching engine: LIMIT or MARKET, including the child order an
algo order places when it triggers (its `orig_type` is then the algo type, its `algo_id` links
back). An `AlgoOrder` lives in the algo service until it triggers. Reply dicts keep Binance's key
order; numbers are strings formatted per the symbol (`specs.fmt_*`), ids and times are ints.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from procs.paper_exchange.engine.specs import ZERO, SymbolSpec, fmt_price, fmt_qty, fmt_quote

OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")
CONDITIONAL_TYPES = (
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
)


@dataclass
class Order:
    """A regular (matching-engine) order."""

    order_id: int
    symbol: str
    client_order_id: str
    side: str  # BUY | SELL
    type: str  # LIMIT | MARKET: how the matching engine treats it
    orig_type: str  # the type the client asked for (the algo type for algo children)
    time_in_force: str  # GTC | IOC | FOK | GTX
    orig_qty: Decimal
    price: Decimal  # 0 for MARKET
    reduce_only: bool
    status: str  # NEW | PARTIALLY_FILLED | FILLED | CANCELED | EXPIRED
    time_ms: int
    update_ms: int
    stop_price: Decimal = ZERO  # trigger price of an algo child
    close_position: bool = False
    working_type: str = "CONTRACT_PRICE"
    price_protect: bool = False
    stp_mode: str = "NONE"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    algo_id: int = 0  # the algo order that placed this child, 0 for a client order
    activate_price: Decimal = ZERO  # trailing children (ORDER_TRADE_UPDATE `AP`)
    callback_rate: Decimal = ZERO  # trailing children (`cr`), percent
    expire_reason: str = "0"  # ORDER_TRADE_UPDATE `er`
    is_liquidation: bool = False

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining_qty(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO


@dataclass
class AlgoOrder:
    """A conditional order in the algo service (§5.10)."""

    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    order_type: str  # one of CONDITIONAL_TYPES
    time_in_force: str
    quantity: Decimal  # 0 with closePosition
    trigger_price: Decimal  # 0 for trailing orders until they trigger
    price: Decimal  # limit price of STOP / TAKE_PROFIT, else 0
    working_type: str  # MARK_PRICE | CONTRACT_PRICE
    close_position: bool
    price_protect: bool
    reduce_only: bool
    stp_mode: str
    status: str  # NEW | TRIGGERING | TRIGGERED | FINISHED | CANCELED | REJECTED | EXPIRED
    create_ms: int
    update_ms: int
    trigger_ms: int = 0
    activate_price: Decimal | None = None  # trailing only
    callback_rate: Decimal | None = None  # trailing only, percent (1 = 1 %)
    extreme_price: Decimal | None = None  # trailing: lowest (BUY) / highest (SELL) since placement
    is_activated: bool = False  # trailing: extreme has reached activatePrice
    actual_order_id: int = 0  # the child order, 0 before the trigger
    fail_reason: str = ""  # ALGO_UPDATE `rm`

    @property
    def is_trailing(self) -> bool:
        return self.order_type == "TRAILING_STOP_MARKET"

    @property
    def child_type(self) -> str:
        return "LIMIT" if self.order_type in ("STOP", "TAKE_PROFIT") else "MARKET"


def order_reply(order: Order, spec: SymbolSpec, *, is_query: bool) -> dict[str, Any]:
    """Return the order object of §5.9: POST/DELETE shape, or with `is_query` the GET shape.

    POST/DELETE carry `cumQty` and no `time` (real batchOrders reply); GET, openOrder(s) and
    allOrders drop `cumQty` and add `time` before `updateTime` (real openOrder reply).
    """
    reply: dict[str, Any] = {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": order.status,
        "clientOrderId": order.client_order_id,
        "price": fmt_price(spec, order.price),
        "avgPrice": fmt_price(spec, order.avg_price),
        "origQty": fmt_qty(spec, order.orig_qty),
        "executedQty": fmt_qty(spec, order.executed_qty),
    }
    if not is_query:
        reply["cumQty"] = fmt_qty(spec, order.executed_qty)
    reply["cumQuote"] = fmt_quote(spec, order.cum_quote)
    reply["timeInForce"] = order.time_in_force
    reply["type"] = order.type
    if order.orig_type == "TRAILING_STOP_MARKET":
        # Legacy trailing orders carried these next to `type` (docs-derived orders fixture).
        reply["activatePrice"] = fmt_price(spec, order.activate_price)
        reply["priceRate"] = f"{order.callback_rate:f}"
    reply.update(
        {
            "reduceOnly": order.reduce_only,
            "closePosition": order.close_position,
            "side": order.side,
            "positionSide": "BOTH",
            "stopPrice": fmt_price(spec, order.stop_price),
            "workingType": order.working_type,
            "priceProtect": order.price_protect,
            "origType": order.orig_type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": order.stp_mode,
            "goodTillDate": 0,
        }
    )
    if is_query:
        reply["time"] = order.time_ms
    reply["updateTime"] = order.update_ms
    return reply


def _trailing_fields(algo: AlgoOrder, spec: SymbolSpec) -> dict[str, Any]:
    if not algo.is_trailing:
        return {}
    activate = fmt_price(spec, algo.activate_price) if algo.activate_price is not None else ""
    rate = f"{algo.callback_rate:f}" if algo.callback_rate is not None else ""
    return {"activatePrice": activate, "callbackRate": rate}


def _algo_head(algo: AlgoOrder, spec: SymbolSpec) -> dict[str, Any]:
    """The fields both algo replies open with, in Binance's order."""
    return {
        "algoId": algo.algo_id,
        "clientAlgoId": algo.client_algo_id,
        "algoType": "CONDITIONAL",
        "orderType": algo.order_type,
        "symbol": algo.symbol,
        "side": algo.side,
        "positionSide": "BOTH",
        "timeInForce": algo.time_in_force,
        "quantity": fmt_qty(spec, algo.quantity),
        "algoStatus": algo.status,
    }


def _algo_flags(algo: AlgoOrder) -> dict[str, Any]:
    """The fields both algo replies carry after the prices, in Binance's order."""
    return {
        "selfTradePreventionMode": algo.stp_mode,
        "workingType": algo.working_type,
        "priceMatch": "NONE",
        "closePosition": algo.close_position,
        "priceProtect": algo.price_protect,
        "reduceOnly": algo.reduce_only,
    }


def algo_reply(algo: AlgoOrder, spec: SymbolSpec) -> dict[str, Any]:
    """Return the POST /fapi/v1/algoOrder reply (§5.10, real ccxt capture of Nov 2025)."""
    reply = {
        **_algo_head(algo, spec),
        "triggerPrice": fmt_price(spec, algo.trigger_price),
        "price": fmt_price(spec, algo.price),
        "icebergQuantity": None,
        **_algo_flags(algo),
    }
    return _with_trailing_and_times(reply, algo, spec)


def algo_query_reply(algo: AlgoOrder, spec: SymbolSpec, child: Order | None) -> dict[str, Any]:
    """Return the GET algoOrder / openAlgoOrders / allAlgoOrders element (Binance docs example).

    `actualOrderId` is the child's orderId as a string ("" before the trigger), `actualPrice` the
    child's average fill price.
    """
    zero_price = fmt_price(spec, ZERO)
    reply = {
        **_algo_head(algo, spec),
        "actualOrderId": str(algo.actual_order_id) if algo.actual_order_id else "",
        "actualPrice": fmt_price(spec, child.avg_price) if child is not None else zero_price,
        "triggerPrice": fmt_price(spec, algo.trigger_price),
        "price": fmt_price(spec, algo.price),
        "icebergQuantity": None,
        "tpTriggerPrice": zero_price,
        "tpPrice": zero_price,
        "slTriggerPrice": zero_price,
        "slPrice": zero_price,
        "tpOrderType": "",
        **_algo_flags(algo),
    }
    return _with_trailing_and_times(reply, algo, spec)


def _with_trailing_and_times(
    reply: dict[str, Any], algo: AlgoOrder, spec: SymbolSpec
) -> dict[str, Any]:
    """Append the trailing-stop fields (trailing orders only) and the times, in Binance's order."""
    reply.update(_trailing_fields(algo, spec))
    reply["createTime"] = algo.create_ms
    reply["updateTime"] = algo.update_ms
    reply["triggerTime"] = algo.trigger_ms
    reply["goodTillDate"] = 0
    return reply
