"""Regular orders: matching, replies, queries, cancels and Binance's refusals."""

from __future__ import annotations

from typing import Any

import pytest

from procs.paper_exchange.engine.core import ApiError, Engine
from tests.unit.paper.engine_setup import (
    T0,
    event_types,
    fixture,
    make_engine,
    market_buy,
    market_sell,
    spec_with_filter,
)

LIMIT_BUY = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.010",
    "price": "59000.00",
}


def refusal(call: Any, params: dict[str, str], now_ms: int = T0) -> tuple[int, int, str]:
    with pytest.raises(ApiError) as e:
        call(params, now_ms)
    return e.value.http_status, e.value.code, e.value.msg


def wallet(engine: Engine) -> str:
    return str(engine.get_balance({}, T0)[0]["balance"])


def test_market_buy_fills_completely_at_the_ask_paying_the_taker_fee() -> None:
    engine, _ = make_engine()
    reply = market_buy(engine, "0.010")
    assert reply["status"] == "FILLED"
    assert reply["avgPrice"] == "60000.10"
    assert reply["executedQty"] == "0.010"
    assert reply["cumQty"] == "0.010"
    assert reply["cumQuote"] == "600.00100"
    assert reply["timeInForce"] == "GTC"
    assert reply["origType"] == "MARKET"
    # 0.010 x 60000.10 x 0.0004 = 0.2400004
    assert wallet(engine) == "9999.75999960"


def test_market_sell_fills_at_the_bid() -> None:
    engine, _ = make_engine()
    assert market_sell(engine, "0.010")["avgPrice"] == "59999.90"


def test_market_slippage_moves_the_fill_against_the_taker_onto_the_tick() -> None:
    engine, _ = make_engine(market_slippage_bps=10)
    # 60000.10 x 1.001 = 60060.1001 -> up to 60060.20; 59999.90 x 0.999 = 59939.9001 -> 59939.90
    assert market_buy(engine, "0.010")["avgPrice"] == "60060.20"
    assert market_sell(engine, "0.010")["avgPrice"] == "59939.90"


def test_ack_reply_is_the_accepted_state_even_when_the_market_order_filled() -> None:
    engine, _ = make_engine()
    reply = engine.post_order(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"}, T0
    )
    assert (reply["status"], reply["executedQty"], reply["avgPrice"], reply["cumQuote"]) == (
        "NEW",
        "0.000",
        "0.00",
        "0.00000",
    )
    query = engine.get_order({"symbol": "BTCUSDT", "orderId": str(reply["orderId"])}, T0)
    assert query["status"] == "FILLED"


def test_limit_below_the_ask_rests_and_reports_its_notional_on_the_bid_side() -> None:
    engine, _ = make_engine()
    reply = engine.post_order(LIMIT_BUY, T0)
    assert (reply["status"], reply["price"], reply["executedQty"]) == ("NEW", "59000.00", "0.000")
    events = engine.drain_events()
    assert event_types(events) == ["ORDER_TRADE_UPDATE:NEW"]
    assert (events[0]["o"]["b"], events[0]["o"]["a"]) == ("590", "0")
    assert [o["orderId"] for o in engine.get_open_orders({"symbol": "BTCUSDT"}, T0)] == [
        reply["orderId"]
    ]


def test_crossing_limit_fills_as_taker_at_the_book_not_at_its_limit() -> None:
    engine, _ = make_engine()
    reply = engine.post_order({**LIMIT_BUY, "price": "60100.00", "newOrderRespType": "RESULT"}, T0)
    assert (reply["status"], reply["avgPrice"]) == ("FILLED", "60000.10")
    trade = engine.get_user_trades({"symbol": "BTCUSDT"}, T0)[0]
    assert (trade["maker"], trade["commission"]) == (False, "0.24000040")


def test_resting_limit_fills_as_maker_at_its_price_once_last_trades_through_it() -> None:
    engine, market = make_engine()
    order_id = engine.post_order(LIMIT_BUY, T0)["orderId"]
    engine.drain_events()
    market.set("BTCUSDT", "59000.00", bid="58999.90", ask="59000.10")
    engine.tick(T0 + 250)
    assert engine.get_order({"symbol": "BTCUSDT", "orderId": str(order_id)}, T0)["status"] == "NEW"
    market.set("BTCUSDT", "58999.90", bid="58999.80", ask="59000.00")
    engine.tick(T0 + 500)
    order = engine.get_order({"symbol": "BTCUSDT", "orderId": str(order_id)}, T0)
    assert (order["status"], order["avgPrice"]) == ("FILLED", "59000.00")
    events = engine.drain_events()
    assert event_types(events) == ["TRADE_LITE", "ACCOUNT_UPDATE:ORDER", "ORDER_TRADE_UPDATE:TRADE"]
    fill = events[2]["o"]
    # maker fee 0.010 x 59000 x 0.0002 = 0.118
    assert (fill["m"], fill["L"], fill["n"], fill["X"]) == (
        True,
        "59000.00",
        "0.11800000",
        "FILLED",
    )
    assert wallet(engine) == "9999.88200000"


def test_ioc_limit_that_cannot_fill_expires_with_reason_2() -> None:
    engine, _ = make_engine()
    reply = engine.post_order({**LIMIT_BUY, "timeInForce": "IOC", "newOrderRespType": "RESULT"}, T0)
    assert reply["status"] == "EXPIRED"
    events = engine.drain_events()
    assert event_types(events) == ["ORDER_TRADE_UPDATE:NEW", "ORDER_TRADE_UPDATE:EXPIRED"]
    assert (events[1]["o"]["X"], events[1]["o"]["er"]) == ("EXPIRED", "2")


def test_fok_limit_that_cannot_fill_is_refused_with_5021_and_leaves_no_trace() -> None:
    engine, _ = make_engine()
    assert refusal(engine.post_order, {**LIMIT_BUY, "timeInForce": "FOK"}) == (
        400,
        -5021,
        "Due to the order could not be filled immediately, the FOK order has been rejected.",
    )
    assert engine.drain_events() == []
    assert engine.get_all_orders({"symbol": "BTCUSDT"}, T0) == []


def test_fok_limit_that_crosses_fills() -> None:
    engine, _ = make_engine()
    reply = engine.post_order(
        {**LIMIT_BUY, "timeInForce": "FOK", "price": "60000.10", "newOrderRespType": "RESULT"}, T0
    )
    assert reply["status"] == "FILLED"


def test_post_only_limit_that_would_take_is_refused_with_5022() -> None:
    engine, _ = make_engine()
    assert refusal(engine.post_order, {**LIMIT_BUY, "timeInForce": "GTX", "price": "60000.10"}) == (
        400,
        -5022,
        "Due to the order could not be executed as maker, the Post Only order will be rejected.",
    )


def test_post_only_limit_that_does_not_cross_rests() -> None:
    engine, _ = make_engine()
    assert engine.post_order({**LIMIT_BUY, "timeInForce": "GTX"}, T0)["status"] == "NEW"


def test_cancel_by_client_id_answers_canceled_and_pushes_no_account_update() -> None:
    engine, _ = make_engine()
    engine.post_order({**LIMIT_BUY, "newClientOrderId": "slt-1-entry-0"}, T0)
    engine.drain_events()
    reply = engine.delete_order({"symbol": "BTCUSDT", "origClientOrderId": "slt-1-entry-0"}, T0 + 1)
    assert (reply["status"], reply["clientOrderId"], reply["updateTime"]) == (
        "CANCELED",
        "slt-1-entry-0",
        T0 + 1,
    )
    events = engine.drain_events()
    assert event_types(events) == ["ORDER_TRADE_UPDATE:CANCELED"]
    assert events[0]["o"]["X"] == "CANCELED"
    assert engine.get_open_orders({}, T0) == []


def test_cancel_of_an_unknown_or_finished_order_is_2011() -> None:
    engine, _ = make_engine()
    filled = market_buy(engine, "0.010")["orderId"]
    expected = (400, -2011, "Unknown order sent.")
    assert refusal(engine.delete_order, {"symbol": "BTCUSDT", "orderId": "12345"}) == expected
    assert refusal(engine.delete_order, {"symbol": "BTCUSDT", "orderId": str(filled)}) == expected
    assert refusal(engine.delete_order, {"symbol": "ETHUSDT", "orderId": str(filled)}) == expected


def test_query_of_an_unknown_order_is_2013_and_open_order_only_finds_open_ones() -> None:
    engine, _ = make_engine()
    filled = market_buy(engine, "0.010")["orderId"]
    expected = (400, -2013, "Order does not exist.")
    assert refusal(engine.get_order, {"symbol": "BTCUSDT", "orderId": "1"}) == expected
    assert refusal(engine.get_open_order, {"symbol": "BTCUSDT", "orderId": str(filled)}) == expected
    assert refusal(engine.get_order, {"symbol": "BTCUSDT"}) == (
        400,
        -1102,
        "Param 'orderId' or 'origClientOrderId' must be sent, but both were empty/null!",
    )


def test_order_replies_have_binance_keys_in_order_with_binance_types() -> None:
    engine, _ = make_engine()
    posted = engine.post_order(LIMIT_BUY, T0)
    real_post = fixture("ccxt-extracted/ccxt_binance_linear_httpResponses.json")["entries"][0]
    expected_post = real_post["httpResponse"][0]
    assert [(k, type(v)) for k, v in posted.items()] == [
        (k, type(v)) for k, v in expected_post.items()
    ]
    queried = engine.get_open_order({"symbol": "BTCUSDT", "orderId": str(posted["orderId"])}, T0)
    expected_get = fixture("nautilus-docs-derived/rs_http_json_order_response.json")
    assert [(k, type(v)) for k, v in queried.items()] == [
        (k, type(v)) for k, v in expected_get.items()
    ]
    assert queried["time"] == T0


def test_all_orders_returns_history_oldest_first_from_order_id_or_the_latest_limit() -> None:
    engine, _ = make_engine()
    ids = [market_buy(engine, "0.001", T0 + i)["orderId"] for i in range(4)]
    assert [o["orderId"] for o in engine.get_all_orders({"symbol": "BTCUSDT"}, T0)] == ids
    assert [
        o["orderId"] for o in engine.get_all_orders({"symbol": "BTCUSDT", "limit": "2"}, T0)
    ] == ids[2:]
    assert [
        o["orderId"]
        for o in engine.get_all_orders(
            {"symbol": "BTCUSDT", "orderId": str(ids[1]), "limit": "2"}, T0
        )
    ] == ids[1:3]
    assert ids == sorted(ids) and len(set(ids)) == 4


def test_cancel_all_open_orders_cancels_regular_orders_and_keeps_algo_orders() -> None:
    engine, _ = make_engine()
    engine.post_order(LIMIT_BUY, T0)
    engine.post_order({**LIMIT_BUY, "price": "58000.00"}, T0)
    engine.post_algo_order(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "STOP_MARKET",
            "quantity": "0.010",
            "triggerPrice": "61000",
        },
        T0,
    )
    engine.drain_events()
    reply = engine.delete_all_open_orders({"symbol": "BTCUSDT"}, T0)
    assert reply == {"code": 200, "msg": "The operation of cancel all open order is done."}
    assert event_types(engine.drain_events()) == ["ORDER_TRADE_UPDATE:CANCELED"] * 2
    assert engine.get_open_orders({}, T0) == []
    assert len(engine.get_open_algo_orders({}, T0)) == 1


def test_duplicate_client_id_among_open_orders_is_4116_until_the_first_is_closed() -> None:
    engine, _ = make_engine()
    params = {**LIMIT_BUY, "newClientOrderId": "dup"}
    engine.post_order(params, T0)
    assert refusal(engine.post_order, params) == (400, -4116, "clientOrderId is duplicated")
    engine.delete_order({"symbol": "BTCUSDT", "origClientOrderId": "dup"}, T0)
    assert engine.post_order(params, T0)["status"] == "NEW"


def test_the_max_num_orders_filter_caps_open_orders_per_symbol_with_2025() -> None:
    specs = spec_with_filter("BTCUSDT", "MAX_NUM_ORDERS", limit=2)
    engine, _ = make_engine(specs=specs)
    engine.post_order(LIMIT_BUY, T0)
    engine.post_order(LIMIT_BUY, T0)
    assert refusal(engine.post_order, LIMIT_BUY) == (400, -2025, "Reach max open order limit.")


def test_market_orders_use_market_lot_size_and_limit_orders_lot_size() -> None:
    specs = spec_with_filter("BTCUSDT", "MARKET_LOT_SIZE", maxQty="0.050")
    engine, _ = make_engine(specs=specs)
    market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.051"}
    assert refusal(engine.post_order, market)[1:] == (-4005, "Quantity greater than max quantity.")
    assert engine.post_order({**LIMIT_BUY, "quantity": "0.051"}, T0)["status"] == "NEW"


def test_quantity_below_the_minimum_is_4004() -> None:
    engine, _ = make_engine(specs=spec_with_filter("BTCUSDT", "LOT_SIZE", minQty="0.005"))
    assert refusal(engine.post_order, {**LIMIT_BUY, "quantity": "0.004"})[1:] == (
        -4004,
        "Quantity less than min quantity.",
    )


def test_quantity_off_the_step_grid_is_4023() -> None:
    engine, _ = make_engine(specs=spec_with_filter("BTCUSDT", "LOT_SIZE", stepSize="0.005"))
    assert refusal(engine.post_order, {**LIMIT_BUY, "quantity": "0.012"})[1:] == (
        -4023,
        "Qty not increased by step size.",
    )


USE_ALGO = (
    "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead."
)
NO_SYMBOL = "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."

ORDER_REFUSALS = [
    ({"symbol": ""}, -1102, NO_SYMBOL),
    ({"symbol": "FOOUSDT"}, -1121, "Invalid symbol."),
    ({"side": "HOLD"}, -1117, "Invalid side."),
    ({"type": "LIMIT_MAKER"}, -1116, "Invalid orderType."),
    ({"type": "STOP_MARKET", "stopPrice": "59000"}, -4120, USE_ALGO),
    ({"type": "TRAILING_STOP_MARKET"}, -4120, USE_ALGO),
    ({"positionSide": "LONG"}, -4061, "Order's position side does not match user's setting."),
    ({"positionSide": "UP"}, -4060, "Invalid position side."),
    ({"reduceOnly": "yes"}, -1130, "Data sent for parameter 'reduceOnly' is not valid."),
    (
        {"quantity": "abc"},
        -1102,
        "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
    ),
    (
        {"timeInForce": ""},
        -1102,
        "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
    ),
    ({"timeInForce": "GTD"}, -1115, "Invalid timeInForce."),
    ({"newOrderRespType": "FULL"}, -1136, "Invalid newOrderRespType"),
    ({"newClientOrderId": "bad id!"}, -4015, "Client order id is not valid."),
    ({"newClientOrderId": "x" * 37}, -4015, "Client order id is not valid."),
    ({"selfTradePreventionMode": "NEVER"}, -5039, "Invalid self trade prevention mode"),
    ({"priceMatch": "OPPONENT"}, -1130, "Data sent for parameter 'priceMatch' is not valid."),
    ({"quantity": "0"}, -4003, "Quantity less than zero."),
    ({"quantity": "-0.010"}, -4003, "Quantity less than zero."),
    ({"quantity": "0.0001"}, -1111, "Precision is over the maximum defined for this asset."),
    ({"quantity": "1001"}, -4005, "Quantity greater than max quantity."),
    ({"price": "59000.123"}, -1111, "Precision is over the maximum defined for this asset."),
    ({"price": "59000.05"}, -4014, "Price not increased by tick size."),
    ({"price": "401"}, -4013, "Price less than min price."),
    ({"price": "0"}, -4013, "Price less than min price."),
    ({"price": "-1"}, -4001, "Price less than 0."),
    ({"price": "1246396.70"}, -4002, "Price greater than max price."),
    # PERCENT_PRICE against mark 60000: cap 60000 x 1.1 = 66000, floor 60000 x 0.5454 = 32724
    ({"price": "66000.10"}, -4016, "Price is higher than mark price multiplier cap."),
    (
        {"side": "SELL", "price": "32723.90"},
        -4024,
        "Price is lower than mark price multiplier floor.",
    ),
    ({"quantity": "10"}, -2019, "Margin is insufficient."),
    ({"reduceOnly": "true"}, -2022, "ReduceOnly Order is rejected."),
]


@pytest.mark.parametrize(("override", "code", "msg"), ORDER_REFUSALS)
def test_invalid_order_is_refused_with_binance_code_and_message(
    override: dict[str, str], code: int, msg: str
) -> None:
    engine, _ = make_engine()
    assert refusal(engine.post_order, {**LIMIT_BUY, **override}) == (400, code, msg)
    assert engine.drain_events() == []


def test_price_on_a_market_order_is_1106() -> None:
    engine, _ = make_engine()
    params = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "MARKET",
        "quantity": "0.010",
        "price": "60000",
    }
    assert refusal(engine.post_order, params) == (
        400,
        -1106,
        "Parameter 'price' sent when not required.",
    )


def test_min_notional_names_the_symbol_notional_and_exempts_reduce_only() -> None:
    engine, _ = make_engine()
    tiny = {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.003"}
    assert refusal(engine.post_order, tiny) == (
        400,
        -4164,
        "Order's notional must be no smaller than 10 (unless you choose reduce only).",
    )
    # LIMIT notional uses the limit price: 0.003 x 2800.00 = 8.4 < 10
    limit = {**tiny, "type": "LIMIT", "timeInForce": "GTC", "price": "2800.00"}
    assert refusal(engine.post_order, limit)[1] == -4164
    market_buy(engine, "0.010", symbol="ETHUSDT")
    reduce = {**tiny, "side": "SELL", "reduceOnly": "true", "newOrderRespType": "RESULT"}
    assert engine.post_order(reduce, T0)["status"] == "FILLED"


def test_reduce_only_that_would_increase_the_position_is_2022() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.010")
    params = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "MARKET",
        "quantity": "0.010",
        "reduceOnly": "true",
    }
    assert refusal(engine.post_order, params)[1:] == (-2022, "ReduceOnly Order is rejected.")


@pytest.mark.parametrize("spelling", ["true", "True", "TRUE"])
def test_booleans_are_accepted_in_any_letter_case(spelling: str) -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.010")
    params = {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "MARKET",
        "quantity": "0.010",
        "reduceOnly": spelling,
        "newOrderRespType": "RESULT",
    }
    reply = engine.post_order(params, T0)
    assert (reply["status"], reply["reduceOnly"]) == ("FILLED", True)


def test_reduce_only_larger_than_the_position_fills_the_position_and_expires_the_rest() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.010")
    engine.drain_events()
    params = {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "MARKET",
        "quantity": "0.030",
        "reduceOnly": "true",
        "newOrderRespType": "RESULT",
    }
    reply = engine.post_order(params, T0)
    assert (reply["status"], reply["executedQty"]) == ("EXPIRED", "0.010")
    assert engine.get_position_risk_v2({"symbol": "BTCUSDT"}, T0)[0]["positionAmt"] == "0.000"
    events = engine.drain_events()
    assert event_types(events)[-1] == "ORDER_TRADE_UPDATE:EXPIRED"
    assert events[-1]["o"]["er"] == "4"


def test_resting_reduce_only_orders_expire_when_the_position_closes() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.010")
    take_profit = {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.010",
        "price": "65000.00",
        "reduceOnly": "true",
    }
    order_id = engine.post_order(take_profit, T0)["orderId"]
    engine.drain_events()
    market_sell(engine, "0.010")
    events = engine.drain_events()
    assert event_types(events)[-1] == "ORDER_TRADE_UPDATE:EXPIRED"
    assert (events[-1]["o"]["i"], events[-1]["o"]["er"]) == (order_id, "4")


def test_leverage_caps_the_position_notional_with_2027() -> None:
    engine, _ = make_engine()
    engine.post_leverage({"symbol": "BTCUSDT", "leverage": "100"}, T0)
    # at 100x the brackets allow 600 000 notional; 10.001 x 60000.10 exceeds it
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "10.001"}
    assert refusal(engine.post_order, params)[1:] == (
        -2027,
        "Exceeded the maximum allowable position at current leverage.",
    )
