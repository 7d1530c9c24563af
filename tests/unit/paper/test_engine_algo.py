"""Algo (conditional) orders: placement rules, triggers, children, trailing stops, cancels."""

from __future__ import annotations

from typing import Any

import pytest

from procs.paper_exchange.engine.core import ApiError, Engine
from tests.unit.paper.engine_setup import T0, event_types, make_engine, market_buy, market_sell

STOP = {
    "algoType": "CONDITIONAL",
    "symbol": "BTCUSDT",
    "side": "SELL",
    "type": "STOP_MARKET",
    "triggerPrice": "59000.00",
    "closePosition": "true",
    "workingType": "MARK_PRICE",
    "clientAlgoId": "slt-7-stop-0",
}


def refusal(engine: Engine, params: dict[str, str]) -> tuple[int, str]:
    with pytest.raises(ApiError) as e:
        engine.post_algo_order(params, T0)
    assert e.value.http_status == 400
    return e.value.code, e.value.msg


def by_type(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if event_types([e])[0] == name]


def test_market_buy_then_stop_closes_the_position_with_exact_pnl_fees_and_event_order() -> None:
    engine, market = make_engine()
    entry = market_buy(engine, "0.010")  # at the ask 60000.10, fee 0.2400004
    assert entry["avgPrice"] == "60000.10"
    placed = engine.post_algo_order(STOP, T0 + 1000)
    assert (placed["algoStatus"], placed["orderType"], placed["triggerPrice"]) == (
        "NEW",
        "STOP_MARKET",
        "59000.00",
    )
    engine.drain_events()

    market.set("BTCUSDT", "59100.00", mark="59000.10", bid="59099.90", ask="59100.10")
    engine.tick(T0 + 2000)
    assert engine.drain_events() == []  # mark still above the trigger

    market.set("BTCUSDT", "58990.00", bid="58989.90", ask="58990.10")
    engine.tick(T0 + 2250)
    events = engine.drain_events()
    assert event_types(events) == [
        "ALGO_UPDATE:TRIGGERING",
        "ALGO_UPDATE:TRIGGERED",
        "ORDER_TRADE_UPDATE:NEW",
        "TRADE_LITE",
        "ACCOUNT_UPDATE:ORDER",
        "ORDER_TRADE_UPDATE:TRADE",
        "ALGO_UPDATE:FINISHED",
    ]
    triggered, fill, finished = events[1]["o"], events[5]["o"], events[6]["o"]
    child_id = fill["i"]
    assert (triggered["ai"], triggered["act"], finished["ai"]) == (
        str(child_id),
        "MARKET",
        str(child_id),
    )
    assert (fill["c"], fill["o"], fill["ot"], fill["sp"], fill["cp"], fill["R"]) == (
        "slt-7-stop-0",
        "MARKET",
        "STOP_MARKET",
        "59000.00",
        True,
        True,
    )
    # closed at the bid: 0.010 x (58989.90 - 60000.10) = -10.102; fee 0.010 x 58989.90 x 0.0004
    assert (fill["L"], fill["rp"], fill["n"], fill["X"]) == (
        "58989.90",
        "-10.10200000",
        "0.23595960",
        "FILLED",
    )
    assert (finished["ap"], finished["aq"], finished["tt"]) == ("58989.9", "0.01", T0 + 2250)
    account = events[4]["a"]
    assert account["P"][0]["pa"] == "0"
    # 10000 - 0.2400004 - 10.102 - 0.2359596
    assert account["B"][0]["wb"] == "9989.42204000"
    algo = engine.get_algo_order({"clientAlgoId": "slt-7-stop-0"}, T0 + 3000)
    assert (algo["algoStatus"], algo["actualOrderId"], algo["actualPrice"]) == (
        "FINISHED",
        str(child_id),
        "58989.90",
    )
    assert engine.get_open_algo_orders({}, T0 + 3000) == []
    assert engine.get_position_risk_v3({}, T0 + 3000) == []
    assert [(i["incomeType"], i["income"]) for i in engine.get_income({}, T0 + 3000)][1:] == [
        ("COMMISSION", "-0.24000040"),
        ("REALIZED_PNL", "-10.10200000"),
        ("COMMISSION", "-0.23595960"),
    ]


def test_a_stop_that_would_trigger_at_once_is_2021() -> None:
    engine, _ = make_engine()
    assert refusal(engine, {**STOP, "triggerPrice": "60100.00"}) == (
        -2021,
        "Order would immediately trigger.",
    )
    take_profit = {**STOP, "type": "TAKE_PROFIT_MARKET", "triggerPrice": "59900.00"}
    assert refusal(engine, take_profit)[0] == -2021


def test_contract_price_triggers_on_last_while_mark_price_waits_for_the_mark() -> None:
    engine, market = make_engine()
    market_buy(engine, "0.020")
    engine.post_algo_order({**STOP, "clientAlgoId": "on-mark"}, T0)
    engine.post_algo_order(
        {
            **STOP,
            "clientAlgoId": "on-last",
            "workingType": "CONTRACT_PRICE",
            "closePosition": "",
            "quantity": "0.010",
            "reduceOnly": "true",
        },
        T0,
    )
    engine.drain_events()
    market.set("BTCUSDT", "58990.00", mark="59500.00", bid="58989.90", ask="58990.10")
    engine.tick(T0 + 250)
    statuses = {
        a["clientAlgoId"]: a["algoStatus"]
        for a in engine.get_all_algo_orders({"symbol": "BTCUSDT"}, T0)
    }
    assert statuses == {"on-mark": "NEW", "on-last": "FINISHED"}
    assert engine.get_position_risk_v3({}, T0)[0]["positionAmt"] == "0.010"


def test_take_profit_sells_when_the_price_rises_to_the_trigger() -> None:
    engine, market = make_engine()
    market_buy(engine, "0.010")
    engine.post_algo_order(
        {
            **STOP,
            "type": "TAKE_PROFIT_MARKET",
            "triggerPrice": "61000.00",
            "workingType": "CONTRACT_PRICE",
        },
        T0,
    )
    market.set("BTCUSDT", "60999.90")
    engine.tick(T0 + 250)
    assert engine.get_open_algo_orders({}, T0)[0]["algoStatus"] == "NEW"
    market.set("BTCUSDT", "61000.00", bid="60999.90", ask="61000.10")
    engine.tick(T0 + 500)
    trade = engine.get_user_trades({"symbol": "BTCUSDT"}, T0 + 5000)[-1]
    assert (trade["side"], trade["price"], trade["realizedPnl"]) == (
        "SELL",
        "60999.90",
        "9.99800000",
    )


def test_close_position_with_no_position_finishes_with_nothing_filled() -> None:
    engine, market = make_engine()
    engine.post_algo_order(STOP, T0)
    engine.drain_events()
    market.set("BTCUSDT", "58990.00")
    engine.tick(T0 + 250)
    events = engine.drain_events()
    assert event_types(events) == [
        "ALGO_UPDATE:TRIGGERING",
        "ALGO_UPDATE:TRIGGERED",
        "ORDER_TRADE_UPDATE:EXPIRED",
        "ALGO_UPDATE:FINISHED",
    ]
    assert (events[2]["o"]["q"], events[2]["o"]["er"], events[2]["o"]["c"]) == (
        "0",
        "4",
        "slt-7-stop-0",
    )
    assert (events[3]["o"]["aq"], events[3]["o"]["ap"]) == ("0", "0")
    assert engine.get_user_trades({"symbol": "BTCUSDT"}, T0 + 5000) == []


def test_close_position_buy_closes_a_short_whatever_its_size_at_trigger_time() -> None:
    engine, market = make_engine()
    market_sell(engine, "0.010")
    engine.post_algo_order(
        {**STOP, "side": "BUY", "triggerPrice": "61000.00", "workingType": "CONTRACT_PRICE"}, T0
    )
    market_sell(engine, "0.020")  # the short grows after the stop was placed
    market.set("BTCUSDT", "61000.00", bid="60999.90", ask="61000.10")
    engine.tick(T0 + 250)
    trade = engine.get_user_trades({"symbol": "BTCUSDT"}, T0 + 5000)[-1]
    assert (trade["side"], trade["qty"], trade["price"]) == ("BUY", "0.030", "61000.10")
    assert engine.get_position_risk_v3({}, T0) == []


def test_reduce_only_algo_never_increases_the_position() -> None:
    engine, market = make_engine()
    market_buy(engine, "0.010")
    engine.post_algo_order(
        {
            **STOP,
            "side": "BUY",
            "triggerPrice": "61000.00",
            "closePosition": "",
            "quantity": "0.010",
            "reduceOnly": "true",
            "workingType": "CONTRACT_PRICE",
        },
        T0,
    )
    engine.drain_events()
    market.set("BTCUSDT", "61000.00")
    engine.tick(T0 + 250)
    events = engine.drain_events()
    assert event_types(events)[-2:] == ["ORDER_TRADE_UPDATE:EXPIRED", "ALGO_UPDATE:FINISHED"]
    assert engine.get_position_risk_v3({}, T0)[0]["positionAmt"] == "0.010"


def test_reduce_only_algo_larger_than_the_position_only_closes_it() -> None:
    engine, market = make_engine()
    market_buy(engine, "0.010")
    engine.post_algo_order(
        {**STOP, "closePosition": "", "quantity": "0.050", "reduceOnly": "true"}, T0
    )
    engine.drain_events()
    market.set("BTCUSDT", "58990.00")
    engine.tick(T0 + 250)
    events = engine.drain_events()
    assert event_types(events)[-3:] == [
        "ORDER_TRADE_UPDATE:TRADE",
        "ORDER_TRADE_UPDATE:EXPIRED",
        "ALGO_UPDATE:FINISHED",
    ]
    assert (events[-1]["o"]["aq"], events[-1]["o"]["q"]) == ("0.01", "0.05")
    assert engine.get_position_risk_v3({}, T0) == []


def test_protective_stops_stay_when_the_position_is_closed_by_hand() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.010")
    engine.post_algo_order(STOP, T0)
    market_sell(engine, "0.010")
    assert [a["algoStatus"] for a in engine.get_open_algo_orders({}, T0)] == ["NEW"]


def test_stop_limit_child_rests_until_filled_and_then_finishes_the_algo_order() -> None:
    engine, market = make_engine()
    engine.post_algo_order(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "STOP",
            "quantity": "0.010",
            "price": "60900.00",
            "triggerPrice": "61000.00",
            "clientAlgoId": "breakout",
        },
        T0,
    )
    market.set("BTCUSDT", "61000.00", bid="60999.90", ask="61000.10")
    engine.tick(T0 + 250)
    child = engine.get_open_orders({"symbol": "BTCUSDT"}, T0)[0]
    assert (child["type"], child["origType"], child["clientOrderId"], child["stopPrice"]) == (
        "LIMIT",
        "STOP",
        "breakout",
        "61000.00",
    )
    assert engine.get_algo_order({"clientAlgoId": "breakout"}, T0)["algoStatus"] == "TRIGGERED"
    engine.drain_events()
    market.set("BTCUSDT", "60899.90")
    engine.tick(T0 + 500)
    events = engine.drain_events()
    assert event_types(events)[-1] == "ALGO_UPDATE:FINISHED"
    assert events[-2]["o"]["m"] is True  # the child filled as maker at its limit
    assert engine.get_algo_order({"clientAlgoId": "breakout"}, T0)["actualPrice"] == "60900.00"


def test_trailing_stop_activates_tracks_the_high_and_fires_on_the_callback() -> None:
    engine, market = make_engine()
    market_buy(engine, "0.010")
    placed = engine.post_algo_order(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "TRAILING_STOP_MARKET",
            "quantity": "0.010",
            "reduceOnly": "true",
            "activatePrice": "61000.00",
            "callbackRate": "1",
            "clientAlgoId": "trail",
        },
        T0,
    )
    assert (placed["activatePrice"], placed["callbackRate"]) == ("61000.00", "1.0")
    assert engine.drain_events()[-1]["o"]["ia"] is False
    for i, last in enumerate(["60500.00", "61000.00", "62000.00", "61400.00"]):
        market.set("BTCUSDT", last)
        engine.tick(T0 + 250 * (i + 1))
    events = engine.drain_events()
    assert event_types(events) == ["ALGO_UPDATE:NEW"]  # activation at 61000
    assert events[0]["o"]["ia"] is True
    market.set("BTCUSDT", "61380.00", bid="61379.90", ask="61380.10")  # 62000 x (1 - 1 %)
    engine.tick(T0 + 2000)
    events = engine.drain_events()
    fill = by_type(events, "ORDER_TRADE_UPDATE:TRADE")[0]["o"]
    assert (fill["ot"], fill["sp"], fill["AP"], fill["cr"], fill["L"]) == (
        "TRAILING_STOP_MARKET",
        "61380.00",
        "61000.00",
        "1.0",
        "61379.90",
    )
    assert by_type(events, "ALGO_UPDATE:TRIGGERED")[0]["o"]["tp"] == "61380"


def test_trailing_stop_without_activation_price_is_active_at_once() -> None:
    engine, market = make_engine()
    engine.post_algo_order(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "TRAILING_STOP_MARKET",
            "quantity": "0.010",
            "callbackRate": "0.5",
        },
        T0,
    )
    market.set("BTCUSDT", "59000.00")
    engine.tick(T0 + 250)
    market.set("BTCUSDT", "59295.00", bid="59294.90", ask="59295.10")  # 59000 x 1.005
    engine.tick(T0 + 500)
    trade = engine.get_user_trades({"symbol": "BTCUSDT"}, T0 + 5000)[0]
    assert (trade["side"], trade["price"]) == ("BUY", "59295.10")


def test_trailing_activation_on_the_wrong_side_of_the_price_is_2021() -> None:
    engine, _ = make_engine()
    params = {
        "algoType": "CONDITIONAL",
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "TRAILING_STOP_MARKET",
        "quantity": "0.010",
        "callbackRate": "1",
        "activatePrice": "59000.00",
    }
    assert refusal(engine, params)[0] == -2021


def test_price_protect_holds_the_trigger_while_mark_and_last_diverge() -> None:
    engine, market = make_engine()
    market_buy(engine, "0.010")
    engine.post_algo_order({**STOP, "workingType": "CONTRACT_PRICE", "priceProtect": "TRUE"}, T0)
    # |62100 - 58900| / 62100 = 5.15 % > triggerProtect 5 %
    market.set("BTCUSDT", "58900.00", mark="62100.00")
    engine.tick(T0 + 250)
    assert engine.get_open_algo_orders({}, T0)[0]["priceProtect"] is True
    market.set("BTCUSDT", "58900.00", mark="59500.00")
    engine.tick(T0 + 500)
    assert engine.get_open_algo_orders({}, T0) == []


def test_a_child_the_matching_engine_refuses_leaves_the_algo_order_rejected() -> None:
    engine, market = make_engine()
    engine.post_algo_order(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "STOP_MARKET",
            "quantity": "10",
            "triggerPrice": "61000.00",
        },
        T0,
    )
    engine.drain_events()
    market.set("BTCUSDT", "61000.00")
    engine.tick(T0 + 250)
    events = engine.drain_events()
    assert event_types(events) == ["ALGO_UPDATE:TRIGGERING", "ALGO_UPDATE:REJECTED"]
    assert events[1]["o"]["rm"] == "Margin is insufficient."


def test_cancel_answers_with_string_code_and_pushes_algo_update_canceled() -> None:
    engine, _ = make_engine()
    placed = engine.post_algo_order(STOP, T0)
    engine.drain_events()
    reply = engine.delete_algo_order({"algoId": str(placed["algoId"])}, T0 + 1)
    assert reply == {
        "algoId": placed["algoId"],
        "clientAlgoId": "slt-7-stop-0",
        "code": "200",
        "msg": "success",
    }
    assert event_types(engine.drain_events()) == ["ALGO_UPDATE:CANCELED"]
    with pytest.raises(ApiError) as e:
        engine.delete_algo_order({"algoId": str(placed["algoId"])}, T0)
    assert (e.value.code, e.value.msg) == (-2011, "Unknown order sent.")
    with pytest.raises(ApiError) as e:
        engine.get_algo_order({"algoId": "1"}, T0)
    assert (e.value.code, e.value.msg) == (-2013, "Order does not exist.")


def test_open_and_all_algo_orders_and_cancel_all() -> None:
    engine, _ = make_engine()
    first = engine.post_algo_order(STOP, T0)
    second = {"closePosition": "", "quantity": "0.010", "reduceOnly": "true"}  # not a 2nd -4130
    engine.post_algo_order(
        {**STOP, **second, "clientAlgoId": "second", "triggerPrice": "58000.00"}, T0 + 1
    )
    assert [a["algoId"] for a in engine.get_open_algo_orders({"symbol": "BTCUSDT"}, T0)] == [
        first["algoId"],
        first["algoId"] + 1,
    ]
    assert engine.get_open_algo_orders({"symbol": "ETHUSDT"}, T0) == []
    assert engine.delete_algo_open_orders({"symbol": "BTCUSDT"}, T0) == {
        "code": 200,
        "msg": "The operation of cancel all open order is done.",
    }
    assert engine.get_open_algo_orders({}, T0) == []
    history = engine.get_all_algo_orders({"symbol": "BTCUSDT"}, T0)
    assert [a["algoStatus"] for a in history] == ["CANCELED", "CANCELED"]
    assert (
        engine.get_all_algo_orders({"symbol": "BTCUSDT", "limit": "1"}, T0)[0]["clientAlgoId"]
        == "second"
    )


ALGO_REFUSALS = [
    (
        {"algoType": ""},
        -1102,
        "Mandatory parameter 'algoType' was not sent, was empty/null, or malformed.",
    ),
    ({"algoType": "VP"}, -1130, "Data sent for parameter 'algoType' is not valid."),
    ({"symbol": "FOOUSDT"}, -1121, "Invalid symbol."),
    ({"type": "LIMIT"}, -1116, "Invalid orderType."),
    ({"positionSide": "SHORT"}, -4061, "Order's position side does not match user's setting."),
    ({"workingType": "INDEX_PRICE"}, -4031, "Invalid parameter working type"),
    (
        {"triggerPrice": ""},
        -1102,
        "Mandatory parameter 'triggerPrice' was not sent, was empty/null, or malformed.",
    ),
    ({"triggerPrice": "59000.05"}, -4014, "Price not increased by tick size."),
    ({"quantity": "0.010"}, -4137, "Quantity must be zero with closePosition equals true"),
    ({"reduceOnly": "true"}, -1106, "Parameter 'reduceOnly' sent when not required."),
    (
        {"type": "STOP", "price": "59000"},
        -4136,
        "Target strategy invalid for orderType STOP,closePosition true",
    ),
    ({"clientAlgoId": "no spaces"}, -4015, "Client order id is not valid."),
    (
        {"closePosition": "false"},
        -1102,
        "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
    ),
    (
        {"closePosition": "false", "quantity": "0.0001"},
        -1111,
        "Precision is over the maximum defined for this asset.",
    ),
    (
        {"closePosition": "false", "quantity": "0.010", "price": "59000"},
        -1106,
        "Parameter 'price' sent when not required.",
    ),
]


@pytest.mark.parametrize(("override", "code", "msg"), ALGO_REFUSALS)
def test_invalid_algo_order_is_refused_with_binance_code_and_message(
    override: dict[str, str], code: int, msg: str
) -> None:
    engine, _ = make_engine()
    assert refusal(engine, {**STOP, **override}) == (code, msg)
    assert engine.drain_events() == []


def test_algo_min_notional_applies_unless_reduce_only() -> None:
    engine, _ = make_engine()
    eth = {
        "algoType": "CONDITIONAL",
        "symbol": "ETHUSDT",
        "side": "SELL",
        "type": "STOP_MARKET",
        "quantity": "0.003",
        "triggerPrice": "2900.00",
    }
    assert refusal(engine, eth) == (
        -4164,
        "Order's notional must be no smaller than 10 (unless you choose reduce only).",
    )
    assert engine.post_algo_order({**eth, "reduceOnly": "true"}, T0)["algoStatus"] == "NEW"


def test_trailing_callback_rate_outside_0_1_to_20_and_bad_activation_are_refused() -> None:
    engine, _ = make_engine()
    trailing = {
        "algoType": "CONDITIONAL",
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "TRAILING_STOP_MARKET",
        "quantity": "0.010",
    }
    assert refusal(engine, {**trailing, "callbackRate": "20.5"}) == (
        -1130,
        "Data sent for parameter 'callbackRate' is not valid.",
    )
    assert refusal(engine, {**trailing, "callbackRate": "0.05"})[0] == -1130
    assert refusal(engine, {**trailing, "callbackRate": "1", "activatePrice": "61000.05"}) == (
        -4135,
        "Invalid activation price",
    )


def test_duplicate_client_algo_id_and_the_account_wide_algo_limit() -> None:
    engine, _ = make_engine(max_open_algo_orders=2)
    engine.post_algo_order(STOP, T0)
    assert refusal(engine, STOP) == (-4116, "clientOrderId is duplicated")
    engine.post_algo_order(
        {**STOP, "clientAlgoId": "b", "side": "BUY", "triggerPrice": "61000"}, T0
    )
    assert refusal(engine, {**STOP, "clientAlgoId": "c"}) == (-4045, "Reach max stop order limit.")


def test_legacy_conditional_orders_on_the_order_endpoint_become_algo_orders_when_enabled() -> None:
    engine, _ = make_engine(legacy_conditional_on_order_endpoint=True)
    reply = engine.post_order(
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "stopPrice": "59000.00",
            "closePosition": "true",
            "newClientOrderId": "legacy-stop",
        },
        T0,
    )
    assert (reply["clientAlgoId"], reply["triggerPrice"], reply["algoStatus"]) == (
        "legacy-stop",
        "59000.00",
        "NEW",
    )


# POST /fapi/v1/algoOrder reply, real capture quoted in BINANCE-API.md §5.10 (ccxt, Nov 2025).
POST_ALGO_KEYS = [
    "algoId",
    "clientAlgoId",
    "algoType",
    "orderType",
    "symbol",
    "side",
    "positionSide",
    "timeInForce",
    "quantity",
    "algoStatus",
    "triggerPrice",
    "price",
    "icebergQuantity",
    "selfTradePreventionMode",
    "workingType",
    "priceMatch",
    "closePosition",
    "priceProtect",
    "reduceOnly",
    "createTime",
    "updateTime",
    "triggerTime",
    "goodTillDate",
]
# GET /fapi/v1/algoOrder and openAlgoOrders reply, Binance docs "Query Algo Order" example.
QUERY_ALGO_KEYS = [
    "algoId",
    "clientAlgoId",
    "algoType",
    "orderType",
    "symbol",
    "side",
    "positionSide",
    "timeInForce",
    "quantity",
    "algoStatus",
    "actualOrderId",
    "actualPrice",
    "triggerPrice",
    "price",
    "icebergQuantity",
    "tpTriggerPrice",
    "tpPrice",
    "slTriggerPrice",
    "slPrice",
    "tpOrderType",
    "selfTradePreventionMode",
    "workingType",
    "priceMatch",
    "closePosition",
    "priceProtect",
    "reduceOnly",
    "createTime",
    "updateTime",
    "triggerTime",
    "goodTillDate",
]


def test_algo_replies_have_binance_keys_in_order_with_binance_types() -> None:
    engine, _ = make_engine()
    placed = engine.post_algo_order(
        {**STOP, "type": "STOP", "closePosition": "", "quantity": "0.002", "price": "58900.00"},
        T0,
    )
    assert list(placed) == POST_ALGO_KEYS
    assert (placed["quantity"], placed["price"], placed["icebergQuantity"]) == (
        "0.002",
        "58900.00",
        None,
    )
    assert [type(placed[k]) for k in ("algoId", "createTime", "closePosition")] == [int, int, bool]
    queried = engine.get_algo_order({"algoId": str(placed["algoId"])}, T0)
    assert list(queried) == QUERY_ALGO_KEYS
    assert (queried["actualOrderId"], queried["actualPrice"]) == ("", "0.00")
    assert engine.get_open_algo_orders({"symbol": "BTCUSDT"}, T0) == [queried]


CLOSE_POSITION_EXISTS = (
    -4130,
    "An open stop or take profit order with GTE and closePosition in the direction is existing.",
)


def test_a_second_close_position_stop_in_one_direction_is_4130_until_the_first_is_gone() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.020")
    first = engine.post_algo_order(STOP, T0)
    moved = {**STOP, "clientAlgoId": "slt-7-stop-1", "triggerPrice": "59500.00"}
    assert refusal(engine, moved) == CLOSE_POSITION_EXISTS
    assert [a["clientAlgoId"] for a in engine.get_open_algo_orders({}, T0)] == ["slt-7-stop-0"]
    engine.delete_algo_order({"algoId": str(first["algoId"])}, T0 + 1)
    assert engine.post_algo_order(moved, T0 + 2)["triggerPrice"] == "59500.00"


def test_close_position_4130_spares_other_types_sides_and_reduce_only_quantity_stops() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.020")
    engine.post_algo_order(STOP, T0)
    # A take-profit with closePosition on the same side, a closePosition stop the other way and a
    # reduce-only quantity stop (the guard's bridge while it moves a stop) all rest beside it.
    take_profit = {**STOP, "type": "TAKE_PROFIT_MARKET", "triggerPrice": "61000.00"}
    engine.post_algo_order({**take_profit, "clientAlgoId": "tp"}, T0)
    engine.post_algo_order(
        {**STOP, "clientAlgoId": "buy", "side": "BUY", "triggerPrice": "61000.00"}, T0
    )
    bridge = {"closePosition": "", "quantity": "0.020", "reduceOnly": "true"}
    engine.post_algo_order({**STOP, **bridge, "clientAlgoId": "slt-7-bridge-1"}, T0)
    assert len(engine.get_open_algo_orders({}, T0)) == 4
    assert refusal(engine, {**take_profit, "clientAlgoId": "tp2"}) == CLOSE_POSITION_EXISTS
