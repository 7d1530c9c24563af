"""An unmodified third-party client, ccxt 4.5.90 `binanceusdm`, trades on the paper exchange through
Binance's own protocol: the proof that the paper exchange is a protocol twin (issue 2).

Only the base URLs change, exactly as BINANCE-API.md §8.1 prescribes for pointing ccxt at a local
server; nothing in ccxt is patched.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt
import ccxt.pro as ccxtpro
import pytest

SYMBOL = "BTC/USDT:USDT"


def make_client(rest_url: str, ws_url: str, api_key: str, api_secret: str) -> Any:
    ex = ccxtpro.binanceusdm(
        {
            "apiKey": api_key,
            "secret": api_secret,
            # Otherwise load_markets asks api.binance.com/sapi for currencies (§8.1).
            "options": {"fetchCurrencies": False},
        }
    )
    for name, path in {
        "fapiPublic": "/fapi/v1",
        "fapiPublicV2": "/fapi/v2",
        "fapiPublicV3": "/fapi/v3",
        "fapiPrivate": "/fapi/v1",
        "fapiPrivateV2": "/fapi/v2",
        "fapiPrivateV3": "/fapi/v3",
        "fapiData": "/futures/data",
    }.items():
        ex.urls["api"][name] = rest_url + path
    ex.urls["api"]["ws"]["linear"] = ws_url + "/ws"
    # ccxt picks the linear error map by URL prefix; on localhost restore it (§8.1).
    ex.exceptions["exact"].update(ex.exceptions["linear"]["exact"])
    ex.exceptions["broad"].update(ex.exceptions["linear"].get("broad", {}))
    return ex


async def trade_round_trip(ex: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    markets = await ex.load_markets()
    seen["market"] = markets[SYMBOL]
    seen["ohlcv"] = await ex.fetch_ohlcv(SYMBOL, "1m", limit=5)
    seen["balance"] = await ex.fetch_balance()
    seen["leverage"] = await ex.set_leverage(10, SYMBOL)
    entry = await ex.create_order(SYMBOL, "market", "buy", 0.01)
    seen["entry"] = entry
    stop_price = round(entry["average"] * 0.9, 1)
    seen["stop"] = await ex.create_order(
        SYMBOL, "market", "sell", 0.01, params={"stopLossPrice": stop_price, "reduceOnly": True}
    )
    seen["open_stops"] = await ex.fetch_open_orders(SYMBOL, params={"trigger": True})
    seen["positions"] = await ex.fetch_positions([SYMBOL])
    seen["cancel_all"] = await ex.cancel_all_orders(SYMBOL)
    seen["cancel_all_trigger"] = await ex.cancel_all_orders(SYMBOL, params={"trigger": True})
    seen["stops_after_cancel"] = await ex.fetch_open_orders(SYMBOL, params={"trigger": True})
    seen["close"] = await ex.create_order(
        SYMBOL, "market", "sell", 0.01, params={"reduceOnly": True}
    )
    seen["positions_after"] = await ex.fetch_positions([SYMBOL])
    seen["balance_after"] = await ex.fetch_balance()
    try:
        await ex.create_order(SYMBOL, "market", "sell", 0.01, params={"reduceOnly": True})
    except ccxt.BaseError as e:
        seen["reduce_only_error"] = e
    candles = await ex.watch_ohlcv(SYMBOL, "1m")
    candles = await ex.watch_ohlcv(SYMBOL, "1m")
    seen["ws_candles"] = candles
    return seen


@pytest.fixture
def seen(paper_exchange: Any) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        ex = make_client(
            paper_exchange.rest_url,
            paper_exchange.ws_url,
            paper_exchange.api_key,
            paper_exchange.api_secret,
        )
        try:
            return await asyncio.wait_for(trade_round_trip(ex), 60)
        finally:
            await ex.close()

    return asyncio.run(run())


def test_ccxt_trades_a_full_round_trip_on_the_paper_exchange(seen: dict[str, Any]) -> None:
    market = seen["market"]
    assert market["linear"] and market["swap"] and market["settle"] == "USDT"
    assert market["precision"]["amount"] == 0.001 and market["precision"]["price"] == 0.1

    ohlcv = seen["ohlcv"]
    assert len(ohlcv) == 5
    assert [row[0] for row in ohlcv] == sorted(row[0] for row in ohlcv)
    assert all(row[0] % 60_000 == 0 and row[3] <= min(row[1], row[4]) for row in ohlcv)

    assert seen["balance"]["USDT"]["total"] == pytest.approx(10000.0)
    assert seen["leverage"]["leverage"] == 10

    entry = seen["entry"]
    assert entry["status"] == "closed" and entry["filled"] == pytest.approx(0.01)
    assert entry["average"] > 0

    stop = seen["stop"]
    assert stop["type"] in ("stop_market", "market") and stop["reduceOnly"] is True
    assert [o["id"] for o in seen["open_stops"]] == [stop["id"]]
    assert seen["open_stops"][0]["triggerPrice"] == pytest.approx(round(entry["average"] * 0.9, 1))

    (position,) = [p for p in seen["positions"] if p["contracts"]]
    assert position["side"] == "long" and position["contracts"] == pytest.approx(0.01)
    assert position["entryPrice"] == pytest.approx(entry["average"])
    # positionRisk v3 has no leverage field (§0.4); the margin shows the 10x set above.
    assert position["initialMargin"] == pytest.approx(position["notional"] / 10, rel=1e-6)

    assert seen["stops_after_cancel"] == []
    close = seen["close"]
    assert close["status"] == "closed" and close["filled"] == pytest.approx(0.01)
    assert all(not p["contracts"] for p in seen["positions_after"])

    # Binance's order reply carries no commission (ccxt leaves `fee` empty); the wallet shows it:
    # taker fee 0.04 % on both fills.
    fees = 0.0004 * 0.01 * (entry["average"] + close["average"])
    pnl = (close["average"] - entry["average"]) * 0.01
    assert seen["balance_after"]["USDT"]["total"] == pytest.approx(10000.0 + pnl - fees, abs=1e-6)

    # Reduce-only with no position is refused with Binance's -2022, which ccxt maps.
    assert "-2022" in str(seen["reduce_only_error"])


def test_ccxt_pro_receives_live_klines_over_the_websocket(seen: dict[str, Any]) -> None:
    candles = seen["ws_candles"]
    assert candles, "no kline arrived over the WebSocket"
    last = candles[-1]
    assert last[0] % 60_000 == 0
    assert last[3] <= last[1] <= last[2] and last[3] <= last[4] <= last[2]
