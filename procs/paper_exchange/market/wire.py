"""Wire bodies of the public REST endpoints and market-stream events, as Binance sends them.

Pure builders: values in (Decimal prices and quantities, int times and ids, raw spec dicts), JSON-
able dicts and lists out, with Binance's key order and JSON types (BINANCE-API.md §4, §5.2-5.5,
§5.15, §7.3). Numbers are strings formatted to the symbol's precision:
- prices with `pricePrecision`, quantities with `quantityPrecision`;
- kline quote volumes with pricePrecision + quantityPrecision decimals, as in the real ccxt
  BTCUSDT kline fixture (`"142.96380"`);
- the 24 h ticker's quote volume and weighted average price with `pricePrecision`, its change
  percent with 3 decimals, as in a real /fapi/v1/ticker/24hr BTCUSDT reply of 2025-01 quoted in
  a public client's source (`"quoteVolume":"508037300.13"`, `"priceChangePercent":"-0.472"`);
- mark, index and settle prices and funding rates with 8 decimals (premiumIndex, markPrice).
Ids and times are ints. Optional fields Binance added for COIN-M (`st`, `ps`) are not sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from procs.paper_exchange.market.prices import AggTrade, Bar, FundingEvent

Spec = Mapping[str, Any]

# Shape and values from the real exchangeInfo fixture (nautilus-real, 2022); BUSD left out since
# Binance retired it as a margin asset in 2023.
DEFAULT_ASSETS: tuple[Mapping[str, Any], ...] = (
    {"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-100"},
    {"asset": "BTC", "marginAvailable": True, "autoAssetExchange": "-0.00100000"},
    {"asset": "BNB", "marginAvailable": True, "autoAssetExchange": "-0.00100000"},
    {"asset": "ETH", "marginAvailable": True, "autoAssetExchange": "-0.00100000"},
)
INTEREST_RATE = "0.00010000"  # Binance's fixed USDT interest rate component, as premiumIndex shows


def _fixed(value: Decimal, decimals: int) -> str:
    rounded = value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return f"{rounded if rounded else abs(rounded):f}"  # never "-0.00"


def _price(value: Decimal, spec: Spec) -> str:
    return _fixed(value, int(spec["pricePrecision"]))


def _qty(value: Decimal, spec: Spec) -> str:
    return _fixed(value, int(spec["quantityPrecision"]))


def _kline_quote(value: Decimal, spec: Spec) -> str:
    return _fixed(value, int(spec["pricePrecision"]) + int(spec["quantityPrecision"]))


def _rate(value: Decimal) -> str:
    return _fixed(value, 8)


def exchange_info_body(
    server_time_ms: int,
    rate_limits: Sequence[Mapping[str, Any]],
    symbols: Sequence[Mapping[str, Any]],
    assets: Sequence[Mapping[str, Any]] = DEFAULT_ASSETS,
) -> dict[str, Any]:
    """Build GET /fapi/v1/exchangeInfo; `symbols` are the raw symbol objects, passed unchanged."""
    return {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "futuresType": "U_MARGINED",
        "rateLimits": [dict(limit) for limit in rate_limits],
        "exchangeFilters": [],
        "assets": [dict(asset) for asset in assets],
        "symbols": list(symbols),
    }


def kline_row(bar: Bar, spec: Spec) -> list[Any]:
    """Build one GET /fapi/v1/klines element: 12 values, ints for times and count."""
    return [
        bar.open_ms,
        _price(bar.open, spec),
        _price(bar.high, spec),
        _price(bar.low, spec),
        _price(bar.close, spec),
        _qty(bar.volume, spec),
        bar.close_ms,
        _kline_quote(bar.quote_volume, spec),
        bar.trade_count,
        _qty(bar.taker_buy_volume, spec),
        _kline_quote(bar.taker_buy_quote_volume, spec),
        "0",
    ]


def klines_body(bars: Sequence[Bar], spec: Spec) -> list[list[Any]]:
    """Build GET /fapi/v1/klines (also the shape of continuousKlines and markPriceKlines)."""
    return [kline_row(bar, spec) for bar in bars]


def _kline_payload(bar: Bar, interval: str, spec: Spec, symbol: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"t": bar.open_ms, "T": bar.close_ms}
    if symbol is not None:
        payload["s"] = symbol
    payload.update(
        {
            "i": interval,
            "f": bar.first_trade_id,
            "L": bar.last_trade_id,
            "o": _price(bar.open, spec),
            "c": _price(bar.close, spec),
            "h": _price(bar.high, spec),
            "l": _price(bar.low, spec),
            "v": _qty(bar.volume, spec),
            "n": bar.trade_count,
            "x": bar.is_closed,
            "q": _kline_quote(bar.quote_volume, spec),
            "V": _qty(bar.taker_buy_volume, spec),
            "Q": _kline_quote(bar.taker_buy_quote_volume, spec),
            "B": "0",
        }
    )
    return payload


def kline_event(symbol: str, interval: str, bar: Bar, spec: Spec, event_ms: int) -> dict[str, Any]:
    """Build a `<symbol>@kline_<interval>` event."""
    return {
        "e": "kline",
        "E": event_ms,
        "s": symbol,
        "k": _kline_payload(bar, interval, spec, symbol),
    }


def continuous_kline_event(
    pair: str,
    interval: str,
    bar: Bar,
    spec: Spec,
    event_ms: int,
    contract_type: str = "PERPETUAL",
) -> dict[str, Any]:
    """Build a `<pair>_<contractType>@continuousKline_<interval>` event (its `k` has no `s`)."""
    return {
        "e": "continuous_kline",
        "E": event_ms,
        "ps": pair,
        "ct": contract_type,
        "k": _kline_payload(bar, interval, spec, None),
    }


def ticker_price_body(symbol: str, price: Decimal, spec: Spec, time_ms: int) -> dict[str, Any]:
    """Build one GET /fapi/v1/ticker/price or /fapi/v2/ticker/price element (same shape)."""
    return {"symbol": symbol, "price": _price(price, spec), "time": time_ms}


def ticker_24hr_body(symbol: str, window: Bar, last: AggTrade, spec: Spec) -> dict[str, Any]:
    """Build one GET /fapi/v1/ticker/24hr element from the rolling window and the last trade."""
    change = last.price - window.open
    percent = change * 100 / window.open
    average = window.quote_volume / window.volume if window.volume else Decimal(0)
    precision = int(spec["pricePrecision"])
    return {
        "symbol": symbol,
        "priceChange": _price(change, spec),
        "priceChangePercent": _fixed(percent, 3),
        "weightedAvgPrice": _price(average, spec),
        "lastPrice": _price(last.price, spec),
        "lastQty": _qty(last.qty, spec),
        "openPrice": _price(window.open, spec),
        "highPrice": _price(window.high, spec),
        "lowPrice": _price(window.low, spec),
        "volume": _qty(window.volume, spec),
        "quoteVolume": _fixed(window.quote_volume, precision),
        "openTime": window.open_ms,
        "closeTime": window.close_ms,
        "firstId": window.first_trade_id,
        "lastId": window.last_trade_id,
        "count": window.trade_count,
    }


def book_ticker_body(
    symbol: str,
    book: tuple[Decimal, Decimal, Decimal, Decimal],
    spec: Spec,
    time_ms: int,
) -> dict[str, Any]:
    """Build one GET /fapi/v1/ticker/bookTicker element; `book` = (bid, bid_qty, ask, ask_qty)."""
    bid, bid_qty, ask, ask_qty = book
    return {
        "symbol": symbol,
        "bidPrice": _price(bid, spec),
        "bidQty": _qty(bid_qty, spec),
        "askPrice": _price(ask, spec),
        "askQty": _qty(ask_qty, spec),
        "time": time_ms,
    }


def premium_index_body(
    symbol: str,
    mark: Decimal,
    index: Decimal,
    funding_rate: Decimal,
    next_funding_ms: int,
    time_ms: int,
) -> dict[str, Any]:
    """Build one GET /fapi/v1/premiumIndex element; the settle estimate is the index price."""
    return {
        "symbol": symbol,
        "markPrice": _rate(mark),
        "indexPrice": _rate(index),
        "estimatedSettlePrice": _rate(index),
        "lastFundingRate": _rate(funding_rate),
        "interestRate": INTEREST_RATE,
        "nextFundingTime": next_funding_ms,
        "time": time_ms,
    }


def funding_rate_body(symbol: str, events: Sequence[FundingEvent]) -> list[dict[str, Any]]:
    """Build GET /fapi/v1/fundingRate (ascending)."""
    return [
        {
            "symbol": symbol,
            "fundingRate": _rate(event.rate),
            "fundingTime": event.time_ms,
            "markPrice": _rate(event.mark_price),
        }
        for event in events
    ]


def depth_body(
    bids: Sequence[tuple[Decimal, Decimal]],
    asks: Sequence[tuple[Decimal, Decimal]],
    spec: Spec,
    update_id: int,
    event_ms: int,
    transact_ms: int,
) -> dict[str, Any]:
    """Build GET /fapi/v1/depth: levels best first, each [price, qty] as strings."""
    return {
        "lastUpdateId": update_id,
        "E": event_ms,
        "T": transact_ms,
        "bids": [[_price(price, spec), _qty(qty, spec)] for price, qty in bids],
        "asks": [[_price(price, spec), _qty(qty, spec)] for price, qty in asks],
    }


def leverage_bracket_body(
    brackets: Mapping[str, Sequence[Mapping[str, Any]]], symbol: str | None = None
) -> list[dict[str, Any]] | dict[str, Any]:
    """Build GET /fapi/v1/leverageBracket: a list, or one object when `symbol` is given.

    Bracket values stay JSON numbers, as Binance sends them (BINANCE-API.md §4, §5.15); the
    optional `notionalCoef` appears only for adjusted user brackets, so it is not sent.
    """
    if symbol is not None:
        return {"symbol": symbol, "brackets": [dict(b) for b in brackets[symbol]]}
    return [{"symbol": s, "brackets": [dict(b) for b in rows]} for s, rows in brackets.items()]


def mark_price_event(
    symbol: str,
    mark: Decimal,
    index: Decimal,
    funding_rate: Decimal,
    next_funding_ms: int,
    event_ms: int,
) -> dict[str, Any]:
    """Build a `<symbol>@markPrice` event; `ap` (moving average) is the mark itself."""
    return {
        "e": "markPriceUpdate",
        "E": event_ms,
        "s": symbol,
        "p": _rate(mark),
        "ap": _rate(mark),
        "i": _rate(index),
        "P": _rate(index),
        "r": _rate(funding_rate),
        "T": next_funding_ms,
    }


def book_ticker_event(
    symbol: str,
    book: tuple[Decimal, Decimal, Decimal, Decimal],
    spec: Spec,
    update_id: int,
    event_ms: int,
    transact_ms: int,
) -> dict[str, Any]:
    """Build a `<symbol>@bookTicker` event; `book` = (bid, bid_qty, ask, ask_qty)."""
    bid, bid_qty, ask, ask_qty = book
    return {
        "e": "bookTicker",
        "u": update_id,
        "E": event_ms,
        "T": transact_ms,
        "s": symbol,
        "b": _price(bid, spec),
        "B": _qty(bid_qty, spec),
        "a": _price(ask, spec),
        "A": _qty(ask_qty, spec),
    }


def agg_trade_event(symbol: str, trade: AggTrade, spec: Spec, event_ms: int) -> dict[str, Any]:
    """Build a `<symbol>@aggTrade` event: one trade per aggregate, so f == l == a."""
    qty = _qty(trade.qty, spec)
    return {
        "e": "aggTrade",
        "E": event_ms,
        "a": trade.id,
        "s": symbol,
        "p": _price(trade.price, spec),
        "q": qty,
        "nq": qty,
        "f": trade.id,
        "l": trade.id,
        "T": trade.time_ms,
        "m": trade.is_buyer_maker,
    }
