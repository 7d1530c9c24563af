"""Funding, liquidation, margin calls and countdownCancelAll, all driven by the engine tick."""

from __future__ import annotations

from decimal import Decimal

from procs.paper_exchange.engine.core import Engine
from tests.unit.paper.engine_setup import (
    HOUR_MS,
    T0,
    event_types,
    fixture,
    make_engine,
    market_buy,
    market_sell,
    shape,
)

NEXT_FUNDING = T0 + 8 * HOUR_MS
LATER = T0 + 30 * HOUR_MS  # a "now" after every event of these tests


def wallet(engine: Engine) -> str:
    return str(engine.get_balance({}, LATER)[0]["balance"])


def cross_wallet(engine: Engine) -> str:
    return str(engine.get_balance({}, LATER)[0]["crossWalletBalance"])


def test_a_long_pays_positive_funding_at_each_funding_time_with_a_cross_balance_update() -> None:
    engine, _ = make_engine()
    market_buy(engine, "1.000")
    engine.tick(T0 + 250)
    engine.drain_events()
    engine.tick(NEXT_FUNDING - 250)
    assert engine.drain_events() == []
    engine.tick(NEXT_FUNDING)
    # -1.000 x 60000 x 0.0001
    assert engine.drain_events() == [
        {
            "e": "ACCOUNT_UPDATE",
            "T": NEXT_FUNDING,
            "E": NEXT_FUNDING,
            "a": {
                "m": "FUNDING_FEE",
                "B": [
                    {"a": "USDT", "wb": "9969.99996000", "cw": "9969.99996000", "bc": "-6.00000000"}
                ],
                "P": [],
            },
        },
    ]
    funding = engine.get_income({"incomeType": "FUNDING_FEE"}, LATER)
    assert [(f["symbol"], f["income"], f["time"], f["tradeId"]) for f in funding] == [
        ("BTCUSDT", "-6.00000000", NEXT_FUNDING, "")
    ]


def test_a_short_receives_positive_funding() -> None:
    engine, _ = make_engine()
    market_sell(engine, "1.000")
    engine.tick(T0 + 250)
    engine.tick(NEXT_FUNDING)
    # 10000 - 59999.9 x 0.0004 + 6
    assert wallet(engine) == "9982.00004000"


def test_isolated_funding_settles_in_the_isolated_wallet_and_pushes_that_position() -> None:
    engine, _ = make_engine()
    engine.post_margin_type({"symbol": "BTCUSDT", "marginType": "ISOLATED"}, T0)
    market_buy(engine, "1.000")
    engine.tick(T0 + 250)
    engine.drain_events()
    engine.tick(NEXT_FUNDING)
    (update,) = engine.drain_events()
    assert update["a"]["B"] == [
        {"a": "USDT", "wb": "9969.99996000", "cw": "6975.99496000", "bc": "-6.00000000"}
    ]
    assert [(p["s"], p["iw"], p["mt"]) for p in update["a"]["P"]] == [
        ("BTCUSDT", "2994.00500000", "isolated")
    ]


def test_a_tick_that_jumps_over_several_funding_times_settles_each_one() -> None:
    engine, market = make_engine()
    market_buy(engine, "1.000")
    market.rate["BTCUSDT"] = Decimal("-0.0002")
    engine.tick(T0 + 250)
    engine.tick(T0 + 24 * HOUR_MS + 1)
    funding = engine.get_income({"incomeType": "FUNDING_FEE"}, LATER)
    assert [(f["income"], f["time"]) for f in funding] == [
        ("12.00000000", T0 + 8 * HOUR_MS),
        ("12.00000000", T0 + 16 * HOUR_MS),
        ("12.00000000", T0 + 24 * HOUR_MS),
    ]


def test_funding_is_settled_before_fills_of_the_same_tick_so_event_times_stay_ordered() -> None:
    engine, market = make_engine()
    market_buy(engine, "1.000")
    engine.post_order(
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "1.000",
            "price": "60100.00",
        },
        T0,
    )
    engine.tick(NEXT_FUNDING - 250)
    engine.drain_events()
    market.set("BTCUSDT", "60100.10")
    engine.tick(NEXT_FUNDING + 200)
    events = engine.drain_events()
    assert event_types(events) == [
        "ACCOUNT_UPDATE:FUNDING_FEE",
        "TRADE_LITE",
        "ACCOUNT_UPDATE:ORDER",
        "ORDER_TRADE_UPDATE:TRADE",
    ]
    assert [e["E"] for e in events] == [NEXT_FUNDING] + [NEXT_FUNDING + 200] * 3


def test_the_first_tick_only_starts_the_funding_clock() -> None:
    engine, _ = make_engine()
    market_buy(engine, "1.000")
    engine.tick(NEXT_FUNDING + 1)
    assert engine.get_income({"incomeType": "FUNDING_FEE"}, LATER) == []


def test_cross_liquidation_closes_at_mark_with_autoclose_and_caps_the_loss_at_the_wallet() -> None:
    engine, market = make_engine()
    market_buy(engine, "1.000")  # liquidation price 50225.22617085
    resting = engine.post_order(
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.010",
            "price": "45000.00",
        },
        T0,
    )
    engine.drain_events()
    market.set("BTCUSDT", "50230.00", mark="50230.00")
    engine.tick(T0 + 250)
    assert event_types(engine.drain_events()) == ["MARGIN_CALL"]  # just above liquidation
    market.set("BTCUSDT", "50200.00", mark="50200.00")
    engine.tick(T0 + 500)
    events = engine.drain_events()
    assert event_types(events) == [
        "ORDER_TRADE_UPDATE:CANCELED",
        "ACCOUNT_UPDATE:ORDER",
        "ORDER_TRADE_UPDATE:CALCULATED",
    ]
    assert events[0]["o"]["i"] == resting["orderId"]
    liquidation = events[2]["o"]
    assert liquidation["c"] == f"autoclose-{liquidation['i']}"
    assert (liquidation["o"], liquidation["f"], liquidation["X"], liquidation["R"]) == (
        "LIMIT",
        "IOC",
        "FILLED",
        True,
    )
    assert (liquidation["L"], liquidation["rp"], liquidation["n"]) == (
        "50200.00",
        "-9800.10000000",
        "20.08000000",
    )
    # The 1.2 % clearance fee (602.40) takes only what is left: 9975.99996 - 9800.1 - 20.08
    assert events[1]["a"]["B"][0]["wb"] == "0.00000000"
    assert wallet(engine) == "0.00000000"
    assert engine.get_income({"incomeType": "INSURANCE_CLEAR"}, LATER)[0]["income"] == (
        "-155.81996000"
    )
    assert engine.get_position_risk_v3({}, LATER) == []


def test_cross_liquidation_with_a_configured_clearance_fee_rate() -> None:
    engine, market = make_engine(liquidation_fee_rate=Decimal("0.001"))
    market_buy(engine, "1.000")
    market.set("BTCUSDT", "50200.00")
    engine.tick(T0 + 250)
    # 9975.99996 - 9800.1 - 20.08 - 50.2
    assert wallet(engine) == "105.61996000"
    income = engine.get_income({"symbol": "BTCUSDT"}, LATER)
    assert [(i["incomeType"], i["income"]) for i in income][-3:] == [
        ("REALIZED_PNL", "-9800.10000000"),
        ("COMMISSION", "-20.08000000"),
        ("INSURANCE_CLEAR", "-50.20000000"),
    ]


def test_liquidation_update_matches_the_documented_calculated_event() -> None:
    engine, market = make_engine()
    market_buy(engine, "1.000")
    engine.drain_events()
    market.set("BTCUSDT", "50200.00")
    engine.tick(T0 + 250)
    calculated = engine.drain_events()[-1]
    docs = fixture("nautilus-docs-derived/rs_user_data_json_order_update_calculated.json")
    later = [("pm", "str"), ("gtd", "int"), ("er", "str")]
    assert shape(calculated) == [
        ("e", "str"),
        ("T", "int"),
        ("E", "int"),
        ("o", shape(docs["o"]) + later),
    ]


def test_isolated_liquidation_loses_at_most_the_isolated_wallet() -> None:
    engine, market = make_engine()
    engine.post_margin_type({"symbol": "BTCUSDT", "marginType": "ISOLATED"}, T0)
    market_buy(engine, "1.000")  # isolated wallet 3000.005, liquidation price 57236.27638191
    assert cross_wallet(engine) == "6975.99496000"
    market.set("BTCUSDT", "57200.00")
    engine.tick(T0 + 250)
    assert engine.get_position_risk_v3({}, LATER) == []
    assert wallet(engine) == cross_wallet(engine) == "6975.99496000"


def test_the_insurance_fund_covers_a_gap_beyond_the_isolated_wallet() -> None:
    engine, market = make_engine()
    engine.post_margin_type({"symbol": "BTCUSDT", "marginType": "ISOLATED"}, T0)
    market_buy(engine, "1.000")
    market.set("BTCUSDT", "50000.00")
    engine.tick(T0 + 250)
    assert wallet(engine) == "6975.99496000"
    # 3000.005 - 10000.1 - 20 = -7020.095 returned by the insurance fund
    assert engine.get_income({"incomeType": "INSURANCE_CLEAR"}, LATER)[0]["income"] == (
        "7020.09500000"
    )


def test_margin_call_is_sent_once_when_maintenance_reaches_80_percent_of_margin() -> None:
    engine, market = make_engine()
    market_buy(engine, "1.000")
    engine.drain_events()
    market.set("BTCUSDT", "50260.00")
    engine.tick(T0 + 250)
    # maintenance 50260 x 0.005 - 50 = 201.3; margin 9975.99996 - 9740.1 = 235.89996
    assert engine.drain_events() == [
        {
            "e": "MARGIN_CALL",
            "E": T0 + 250,
            "cw": "9975.99996000",
            "p": [
                {
                    "s": "BTCUSDT",
                    "ps": "BOTH",
                    "pa": "1",
                    "mt": "CROSSED",
                    "iw": "0.00000000",
                    "mp": "50260.00000000",
                    "up": "-9740.10000000",
                    "mm": "201.30000000",
                }
            ],
        },
    ]
    engine.tick(T0 + 500)
    assert engine.drain_events() == []
    market.set("BTCUSDT", "55000.00")
    engine.tick(T0 + 750)
    market.set("BTCUSDT", "50260.00")
    engine.tick(T0 + 1000)
    assert event_types(engine.drain_events()) == ["MARGIN_CALL"]


def arm_countdown(engine: Engine) -> None:
    market_buy(engine, "0.010")
    engine.post_order(
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.010",
            "price": "59000.00",
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
        },
        T0,
    )
    reply = engine.post_countdown_cancel_all({"symbol": "BTCUSDT", "countdownTime": "10000"}, T0)
    assert reply == {"symbol": "BTCUSDT", "countdownTime": "10000"}
    engine.drain_events()


def test_countdown_cancels_open_orders_but_not_algo_orders_or_positions_by_default() -> None:
    engine, _ = make_engine()
    arm_countdown(engine)
    engine.tick(T0 + 9999)
    assert engine.drain_events() == []
    engine.tick(T0 + 10000)
    assert event_types(engine.drain_events()) == ["ORDER_TRADE_UPDATE:CANCELED"]
    assert engine.get_open_orders({}, LATER) == []
    assert len(engine.get_open_algo_orders({}, LATER)) == 1
    assert engine.get_position_risk_v3({}, LATER)[0]["positionAmt"] == "0.010"
    engine.tick(T0 + 20000)
    assert engine.drain_events() == []  # the timer fired once


def test_countdown_also_cancels_algo_orders_when_configured() -> None:
    engine, _ = make_engine(countdown_cancels_algo=True)
    arm_countdown(engine)
    engine.tick(T0 + 10000)
    assert event_types(engine.drain_events()) == [
        "ORDER_TRADE_UPDATE:CANCELED",
        "ALGO_UPDATE:CANCELED",
    ]


def test_countdown_heartbeats_push_the_deadline_and_zero_disarms_it() -> None:
    engine, _ = make_engine()
    arm_countdown(engine)
    engine.post_countdown_cancel_all({"symbol": "BTCUSDT", "countdownTime": "10000"}, T0 + 5000)
    engine.tick(T0 + 10000)
    assert engine.drain_events() == []
    reply = engine.post_countdown_cancel_all({"symbol": "BTCUSDT", "countdownTime": "0"}, T0 + 6000)
    assert reply["countdownTime"] == "0"
    engine.tick(T0 + 60000)
    assert engine.drain_events() == []
