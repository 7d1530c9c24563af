"""Algo (conditional) orders: placement, query, cancel, and triggering (BINANCE-API.md §5.10, §6.6).

Triggers, checked every engine tick on the mark price (workingType=MARK_PRICE) or the last price
(CONTRACT_PRICE): STOP / STOP_MARKET fire for BUY when price >= triggerPrice and for SELL when
price <= triggerPrice; TAKE_PROFIT / TAKE_PROFIT_MARKET the other way round. A trailing stop
tracks the lowest (BUY) / highest (SELL) price since placement, activates once that extreme
reaches activatePrice (at once without one) and fires when the price comes back by callbackRate
percent: BUY at extreme x (1 + rate/100), SELL at extreme x (1 - rate/100). With priceProtect a
trigger waits while |mark - last| / mark exceeds the symbol's triggerProtect.

On a trigger: ALGO_UPDATE TRIGGERING, then TRIGGERED with the child's id (`ai`) and type
(`act`), then the child's own ORDER_TRADE_UPDATE events (client id = clientAlgoId, `o` MARKET or
LIMIT, `ot` the algo type, `sp` the trigger price), then FINISHED with the child's `ap`/`aq` once
the child is filled, canceled or expired. closePosition closes whatever position exists at the
trigger; a closePosition or reduce-only child with nothing to reduce expires on arrival (er 4)
and the algo order finishes with `aq` "0". A child the matching engine refuses (e.g. -2019)
leaves the algo order REJECTED with the refusal in `rm`.

One closePosition order per symbol, direction and type: a second closePosition STOP_MARKET (or
TAKE_PROFIT_MARKET) on the same side while the first waits gets -4130 "An open stop or take
profit order with GTE and closePosition in the direction is existing.", as on Binance, so moving
such a stop needs the old one gone first. A closePosition stop and a closePosition take-profit on
the same side coexist (common practice, and Binance's own position TP/SL), and reduce-only
quantity stops are never refused for it. The paper exchange trades one-way mode only, so the
direction is the side.

Choices where Binance is silent: a position going to zero does not cancel reduce-only or
closePosition algo orders (the digest names only GTE_GTC orders as expired with the position,
§5.10); they stay NEW and expire at trigger if there is still nothing to close. Placement does not
check the position (the algo service checks margin only when it triggers).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from procs.paper_exchange.engine import params as p
from procs.paper_exchange.engine.events import algo_update
from procs.paper_exchange.engine.ledger import Ledger
from procs.paper_exchange.engine.matching import (
    OrderRequest,
    execute,
    expire_unplaced,
    prepare,
    reducible_qty,
)
from procs.paper_exchange.engine.orders import (
    CONDITIONAL_TYPES,
    AlgoOrder,
    algo_query_reply,
    algo_reply,
)
from procs.paper_exchange.engine.specs import (
    ZERO,
    check_price,
    check_quantity,
    decimals_of,
    round_to_tick,
)
from procs.paper_exchange.errors import (
    ApiError,
    close_position_type,
    invalid_value,
    min_notional,
    missing_either,
    not_required,
    rejected,
)

WORKING_TYPES = ("MARK_PRICE", "CONTRACT_PRICE")
MIN_CALLBACK_RATE = Decimal("0.1")
MAX_CALLBACK_RATE = Decimal(20)  # raised from 10 on 2026-10-23 (§0)
CANCEL_ALL_DONE = {"code": 200, "msg": "The operation of cancel all open order is done."}


def working_price(ledger: Ledger, symbol: str, working_type: str, now_ms: int) -> Decimal:
    """Return the price a trigger watches: mark for MARK_PRICE, last trade for CONTRACT_PRICE."""
    if working_type == "MARK_PRICE":
        return ledger.market.mark_price(symbol, now_ms)
    return ledger.market.last_price(symbol, now_ms)


def condition_met(order_type: str, side: str, trigger: Decimal, price: Decimal) -> bool:
    """Return whether a STOP* / TAKE_PROFIT* trigger condition holds at `price` (§5.10)."""
    is_stop = order_type in ("STOP", "STOP_MARKET")
    rising = price >= trigger
    falling = price <= trigger
    if side == "BUY":
        return rising if is_stop else falling
    return falling if is_stop else rising


# -- endpoints ----------------------------------------------------------------------------------


def post_algo_order(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """POST /fapi/v1/algoOrder: place a conditional order; ALGO_UPDATE NEW."""
    ledger.ensure_started(now_ms)
    algo = _parse(ledger, params, now_ms)
    ledger.algos[algo.algo_id] = algo
    spec = ledger.spec(algo.symbol)
    ledger.emit(algo_update(algo, spec, None, now_ms))
    return algo_reply(algo, spec)


def _parse(ledger: Ledger, params: p.Params, now_ms: int) -> AlgoOrder:
    if p.required(params, "algoType") != "CONDITIONAL":
        raise invalid_value("algoType")
    symbol = p.required(params, "symbol")
    spec = ledger.spec(symbol)
    side = p.choice(params, "side", ("BUY", "SELL"), rejected(-1117), None)
    order_type = p.choice(params, "type", CONDITIONAL_TYPES, rejected(-1116), None)
    p.check_position_side(params, ledger.is_dual_side)
    tif = p.choice(params, "timeInForce", p.TIME_IN_FORCE, rejected(-1115), "GTC")
    working_type = p.choice(params, "workingType", WORKING_TYPES, rejected(-4031), "CONTRACT_PRICE")
    close_position = p.boolean(params, "closePosition")
    reduce_only = p.boolean(params, "reduceOnly")
    price_protect = p.boolean(params, "priceProtect")
    stp = p.stp_mode(params, "EXPIRE_MAKER")
    p.response_type(params)
    p.check_price_match(params)
    client_algo_id = p.client_id(params, "clientAlgoId")
    is_market_child = order_type not in ("STOP", "TAKE_PROFIT")
    if close_position:
        if order_type not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise close_position_type(order_type)
        if p.text(params, "quantity") is not None:
            raise rejected(-4137)
        if reduce_only:
            raise not_required("reduceOnly")
        quantity = ZERO
    else:
        quantity = p.required_decimal(params, "quantity")
        check_quantity(spec, quantity, is_market=is_market_child)
    price = ZERO
    if not is_market_child:
        price = p.required_decimal(params, "price")
        check_price(spec, price)
    elif p.text(params, "price") is not None:
        raise not_required("price")
    trigger = ZERO
    activate: Decimal | None = None
    callback: Decimal | None = None
    if order_type == "TRAILING_STOP_MARKET":
        callback = p.required_decimal(params, "callbackRate")
        if not MIN_CALLBACK_RATE <= callback <= MAX_CALLBACK_RATE or decimals_of(callback) > 1:
            raise invalid_value("callbackRate")
        callback = callback.quantize(MIN_CALLBACK_RATE)
        activate = p.decimal(params, "activatePrice")
        if activate is not None:
            try:
                check_price(spec, activate)
            except ApiError as e:
                raise rejected(-4135) from e
    else:
        trigger = p.required_decimal(params, "triggerPrice")
        check_price(spec, trigger)
    if client_algo_id is not None and any(
        a.client_algo_id == client_algo_id for a in ledger.open_algos()
    ):
        raise rejected(-4116)
    if len(ledger.open_algos()) >= ledger.cfg.max_open_algo_orders:
        raise rejected(-4045)
    if close_position and any(
        a.close_position and a.side == side and a.order_type == order_type
        for a in ledger.open_algos(symbol)
    ):
        raise rejected(-4130)  # one closePosition stop (and one take-profit) per direction
    current = working_price(ledger, symbol, working_type, now_ms)
    if not (reduce_only or close_position):
        reference = price or trigger or activate or current
        if quantity * reference < spec.min_notional:
            raise min_notional(spec.min_notional_text)
    if order_type == "TRAILING_STOP_MARKET":
        # BUY needs activatePrice below the price, SELL above it (§5.10).
        if activate is not None and (activate >= current if side == "BUY" else activate <= current):
            raise rejected(-2021)
    elif condition_met(order_type, side, trigger, current):
        raise rejected(-2021)
    algo_id = ledger.new_algo_id()
    return AlgoOrder(
        algo_id=algo_id,
        client_algo_id=client_algo_id or f"paperalgo_{algo_id}",
        symbol=symbol,
        side=side,
        order_type=order_type,
        time_in_force=tif,
        quantity=quantity,
        trigger_price=trigger,
        price=price,
        working_type=working_type,
        close_position=close_position,
        price_protect=price_protect,
        reduce_only=reduce_only,
        stp_mode=stp,
        status="NEW",
        create_ms=now_ms,
        update_ms=now_ms,
        activate_price=activate,
        callback_rate=callback,
        extreme_price=current if order_type == "TRAILING_STOP_MARKET" else None,
        is_activated=order_type == "TRAILING_STOP_MARKET" and activate is None,
    )


def _find(ledger: Ledger, params: p.Params, missing_code: int) -> AlgoOrder:
    algo_id = p.integer(params, "algoId")
    client_algo_id = p.text(params, "clientAlgoId")
    if algo_id is None and client_algo_id is None:
        raise missing_either("algoId", "clientAlgoId")
    if algo_id is not None:
        found = ledger.algos.get(algo_id)
    else:
        matches = [a for a in ledger.algos.values() if a.client_algo_id == client_algo_id]
        found = matches[-1] if matches else None
    if found is None:
        raise rejected(missing_code)
    return found


def get_algo_order(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """GET /fapi/v1/algoOrder by algoId or clientAlgoId; -2013 when unknown."""
    ledger.ensure_started(now_ms)
    algo = _find(ledger, params, -2013)
    return _query_reply(ledger, algo)


def _query_reply(ledger: Ledger, algo: AlgoOrder) -> dict[str, Any]:
    child = ledger.orders.get(algo.actual_order_id) if algo.actual_order_id else None
    return algo_query_reply(algo, ledger.spec(algo.symbol), child)


def cancel_algo(ledger: Ledger, algo: AlgoOrder, now_ms: int) -> None:
    """Cancel a NEW algo order: ALGO_UPDATE CANCELED."""
    algo.status = "CANCELED"
    algo.update_ms = now_ms
    ledger.emit(algo_update(algo, ledger.spec(algo.symbol), None, now_ms))


def delete_algo_order(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """DELETE /fapi/v1/algoOrder; -2011 when unknown or no longer waiting for its trigger."""
    ledger.ensure_started(now_ms)
    algo = _find(ledger, params, -2011)
    if algo.status != "NEW":
        raise rejected(-2011)
    cancel_algo(ledger, algo, now_ms)
    # `code` is the string "200" here, unlike every other success body (§5.10, real capture).
    return {
        "algoId": algo.algo_id,
        "clientAlgoId": algo.client_algo_id,
        "code": "200",
        "msg": "success",
    }


def open_algo_orders(ledger: Ledger, params: p.Params, now_ms: int) -> list[dict[str, Any]]:
    """GET /fapi/v1/openAlgoOrders (symbol, algoType, algoId optional)."""
    ledger.ensure_started(now_ms)
    symbol = p.text(params, "symbol")
    if symbol is not None:
        ledger.spec(symbol)
    algo_type = p.text(params, "algoType")
    if algo_type is not None and algo_type != "CONDITIONAL":
        return []
    algo_id = p.integer(params, "algoId")
    return [
        _query_reply(ledger, a)
        for a in ledger.open_algos(symbol)
        if algo_id is None or a.algo_id == algo_id
    ]


def all_algo_orders(ledger: Ledger, params: p.Params, now_ms: int) -> list[dict[str, Any]]:
    """GET /fapi/v1/allAlgoOrders: history of one symbol, oldest first, most recent `limit`."""
    ledger.ensure_started(now_ms)
    symbol = p.required(params, "symbol")
    ledger.spec(symbol)
    from_id = p.integer(params, "algoId")
    start = p.integer(params, "startTime")
    end = p.integer(params, "endTime")
    count = p.limit(params, 500, 1000)
    rows = [
        a
        for a in ledger.algos.values()
        if a.symbol == symbol
        and (from_id is None or a.algo_id >= from_id)
        and (start is None or a.create_ms >= start)
        and (end is None or a.create_ms <= end)
    ]
    rows = rows[:count] if from_id is not None else rows[-count:]
    return [_query_reply(ledger, a) for a in rows]


def delete_algo_open_orders(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """DELETE /fapi/v1/algoOpenOrders: cancel every waiting algo order of a symbol."""
    ledger.ensure_started(now_ms)
    symbol = p.required(params, "symbol")
    ledger.spec(symbol)
    for algo in ledger.open_algos(symbol):
        cancel_algo(ledger, algo, now_ms)
    return dict(CANCEL_ALL_DONE)


# -- triggering (engine tick) --------------------------------------------------------------------


def trigger_algos(ledger: Ledger, now_ms: int) -> None:
    """Fire every waiting algo order whose condition holds now, oldest first."""
    for algo in ledger.open_algos():
        if algo.status != "NEW":
            continue  # finished by an earlier trigger in this same tick
        price = working_price(ledger, algo.symbol, algo.working_type, now_ms)
        stop_price = _trailing_stop(ledger, algo, price, now_ms) if algo.is_trailing else None
        if algo.is_trailing and stop_price is None:
            continue
        if not algo.is_trailing and not condition_met(
            algo.order_type, algo.side, algo.trigger_price, price
        ):
            continue
        if algo.price_protect and not _is_protected(ledger, algo.symbol, now_ms):
            continue
        _fire(ledger, algo, stop_price if stop_price is not None else algo.trigger_price, now_ms)


def _trailing_stop(ledger: Ledger, algo: AlgoOrder, price: Decimal, now_ms: int) -> Decimal | None:
    """Track the trailing extreme; return the stop price once the callback is reached."""
    assert algo.extreme_price is not None and algo.callback_rate is not None
    is_buy = algo.side == "BUY"
    algo.extreme_price = (
        min(algo.extreme_price, price) if is_buy else max(algo.extreme_price, price)
    )
    if not algo.is_activated:
        assert algo.activate_price is not None
        reached = (
            algo.extreme_price <= algo.activate_price
            if is_buy
            else algo.extreme_price >= algo.activate_price
        )
        if not reached:
            return None
        algo.is_activated = True
        algo.update_ms = now_ms
        # Since 2026-08 a trailing order pushes a second NEW with ia=true on activation (§6.6).
        ledger.emit(algo_update(algo, ledger.spec(algo.symbol), None, now_ms))
    rate = algo.callback_rate / 100
    stop = algo.extreme_price * (1 + rate if is_buy else 1 - rate)
    hit = price >= stop if is_buy else price <= stop
    return round_to_tick(ledger.spec(algo.symbol), stop, up=is_buy) if hit else None


def _is_protected(ledger: Ledger, symbol: str, now_ms: int) -> bool:
    """Return whether mark and last agree within the symbol's triggerProtect (priceProtect)."""
    mark = ledger.market.mark_price(symbol, now_ms)
    last = ledger.market.last_price(symbol, now_ms)
    return abs(mark - last) / mark <= ledger.spec(symbol).trigger_protect


def _fire(ledger: Ledger, algo: AlgoOrder, stop_price: Decimal, now_ms: int) -> None:
    """Trigger an algo order: TRIGGERING, then its child (module docstring for the sequence)."""
    spec = ledger.spec(algo.symbol)
    algo.status = "TRIGGERING"
    algo.trigger_ms = now_ms
    algo.update_ms = now_ms
    algo.trigger_price = stop_price
    ledger.emit(algo_update(algo, spec, None, now_ms))
    held = reducible_qty(ledger, algo.symbol, algo.side)
    request = OrderRequest(
        symbol=algo.symbol,
        side=algo.side,
        type=algo.child_type,
        time_in_force=algo.time_in_force if algo.child_type == "LIMIT" else "GTC",
        qty=held if algo.close_position else algo.quantity,
        price=algo.price,
        reduce_only=algo.reduce_only or algo.close_position,
        client_order_id=algo.client_algo_id,
        stp_mode=algo.stp_mode,
        orig_type=algo.order_type,
        algo_id=algo.algo_id,
        stop_price=stop_price,
        close_position=algo.close_position,
        working_type=algo.working_type,
        price_protect=algo.price_protect,
        activate_price=algo.activate_price or ZERO,
        callback_rate=algo.callback_rate or ZERO,
    )
    try:
        plan = prepare(ledger, request, now_ms)
    except ApiError as e:
        algo.status = "REJECTED"
        algo.fail_reason = e.msg
        ledger.emit(algo_update(algo, spec, None, now_ms))
        return
    algo.actual_order_id = plan.order_id
    algo.status = "TRIGGERED"
    ledger.emit(algo_update(algo, spec, None, now_ms))
    if request.reduce_only and held == 0:
        expire_unplaced(ledger, plan, now_ms, reason="4")
    else:
        execute(ledger, plan, now_ms)
