"""Positions, PnL, fees, margin, and the account, balance, positionRisk, trades, income replies."""

from __future__ import annotations

from typing import Any

from procs.paper_exchange.engine.core import Engine
from tests.unit.paper.engine_setup import (
    T0,
    event_types,
    fixture,
    make_engine,
    market_buy,
    market_sell,
    shape,
)

CCXT = {
    e["endpoint_inferred"]: e["httpResponse"]
    for e in fixture("ccxt-extracted/ccxt_binance_linear_httpResponses.json")["entries"]
}


def position(engine: Engine, symbol: str = "BTCUSDT") -> dict[str, Any]:
    rows: list[dict[str, Any]] = engine.get_position_risk_v3({"symbol": symbol}, T0)
    assert len(rows) == 1
    return rows[0]


def keys(value: dict[str, Any]) -> list[str]:
    return list(value)


def test_increase_averages_the_entry_price_and_a_partial_close_realizes_pnl() -> None:
    engine, market = make_engine()
    market_buy(engine, "0.010")  # at 60000.10
    market.set("BTCUSDT", "61000.00", bid="60999.90", ask="61000.10")
    market_buy(engine, "0.010")  # at 61000.10
    assert position(engine)["entryPrice"] == "60500.1"
    market.set("BTCUSDT", "62000.00", bid="61999.90", ask="62000.10")
    engine.drain_events()
    market_sell(engine, "0.005")  # 0.005 x (61999.90 - 60500.10) = 7.499
    events = engine.drain_events()
    assert events[-1]["o"]["rp"] == "7.49900000"
    assert events[2]["a"]["P"][0]["cr"] == "7.49900000"
    row = position(engine)
    assert (row["positionAmt"], row["entryPrice"]) == ("0.015", "60500.1")
    trades = engine.get_user_trades({"symbol": "BTCUSDT"}, T0)
    assert [t["realizedPnl"] for t in trades] == ["0", "0", "7.49900000"]
    assert [t["commission"] for t in trades] == ["0.24000040", "0.24400040", "0.12399980"]


def test_an_average_entry_price_is_written_with_at_most_eight_decimals() -> None:
    engine, market = make_engine()
    market_buy(engine, "0.001")  # at 60000.10
    market.set("BTCUSDT", "61000.00", bid="60999.90", ask="61000.10")
    market_buy(engine, "0.002")  # (60.0001 + 122.0002) / 0.003 = 60666.7666...
    assert position(engine)["entryPrice"] == "60666.76666667"


def test_a_sell_larger_than_the_long_closes_it_and_opens_a_short_at_the_fill_price() -> None:
    engine, market = make_engine()
    market_buy(engine, "0.010")
    market.set("BTCUSDT", "61000.00", bid="60999.90", ask="61000.10")
    market_buy(engine, "0.010")
    market.set("BTCUSDT", "62000.00", bid="61999.90", ask="62000.10")
    market_sell(engine, "0.005")
    market_sell(engine, "0.035")  # closes 0.015 (+22.497), opens 0.020 short at 61999.90
    market.set("BTCUSDT", "61000.00")
    row = position(engine)
    assert (row["positionAmt"], row["entryPrice"], row["unRealizedProfit"]) == (
        "-0.020",
        "61999.9",
        "19.99800000",  # -0.020 x (61000 - 61999.9)
    )
    assert row["breakEvenPrice"] == "61975.10004"  # 61999.9 x (1 - 0.0004)
    # 10000 - 0.2400004 - 0.2440004 + 7.499 - 0.1239998 + 22.497 - 0.8679986
    assert engine.get_balance({}, T0)[0]["balance"] == "10028.52000080"
    income = engine.get_income({"incomeType": "REALIZED_PNL"}, T0)
    assert [i["income"] for i in income] == ["7.49900000", "22.49700000"]


def test_closing_the_position_reports_a_zero_row_in_account_update() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.010")
    engine.drain_events()
    market_sell(engine, "0.010")
    update = engine.drain_events()[2]
    assert update["a"]["P"] == [
        {
            "s": "BTCUSDT",
            "pa": "0",
            "ep": "0.00000",
            "bep": "0",
            "cr": "-0.00200000",
            "up": "0",
            "mt": "cross",
            "iw": "0.00000000",
            "ps": "BOTH",
        }
    ]
    assert update["a"]["B"] == [
        {"a": "USDT", "wb": "9999.51800000", "cw": "9999.51800000", "bc": "0"}
    ]


def test_position_risk_values_a_cross_long_at_mark_with_bracket_margins() -> None:
    engine, market = make_engine()
    market_buy(engine, "1.000")
    market.set("BTCUSDT", "61000.00")
    row = position(engine)
    # notional 61000 is in bracket 2: maintenance 61000 x 0.005 - 50 = 255
    assert row["markPrice"] == "61000.00000000"
    assert row["unRealizedProfit"] == "999.90000000"
    assert row["notional"] == "61000.00000000"
    assert row["initialMargin"] == "3050.00000000"
    assert row["maintMargin"] == "255.00000000"
    # LP = (9975.99996 + 50 - 60000.1) / (0.005 - 1)
    assert row["liquidationPrice"] == "50225.22617085"
    account = engine.get_account_v3({}, T0)
    assert account["totalWalletBalance"] == "9975.99996000"
    assert account["totalUnrealizedProfit"] == "999.90000000"
    assert account["totalMarginBalance"] == "10975.89996000"
    assert account["totalMaintMargin"] == "255.00000000"
    assert account["availableBalance"] == "7925.89996000"  # 9975.99996 + 999.9 - 3050
    assert account["maxWithdrawAmount"] == "6925.99996000"  # 9975.99996 - 3050


def test_short_liquidation_price_uses_the_short_side_of_the_formula() -> None:
    engine, _ = make_engine()
    market_sell(engine, "1.000")
    # LP = (9976.00004 + 50 + 59999.9) / (0.005 + 1)
    assert position(engine)["liquidationPrice"] == "69677.51247761"


def test_isolated_position_moves_its_margin_out_of_the_cross_wallet() -> None:
    engine, _ = make_engine()
    engine.post_margin_type({"symbol": "BTCUSDT", "marginType": "ISOLATED"}, T0)
    engine.drain_events()
    market_buy(engine, "1.000")
    update = engine.drain_events()[2]
    assert update["a"]["B"][0]["wb"] == "9975.99996000"
    assert update["a"]["B"][0]["cw"] == "6975.99496000"  # minus 60000.10 / 20
    assert (update["a"]["P"][0]["mt"], update["a"]["P"][0]["iw"]) == ("isolated", "3000.00500000")
    v2 = engine.get_position_risk_v2({"symbol": "BTCUSDT"}, T0)[0]
    assert v2["marginType"] == "isolated"
    assert v2["isolatedWallet"] == "3000.00500000"
    assert v2["isolatedMargin"] == "2999.90500000"  # wallet + unrealized -0.1
    # LP = (3000.005 + 50 - 60000.1) / (0.005 - 1)
    assert v2["liquidationPrice"] == "57236.27638191"
    market_sell(engine, "0.500")
    assert position(engine)["isolatedWallet"] == "1500.00250000"


def test_open_orders_reserve_margin_that_reduce_only_orders_do_not() -> None:
    engine, _ = make_engine()
    engine.post_order(
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "1.000",
            "price": "50000.00",
        },
        T0,
    )
    account = engine.get_account_v2({}, T0)
    assert account["totalOpenOrderInitialMargin"] == "2500.00000000"  # 50000 / 20
    assert account["availableBalance"] == "7500.00000000"
    btc = next(p for p in account["positions"] if p["symbol"] == "BTCUSDT")
    assert (btc["bidNotional"], btc["openOrderInitialMargin"]) == ("50000", "2500.00000000")


def test_account_v2_has_the_real_reply_shape() -> None:
    engine, _ = make_engine()
    account = engine.get_account_v2({}, T0)
    real = CCXT["GET /fapi/v2/account"]
    assert keys(account) == keys(real)
    # Key order from the real capture, JSON types from the docs example (ccxt's harness
    # stringifies ints in its captures).
    docs_asset = fixture("nautilus-docs-derived/rs_http_json_account_info_v2.json")["assets"][0]
    assert keys(account["assets"][0]) == keys(real["assets"][0])
    assert {k: type(v) for k, v in account["assets"][0].items()} == {
        k: type(v) for k, v in docs_asset.items()
    }
    docs = fixture("nautilus-docs-derived/rs_http_json_account_info_v2.json")
    assert [shape(p) for p in account["positions"]] == [shape(docs["positions"][0])] * 2
    assert [(k, type(account[k])) for k in ("feeTier", "tradeGroupId", "updateTime")] == [
        ("feeTier", int),
        ("tradeGroupId", int),
        ("updateTime", int),
    ]
    assert account["totalWalletBalance"] == "10000.00000000"
    assert account["positions"][0]["leverage"] == "20"


def test_account_v3_has_the_real_reply_shape_and_lists_only_active_symbols() -> None:
    engine, _ = make_engine()
    assert engine.get_account_v3({}, T0)["positions"] == []
    market_buy(engine, "0.010")
    account = engine.get_account_v3({}, T0)
    real = CCXT["GET /fapi/v3/account"]
    assert keys(account) == keys(real)
    real_usdt = next(a for a in real["assets"] if a["asset"] == "USDT")
    assert keys(account["assets"][0]) == keys(real_usdt)
    assert keys(account["positions"][0]) == keys(real["positions"][0])
    assert [p["symbol"] for p in account["positions"]] == ["BTCUSDT"]


def test_position_risk_v3_has_the_real_reply_shape() -> None:
    engine, _ = make_engine()
    assert engine.get_position_risk_v3({}, T0) == []
    market_buy(engine, "0.010")
    row = position(engine)
    real = CCXT["GET /fapi/v3/positionRisk"][0]
    assert keys(row) == keys(real)
    assert isinstance(row["adl"], int) and isinstance(row["updateTime"], int)
    assert all(isinstance(v, str) for k, v in row.items() if k not in ("adl", "updateTime"))


def test_position_risk_v2_lists_every_symbol_with_the_documented_fields() -> None:
    engine, _ = make_engine()
    rows = engine.get_position_risk_v2({}, T0)
    assert [r["symbol"] for r in rows] == ["BTCUSDT", "ETHUSDT"]
    docs = fixture("nautilus-docs-derived/rs_http_json_position_risk.json")[0]
    assert sorted(rows[0]) == sorted(docs)
    assert {k: type(v) for k, v in rows[0].items()} == {k: type(v) for k, v in docs.items()}
    assert (rows[0]["positionAmt"], rows[0]["entryPrice"], rows[0]["liquidationPrice"]) == (
        "0.000",
        "0.00000",
        "0",
    )


def test_balance_has_the_documented_shape() -> None:
    engine, _ = make_engine()
    balance = engine.get_balance({}, T0)
    assert shape(balance) == shape(fixture("nautilus-docs-derived/rs_http_json_balance.json"))
    assert balance[0]["balance"] == "10000.00000000"


def test_user_trades_have_the_real_reply_shape() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.010")
    market_sell(engine, "0.010", T0 + 1000)
    trades = engine.get_user_trades({"symbol": "BTCUSDT"}, T0 + 2000)
    assert shape(trades) == shape(fixture("nautilus-real/http_futures_account_trades.json"))
    assert [(t["side"], t["buyer"], t["price"], t["quoteQty"]) for t in trades] == [
        ("BUY", True, "60000.10", "600.00100"),
        ("SELL", False, "59999.90", "599.99900"),
    ]
    assert engine.get_user_trades({"symbol": "BTCUSDT", "fromId": str(trades[1]["id"])}, T0) == [
        trades[1]
    ]
    assert engine.get_user_trades({"symbol": "ETHUSDT"}, T0) == []


def test_income_starts_with_the_deposit_and_records_fees_and_pnl_with_trade_ids() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.010")
    market_sell(engine, "0.010", T0 + 1000)
    income = engine.get_income({}, T0 + 2000)
    assert [(i["incomeType"], i["income"], i["symbol"]) for i in income] == [
        ("TRANSFER", "10000.00000000", ""),
        ("COMMISSION", "-0.24000040", "BTCUSDT"),
        ("REALIZED_PNL", "-0.00200000", "BTCUSDT"),
        ("COMMISSION", "-0.23999960", "BTCUSDT"),
    ]
    assert income[0]["tradeId"] == "" and income[1]["tradeId"].isdigit()
    assert [i["tranId"] for i in income] == sorted(i["tranId"] for i in income)
    assert (
        engine.get_income({"incomeType": "COMMISSION", "limit": "1", "page": "2"}, T0 + 2000)[0][
            "income"
        ]
        == "-0.23999960"
    )
    assert engine.get_income({"startTime": str(T0 + 500)}, T0 + 2000)[0]["time"] == T0 + 1000


def test_fills_emit_trade_lite_then_account_update_then_order_update() -> None:
    engine, _ = make_engine()
    market_buy(engine, "0.010")
    assert event_types(engine.drain_events()) == [
        "ORDER_TRADE_UPDATE:NEW",
        "TRADE_LITE",
        "ACCOUNT_UPDATE:ORDER",
        "ORDER_TRADE_UPDATE:TRADE",
    ]
