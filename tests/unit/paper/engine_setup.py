"""Shared setup of the engine tests: real BTCUSDT/ETHUSDT specs, small brackets, a fake market.

The specs are the real exchangeInfo objects of tests/fixtures/binance/nautilus-real/
http_futures_market_exchange_info.json. The brackets copy the shape of the digest's
leverageBracket example (BINANCE-API.md §5.15) with Binance-like tiers. `FakeMarket` is a
pure-logic collaborator: prices the test sets, funding every 8 hours on the UTC grid.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from procs.paper_exchange.engine.core import Engine, EngineConfig

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "binance"
T0 = 1_750_003_200_000  # 2025-06-15T16:00:00Z, a funding time
HOUR_MS = 3_600_000

BRACKETS: dict[str, list[dict[str, Any]]] = {
    "BTCUSDT": [
        {
            "bracket": 1,
            "initialLeverage": 125,
            "notionalCap": 50000,
            "notionalFloor": 0,
            "maintMarginRatio": 0.004,
            "cum": 0.0,
        },
        {
            "bracket": 2,
            "initialLeverage": 100,
            "notionalCap": 600000,
            "notionalFloor": 50000,
            "maintMarginRatio": 0.005,
            "cum": 50.0,
        },
        {
            "bracket": 3,
            "initialLeverage": 50,
            "notionalCap": 3000000,
            "notionalFloor": 600000,
            "maintMarginRatio": 0.01,
            "cum": 3050.0,
        },
    ],
    "ETHUSDT": [
        {
            "bracket": 1,
            "initialLeverage": 50,
            "notionalCap": 50000,
            "notionalFloor": 0,
            "maintMarginRatio": 0.01,
            "cum": 0.0,
        },
        {
            "bracket": 2,
            "initialLeverage": 20,
            "notionalCap": 250000,
            "notionalFloor": 50000,
            "maintMarginRatio": 0.025,
            "cum": 750.0,
        },
    ],
}


def fixture(relative: str) -> Any:
    """Load a JSON fixture; the nautilus ws captures are unwrapped from {"stream", "data"}."""
    data = json.loads((FIXTURES / relative).read_text())
    if isinstance(data, dict) and set(data) == {"stream", "data"}:
        return data["data"]
    return data


def real_specs() -> dict[str, dict[str, Any]]:
    """Return the real BTCUSDT and ETHUSDT exchangeInfo symbol objects."""
    info = fixture("nautilus-real/http_futures_market_exchange_info.json")
    return {s["symbol"]: s for s in info["symbols"] if s["symbol"] in ("BTCUSDT", "ETHUSDT")}


class FakeMarket:
    """Prices set by the test; the book is bid/ask around last unless set explicitly."""

    def __init__(self) -> None:
        self.last: dict[str, Decimal] = {}
        self.mark: dict[str, Decimal] = {}
        self.bid: dict[str, Decimal] = {}
        self.ask: dict[str, Decimal] = {}
        self.rate: dict[str, Decimal] = {}
        self.set("BTCUSDT", "60000.00", bid="59999.90", ask="60000.10")
        self.set("ETHUSDT", "3000.00", bid="2999.99", ask="3000.01")

    def set(
        self,
        symbol: str,
        last: str,
        *,
        mark: str | None = None,
        bid: str | None = None,
        ask: str | None = None,
    ) -> None:
        """Move the market: mark defaults to last, bid/ask to last."""
        self.last[symbol] = Decimal(last)
        self.mark[symbol] = Decimal(mark if mark is not None else last)
        self.bid[symbol] = Decimal(bid if bid is not None else last)
        self.ask[symbol] = Decimal(ask if ask is not None else last)

    def last_price(self, symbol: str, now_ms: int) -> Decimal:
        return self.last[symbol]

    def mark_price(self, symbol: str, now_ms: int) -> Decimal:
        return self.mark[symbol]

    def book_ticker(self, symbol: str, now_ms: int) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        return self.bid[symbol], Decimal(5), self.ask[symbol], Decimal(5)

    def funding_rate(self, symbol: str, now_ms: int) -> Decimal:
        return self.rate.get(symbol, Decimal("0.0001"))

    def next_funding_ms(self, now_ms: int) -> int:
        period = 8 * HOUR_MS
        return (now_ms // period + 1) * period


def make_engine(
    market: FakeMarket | None = None,
    state: dict[str, Any] | None = None,
    specs: dict[str, dict[str, Any]] | None = None,
    **cfg: Any,
) -> tuple[Engine, FakeMarket]:
    """Return a fresh 10 000 USDT account on the fake market (config overrides as keywords)."""
    market = market or FakeMarket()
    config = EngineConfig(**cfg)
    return Engine(specs or real_specs(), BRACKETS, market, config, state), market


def spec_with_filter(symbol: str, filter_type: str, **values: Any) -> dict[str, dict[str, Any]]:
    """Return the real specs with one filter of one symbol changed (for limits real specs lack)."""
    specs = real_specs()
    for item in specs[symbol]["filters"]:
        if item["filterType"] == filter_type:
            item.update(values)
    return specs


def market_buy(engine: Engine, qty: str, now_ms: int = T0, symbol: str = "BTCUSDT") -> Any:
    """Place a MARKET BUY with RESULT and return its reply."""
    return engine.post_order(
        {
            "symbol": symbol,
            "side": "BUY",
            "type": "MARKET",
            "quantity": qty,
            "newOrderRespType": "RESULT",
        },
        now_ms,
    )


def market_sell(engine: Engine, qty: str, now_ms: int = T0, symbol: str = "BTCUSDT") -> Any:
    """Place a MARKET SELL with RESULT and return its reply."""
    return engine.post_order(
        {
            "symbol": symbol,
            "side": "SELL",
            "type": "MARKET",
            "quantity": qty,
            "newOrderRespType": "RESULT",
        },
        now_ms,
    )


def event_types(events: list[dict[str, Any]]) -> list[str]:
    """Return each event as 'e' or 'e:x' / 'e:X' for ORDER_TRADE_UPDATE / ALGO_UPDATE."""
    out = []
    for event in events:
        name = event["e"]
        if name == "ORDER_TRADE_UPDATE":
            name += ":" + event["o"]["x"]
        elif name == "ALGO_UPDATE":
            name += ":" + event["o"]["X"]
        elif name == "ACCOUNT_UPDATE":
            name += ":" + event["a"]["m"]
        out.append(name)
    return out


def shape(value: Any) -> Any:
    """Return the JSON shape of a value: dict keys in order with shapes, list of first shape."""
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__
