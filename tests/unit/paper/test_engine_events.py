"""User-data events compared field by field with the captured fixtures: keys, order, JSON types."""

from __future__ import annotations

from typing import Any

from tests.unit.paper.engine_setup import (
    T0,
    event_types,
    fixture,
    make_engine,
    market_buy,
    shape,
)

# §6.5 lists pm, gtd and er after V; the docs-derived fixtures predate them.
LATER_ORDER_KEYS = [("pm", "str"), ("gtd", "int"), ("er", "str")]


def order_shape(name: str, *, drop: tuple[str, ...] = ()) -> list[Any]:
    event = fixture(f"nautilus-docs-derived/{name}")
    body = [(k, s) for k, s in shape(event["o"]) if k not in drop] + LATER_ORDER_KEYS
    return [("e", "str"), ("T", "int"), ("E", "int"), ("o", body)]


def by_type(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(e for e in events if event_types([e])[0] == name)


def stop_scenario() -> list[dict[str, Any]]:
    engine, market = make_engine()
    market_buy(engine, "0.010")
    engine.post_algo_order(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "triggerPrice": "59000.00",
            "closePosition": "true",
        },
        T0,
    )
    market.set("BTCUSDT", "58990.00")
    engine.tick(T0 + 250)
    return engine.drain_events()


def test_order_update_new_matches_the_documented_shape_without_commission() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.010")
    new = by_type(engine.drain_events(), "ORDER_TRADE_UPDATE:NEW")
    # N and n are omitted when there is no commission (§6.5), unlike the docs example.
    assert shape(new) == order_shape("rs_user_data_json_order_update_new.json", drop=("N", "n"))
    assert (new["o"]["l"], new["o"]["z"], new["o"]["L"], new["o"]["ap"]) == ("0", "0", "0", "0")


def test_order_update_trade_matches_the_documented_shape() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.010")
    trade = by_type(engine.drain_events(), "ORDER_TRADE_UPDATE:TRADE")
    assert shape(trade) == order_shape("rs_user_data_json_order_update_trade.json")
    assert trade["E"] >= trade["T"]


def test_partially_filled_update_matches_the_documented_shape() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.010")
    engine.drain_events()
    engine.post_order(
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "MARKET",
            "quantity": "0.020",
            "reduceOnly": "true",
        },
        T0,
    )
    trade = by_type(engine.drain_events(), "ORDER_TRADE_UPDATE:TRADE")
    assert trade["o"]["X"] == "PARTIALLY_FILLED"
    assert shape(trade) == order_shape("rs_user_data_json_order_update_trade_partial.json")


def test_trade_lite_matches_the_real_capture() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.010")
    lite = by_type(engine.drain_events(), "TRADE_LITE")
    assert shape(lite) == shape(fixture("nautilus-real/ws_futures_trade_lite.json"))
    assert (lite["l"], lite["L"], lite["S"], lite["m"]) == ("0.010", "60000.10", "BUY", False)


def test_account_update_matches_the_documented_shape() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.010")
    update = by_type(engine.drain_events(), "ACCOUNT_UPDATE:ORDER")
    docs = fixture("nautilus-docs-derived/rs_user_data_json_account_update.json")
    assert shape(update) == shape(docs)
    assert update["a"]["P"][0]["mt"] == "cross"  # lower case on this event (§4)


def test_algo_update_lifecycle_matches_the_real_captures() -> None:
    events = stop_scenario()
    for status, name in [
        ("TRIGGERING", "ws_futures_algo_update_triggering.json"),
        ("TRIGGERED", "ws_futures_algo_update_triggered.json"),
        ("FINISHED", "ws_futures_algo_update_finished.json"),
    ]:
        event = by_type(events, f"ALGO_UPDATE:{status}")
        assert shape(event) == shape(fixture(f"nautilus-real/{name}")), status
        assert event["E"] >= event["T"]


def test_algo_update_finished_without_fill_matches_the_real_capture() -> None:
    engine, market = make_engine()
    engine.post_algo_order(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "triggerPrice": "59000.00",
            "closePosition": "true",
        },
        T0,
    )
    market.set("BTCUSDT", "58990.00")
    engine.tick(T0 + 250)
    finished = by_type(engine.drain_events(), "ALGO_UPDATE:FINISHED")
    real = fixture("nautilus-real/ws_futures_algo_update_finished_canceled.json")
    assert shape(finished) == shape(real)
    assert (finished["o"]["aq"], finished["o"]["ap"]) == (real["o"]["aq"], real["o"]["ap"])


def test_algo_update_new_and_canceled_match_the_documented_shape_without_a_reason() -> None:
    engine, _ = make_engine()
    placed = engine.post_algo_order(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "TAKE_PROFIT",
            "quantity": "0.010",
            "price": "61000.00",
            "triggerPrice": "61000.00",
            "reduceOnly": "true",
        },
        T0,
    )
    engine.delete_algo_order({"algoId": str(placed["algoId"])}, T0)
    new, canceled = engine.drain_events()
    for event, name in [
        (new, "rs_user_data_json_algo_update_new.json"),
        (canceled, "rs_user_data_json_algo_update_canceled.json"),
    ]:
        docs = fixture(f"nautilus-docs-derived/{name}")
        # `rm` carries a failure reason; a plain NEW or CANCELED has none.
        expected = [(k, s) for k, s in shape(docs["o"]) if k != "rm"]
        assert shape(event) == [("e", "str"), ("T", "int"), ("E", "int"), ("o", expected)]
    assert (new["o"]["X"], canceled["o"]["X"], new["o"]["tp"], new["o"]["p"]) == (
        "NEW",
        "CANCELED",
        "61000",
        "61000",
    )


def test_leverage_change_emits_account_config_update() -> None:
    engine, _ = make_engine()
    engine.post_leverage({"symbol": "BTCUSDT", "leverage": "25"}, T0)
    assert engine.drain_events() == [
        {"e": "ACCOUNT_CONFIG_UPDATE", "E": T0, "T": T0, "ac": {"s": "BTCUSDT", "l": 25}}
    ]


def test_event_times_never_precede_transaction_times() -> None:
    events = stop_scenario()
    assert all(e["E"] >= e.get("T", e["E"]) for e in events)
    assert [e["E"] for e in events] == sorted(e["E"] for e in events)
