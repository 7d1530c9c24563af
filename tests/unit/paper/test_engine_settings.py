"""Leverage, margin type, position mode and the configuration endpoints; the route table."""

from __future__ import annotations

from typing import Any

import pytest

from procs.paper_exchange.engine.core import ApiError
from tests.unit.paper.engine_setup import T0, event_types, fixture, make_engine, market_buy, shape


def refusal(call: Any, params: dict[str, str]) -> tuple[int, int, str]:
    with pytest.raises(ApiError) as e:
        call(params, T0)
    return e.value.http_status, e.value.code, e.value.msg


def test_leverage_reply_has_an_int_leverage_and_the_bracket_notional_cap() -> None:
    engine, _ = make_engine()
    assert engine.post_leverage({"symbol": "BTCUSDT", "leverage": "100"}, T0) == {
        "leverage": 100,
        "maxNotionalValue": "600000",
        "symbol": "BTCUSDT",
    }
    assert engine.get_position_risk_v2({"symbol": "BTCUSDT"}, T0)[0]["leverage"] == "100"


@pytest.mark.parametrize("leverage", ["0", "126", "-5"])
def test_leverage_outside_the_brackets_is_4028(leverage: str) -> None:
    engine, _ = make_engine()
    assert refusal(engine.post_leverage, {"symbol": "BTCUSDT", "leverage": leverage}) == (
        400,
        -4028,
        f"Leverage {leverage} is not valid",
    )


def test_raising_leverage_beyond_what_the_position_notional_allows_is_2027() -> None:
    engine, _ = make_engine()
    market_buy(engine, "1.000")  # 60000 notional, above the 125x cap of 50000
    assert refusal(engine.post_leverage, {"symbol": "BTCUSDT", "leverage": "125"})[1] == -2027
    assert engine.post_leverage({"symbol": "BTCUSDT", "leverage": "100"}, T0)["leverage"] == 100


def test_lowering_leverage_needs_the_extra_margin_to_be_available() -> None:
    engine, _ = make_engine()
    market_buy(engine, "3.000")  # 180000 notional at 20x: 9000 margin of a 9928 wallet
    assert refusal(engine.post_leverage, {"symbol": "BTCUSDT", "leverage": "10"}) == (
        400,
        -2028,
        "Leverage is smaller than permitted: insufficient margin balance.",
    )


def test_margin_type_changes_once_and_refuses_repeats_open_orders_and_positions() -> None:
    engine, _ = make_engine()
    params = {"symbol": "BTCUSDT", "marginType": "ISOLATED"}
    assert engine.post_margin_type(params, T0) == {"code": 200, "msg": "success"}
    assert event_types(engine.drain_events()) == ["ACCOUNT_UPDATE:MARGIN_TYPE_CHANGE"]
    assert refusal(engine.post_margin_type, params) == (
        400,
        -4046,
        "No need to change margin type.",
    )
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
    crossed = {"symbol": "BTCUSDT", "marginType": "CROSSED"}
    assert refusal(engine.post_margin_type, crossed)[1:] == (
        -4047,
        "Margin type cannot be changed if there exists open orders.",
    )
    engine.delete_all_open_orders({"symbol": "BTCUSDT"}, T0)
    market_buy(engine, "0.010")
    assert refusal(engine.post_margin_type, crossed)[1:] == (
        -4048,
        "Margin type cannot be changed if there exists position.",
    )
    assert (
        refusal(engine.post_margin_type, {"symbol": "BTCUSDT", "marginType": "HEDGED"})[1] == -1130
    )


def test_position_mode_is_one_way_by_default_and_unchanged_is_4059() -> None:
    engine, _ = make_engine()
    assert engine.get_position_side_dual({}, T0) == {"dualSidePosition": False}
    assert shape(engine.get_position_side_dual({}, T0)) == shape(
        fixture("nautilus-docs-derived/http_futures_account_position_side_dual.json")
    )
    assert refusal(engine.post_position_side_dual, {"dualSidePosition": "false"}) == (
        400,
        -4059,
        "No need to change position side.",
    )
    assert refusal(engine.post_position_side_dual, {})[1] == -1102


def test_hedge_mode_is_held_and_every_order_in_it_is_4061() -> None:
    engine, _ = make_engine()
    ok = engine.post_position_side_dual({"dualSidePosition": "true"}, T0)
    assert ok == {"code": 200, "msg": "success"}
    assert engine.get_position_side_dual({}, T0) == {"dualSidePosition": True}
    assert engine.get_account_config({}, T0)["dualSidePosition"] is True
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"}
    assert refusal(engine.post_order, order)[1] == -4061
    assert refusal(engine.post_order, {**order, "positionSide": "LONG"})[1] == -4061
    engine.post_position_side_dual({"dualSidePosition": "false"}, T0)
    assert engine.get_position_side_dual({}, T0) == {"dualSidePosition": False}


def test_position_mode_cannot_change_with_a_position_4068() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.01")
    assert refusal(engine.post_position_side_dual, {"dualSidePosition": "true"}) == (
        400,
        -4068,
        "Position side cannot be changed if there exists position.",
    )


def test_symbol_config_has_the_documented_shape() -> None:
    engine, _ = make_engine()
    engine.post_margin_type({"symbol": "ETHUSDT", "marginType": "ISOLATED"}, T0)
    configs = engine.get_symbol_config({}, T0)
    assert shape(configs) == shape(
        fixture("nautilus-docs-derived/http_futures_account_symbol_config.json")
    )
    assert configs == [
        {
            "symbol": "BTCUSDT",
            "marginType": "CROSSED",
            "isAutoAddMargin": False,
            "leverage": 20,
            "maxNotionalValue": "3000000",
        },
        {
            "symbol": "ETHUSDT",
            "marginType": "ISOLATED",
            "isAutoAddMargin": False,
            "leverage": 20,
            "maxNotionalValue": "250000",
        },
    ]
    assert [c["symbol"] for c in engine.get_symbol_config({"symbol": "ETHUSDT"}, T0)] == ["ETHUSDT"]


def test_account_config_multi_assets_commission_and_order_rate_limits() -> None:
    engine, _ = make_engine(order_limit_10s=50)
    assert engine.get_account_config({}, T0) == {
        "feeTier": 0,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "dualSidePosition": False,
        "updateTime": 0,
        "multiAssetsMargin": False,
        "tradeGroupId": -1,
    }
    assert engine.get_multi_assets_margin({}, T0) == {"multiAssetsMargin": False}
    assert engine.get_commission_rate({"symbol": "BTCUSDT"}, T0) == {
        "symbol": "BTCUSDT",
        "makerCommissionRate": "0.0002",
        "takerCommissionRate": "0.0004",
        "rpiCommissionRate": "0.00005",
    }
    assert engine.get_order_rate_limit({}, T0) == [
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    ]


def test_routes_cover_every_signed_endpoint_with_a_callable() -> None:
    engine, _ = make_engine()
    routes = engine.routes()
    assert len(routes) == 33
    for (method, path), handler in routes.items():
        assert method in ("GET", "POST", "DELETE") and path.startswith("/fapi/v")
        assert callable(handler)
    assert routes[("GET", "/fapi/v1/accountConfig")]({}, T0)["canTrade"] is True
    assert routes[("GET", "/fapi/v3/balance")]({}, T0) == routes[("GET", "/fapi/v2/balance")](
        {}, T0
    )


def test_a_symbol_without_brackets_is_a_construction_error() -> None:
    from procs.paper_exchange.engine.core import Engine, EngineConfig
    from tests.unit.paper.engine_setup import FakeMarket, real_specs

    with pytest.raises(ValueError, match="ETHUSDT"):
        Engine(real_specs(), {"BTCUSDT": []}, FakeMarket(), EngineConfig())
