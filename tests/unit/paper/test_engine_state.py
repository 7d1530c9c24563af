"""State round trip through JSON, id continuity, history pruning, and batch orders."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

import pytest

from procs.paper_exchange.engine.core import ApiError, Engine
from tests.unit.paper.engine_setup import (
    HOUR_MS,
    T0,
    FakeMarket,
    event_types,
    make_engine,
    market_buy,
)

DAY_MS = 24 * HOUR_MS


def busy_account() -> tuple[Engine, FakeMarket]:
    """An account mid-scenario: positions on both margin types, a resting order, a trailing stop,
    a protective stop, a countdown timer, one undrained event."""
    engine, market = make_engine()
    engine.post_margin_type({"symbol": "ETHUSDT", "marginType": "ISOLATED"}, T0)
    engine.post_leverage({"symbol": "ETHUSDT", "leverage": "10"}, T0)
    market_buy(engine, "0.500", symbol="ETHUSDT")
    market_buy(engine, "0.010")
    engine.post_order(
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.010",
            "price": "59000.00",
            "newClientOrderId": "dip",
        },
        T0,
    )
    engine.post_algo_order(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "triggerPrice": "58000.00",
            "closePosition": "true",
            "workingType": "MARK_PRICE",
        },
        T0,
    )
    engine.post_algo_order(
        {
            "algoType": "CONDITIONAL",
            "symbol": "ETHUSDT",
            "side": "SELL",
            "type": "TRAILING_STOP_MARKET",
            "quantity": "0.500",
            "callbackRate": "2",
            "reduceOnly": "true",
        },
        T0,
    )
    engine.post_countdown_cancel_all({"symbol": "BTCUSDT", "countdownTime": "60000"}, T0)
    engine.tick(T0 + 250)
    market.set("ETHUSDT", "3100.00", bid="3099.99", ask="3100.01")
    engine.tick(T0 + 500)
    engine.drain_events()
    engine.post_leverage({"symbol": "BTCUSDT", "leverage": "30"}, T0 + 600)  # left undrained
    return engine, market


def continue_scenario(engine: Engine, market: FakeMarket) -> list[Any]:
    """Drive the account on: a fill, funding, the countdown, a trailing trigger, new ids."""
    out: list[Any] = [engine.drain_events()]
    market.set("BTCUSDT", "58999.90", bid="58999.80", ask="59000.00")
    market.set("ETHUSDT", "3038.00", bid="3037.99", ask="3038.01")  # 3100 x 0.98
    for step in range(1, 5):
        engine.tick(T0 + 8 * HOUR_MS * step)
        out.append(engine.drain_events())
    out.append(market_buy(engine, "0.010", T0 + 40 * HOUR_MS))
    out.append(engine.get_account_v2({}, T0 + 40 * HOUR_MS))
    out.append(engine.get_income({"limit": "1000"}, T0 + 40 * HOUR_MS))
    out.append(engine.get_all_orders({}, T0 + 40 * HOUR_MS))
    out.append(engine.get_all_algo_orders({"symbol": "ETHUSDT"}, T0 + 40 * HOUR_MS))
    out.append(engine.drain_events())
    return out


def test_state_survives_a_json_round_trip_and_the_restored_engine_behaves_identically() -> None:
    engine, market = busy_account()
    state = engine.to_state()
    restored_state = json.loads(json.dumps(state))
    twin_market = FakeMarket()
    twin_market.last, twin_market.mark = dict(market.last), dict(market.mark)
    twin_market.bid, twin_market.ask = dict(market.bid), dict(market.ask)
    twin, _ = make_engine(market=twin_market, state=restored_state)
    assert twin.to_state() == state
    original = continue_scenario(engine, market)
    copy = continue_scenario(twin, twin_market)
    assert copy == original
    assert event_types(original[0]) == ["ACCOUNT_CONFIG_UPDATE"]
    assert any(event_types(batch).count("ACCOUNT_UPDATE:FUNDING_FEE") for batch in original[1:5])


def test_state_is_plain_json_with_decimals_as_exact_strings() -> None:
    engine, _ = busy_account()
    state = engine.to_state()
    assert json.loads(json.dumps(state)) == state
    btc = next(p for p in state["positions"] if p["symbol"] == "BTCUSDT")
    assert (btc["amount"], btc["entry_price"]) == ("0.010", "60000.10")


def test_ids_keep_increasing_across_a_restore() -> None:
    engine, _ = make_engine()
    first = market_buy(engine, "0.010")
    twin, _ = make_engine(state=json.loads(json.dumps(engine.to_state())))
    second = market_buy(twin, "0.010")
    assert second["orderId"] == first["orderId"] + 1
    trades = twin.get_user_trades({"symbol": "BTCUSDT"}, T0)
    assert [t["id"] for t in trades] == [trades[0]["id"], trades[0]["id"] + 1]


def test_a_state_of_another_version_is_refused() -> None:
    engine, _ = make_engine()
    state = engine.to_state()
    with pytest.raises(ValueError, match="version"):
        make_engine(state={**state, "version": 99})


def test_unfilled_canceled_orders_are_forgotten_after_three_days_filled_ones_kept() -> None:
    engine, _ = make_engine()
    filled = market_buy(engine, "0.010")["orderId"]
    canceled = engine.post_order(
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.010",
            "price": "59000.00",
        },
        T0,
    )["orderId"]
    engine.delete_order({"symbol": "BTCUSDT", "orderId": str(canceled)}, T0)
    engine.tick(T0 + 3 * DAY_MS + 1)
    remaining = engine.get_all_orders({"symbol": "BTCUSDT"}, T0 + 3 * DAY_MS + 1)
    assert [o["orderId"] for o in remaining] == [filled]


BATCH = [
    {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": 0.010,
        "price": 59000,
        "newClientOrderId": "b1",
    },
    {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "MARKET",
        "quantity": "0.010",
        "reduceOnly": True,
    },
    {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "STOP_MARKET",
        "quantity": "0.010",
        "stopPrice": "61000",
    },
    {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "MARKET",
        "quantity": "0.010",
        "newOrderRespType": "RESULT",
    },
]


def test_batch_orders_answer_each_item_in_place_with_orders_or_errors() -> None:
    engine, _ = make_engine()
    replies = engine.post_batch_orders({"batchOrders": json.dumps(BATCH)}, T0)
    assert [r.get("status") or r["code"] for r in replies] == ["NEW", -2022, -4120, "FILLED"]
    assert replies[1] == {"code": -2022, "msg": "ReduceOnly Order is rejected."}
    assert (replies[0]["price"], replies[0]["origQty"]) == ("59000.00", "0.010")


def test_batch_orders_accept_the_connector_encoding_with_unquoted_numbers() -> None:
    engine, _ = make_engine()
    # binance-futures-connector: `batchOrders=%5B%7B%22symbol%22%3A+%22BTCUSDT%22%2C+...` (§2.1)
    raw = quote_plus(json.dumps(BATCH[:1]))
    assert raw.startswith("%5B%7B%22symbol%22%3A+%22BTCUSDT%22%2C+")
    replies = engine.post_batch_orders({"batchOrders": raw}, T0)
    assert replies[0]["status"] == "NEW"


def test_batch_orders_need_one_to_five_items() -> None:
    engine, _ = make_engine()
    for items in ([], BATCH[:1] * 6):
        with pytest.raises(ApiError) as e:
            engine.post_batch_orders({"batchOrders": json.dumps(items)}, T0)
        assert (e.value.code, e.value.msg) == (-4082, "Invalid number of batch place orders.")
    with pytest.raises(ApiError) as e:
        engine.post_batch_orders({"batchOrders": "[{"}, T0)
    assert e.value.code == -1130


@pytest.mark.parametrize(
    ("name", "use_ids"),
    [
        ("orderIdList", True),
        ("orderidlist", True),
        ("origClientOrderIdList", False),
        ("origclientorderidlist", False),
    ],
)
def test_batch_cancel_accepts_both_list_spellings_and_reports_unknown_orders(
    name: str, use_ids: bool
) -> None:
    engine, _ = make_engine()
    placed = engine.post_batch_orders({"batchOrders": json.dumps(BATCH[:1])}, T0)[0]
    keys: list[Any] = [placed["orderId"], 1] if use_ids else ["b1", "nope"]
    replies = engine.delete_batch_orders({"symbol": "BTCUSDT", name: json.dumps(keys)}, T0)
    assert replies[0]["status"] == "CANCELED"
    assert replies[1] == {"code": -2011, "msg": "Unknown order sent."}
