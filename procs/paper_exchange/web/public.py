"""The public (NONE security) REST endpoints of the paper exchange: parameters in, wire bodies out.

Pure apart from reading the `Market` at the simulated time it is given. Validates parameters with
Binance's codes (missing -1102, unknown symbol -1121, bad interval -1120, bad value -1130) and
builds the bodies with `marketdata.py` (BINANCE-API.md §5.1-§5.5, §5.15). The server registers
`public_routes(...)` on the exact Binance paths; each handler takes the merged request parameters
and the simulated `now_ms`.

`markPriceKlines` and `indexPriceKlines` use Binance's documented row for price-only klines
(prices with 8 decimals, volumes "0", the number of one-second samples in place of the trade
count); the mark and index prices are the replayed price itself, so their OHLC equal the klines'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from procs.paper_exchange.errors import ApiError, invalid_value, missing_param
from procs.paper_exchange.market import wire as marketdata
from procs.paper_exchange.market.intervals import check_interval
from procs.paper_exchange.market.prices import Bar, Market

Params = dict[str, str]
Handler = Callable[[Params, int], Any]

KLINE_LIMIT_DEFAULT = 500
KLINE_LIMIT_MAX = 1500
DEPTH_LIMIT_DEFAULT = 500
DEPTH_LIMIT_MAX = 1000
FUNDING_LIMIT_DEFAULT = 100
FUNDING_LIMIT_MAX = 1000


def _int(params: Params, name: str, default: int | None = None) -> int | None:
    text = params.get(name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise invalid_value(name) from None


def _limit(params: Params, default: int, maximum: int) -> int:
    limit = _int(params, "limit", default)
    assert limit is not None
    if not 1 <= limit <= maximum:
        raise invalid_value("limit")
    return limit


def _interval(params: Params) -> str:
    interval = params.get("interval")
    if not interval:
        raise missing_param("interval")
    try:
        check_interval(interval)
    except ValueError:
        raise ApiError(400, -1120, "Invalid interval.") from None
    return interval


def _price8(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.00000001'), rounding=ROUND_HALF_UP):f}"


def price_kline_row(bar: Bar) -> list[Any]:
    """Build one markPriceKlines / indexPriceKlines element (Binance's documented shape)."""
    samples = (bar.close_ms + 1 - bar.open_ms) // 1000
    return [
        bar.open_ms,
        _price8(bar.open),
        _price8(bar.high),
        _price8(bar.low),
        _price8(bar.close),
        "0",
        bar.close_ms,
        "0",
        samples,
        "0",
        "0",
        "0",
    ]


class PublicEndpoints:
    """Handlers for the public market-data endpoints of one `Market`."""

    def __init__(
        self,
        market: Market,
        specs: Mapping[str, Mapping[str, Any]],
        rate_limits: Sequence[Mapping[str, Any]],
    ) -> None:
        """`specs` are the raw exchangeInfo symbol objects, in the order exchangeInfo lists them."""
        self.market = market
        self.specs = specs
        self.rate_limits = rate_limits

    def _symbol(self, params: Params, name: str = "symbol") -> str:
        symbol = params.get(name)
        if not symbol:
            raise missing_param(name)
        if symbol not in self.specs:
            raise ApiError(400, -1121, "Invalid symbol.")
        return symbol

    def _symbols(self, params: Params) -> list[str]:
        """The one symbol named, or every symbol when the parameter is absent."""
        return [self._symbol(params)] if params.get("symbol") else list(self.specs)

    def _bars(self, symbol: str, interval: str, params: Params, now_ms: int) -> list[Bar]:
        limit = _limit(params, KLINE_LIMIT_DEFAULT, KLINE_LIMIT_MAX)
        start_ms = _int(params, "startTime")
        end_ms = _int(params, "endTime")
        return self.market.klines(symbol, interval, start_ms, end_ms, limit, now_ms)

    def ping(self, _params: Params, _now_ms: int) -> Any:
        return {}

    def time(self, _params: Params, now_ms: int) -> Any:
        return {"serverTime": now_ms}

    def exchange_info(self, _params: Params, now_ms: int) -> Any:
        return marketdata.exchange_info_body(now_ms, self.rate_limits, list(self.specs.values()))

    def klines(self, params: Params, now_ms: int) -> Any:
        symbol = self._symbol(params)
        interval = _interval(params)
        bars = self._bars(symbol, interval, params, now_ms)
        return marketdata.klines_body(bars, self.specs[symbol])

    def continuous_klines(self, params: Params, now_ms: int) -> Any:
        pair = self._symbol(params, "pair")
        contract_type = params.get("contractType")
        if not contract_type:
            raise missing_param("contractType")
        if contract_type != "PERPETUAL":  # every replayed symbol is a perpetual
            raise invalid_value("contractType")
        interval = _interval(params)
        bars = self._bars(pair, interval, params, now_ms)
        return marketdata.klines_body(bars, self.specs[pair])

    def mark_price_klines(self, params: Params, now_ms: int) -> Any:
        symbol = self._symbol(params)
        interval = _interval(params)
        return [price_kline_row(b) for b in self._bars(symbol, interval, params, now_ms)]

    def index_price_klines(self, params: Params, now_ms: int) -> Any:
        pair = self._symbol(params, "pair")
        interval = _interval(params)
        return [price_kline_row(b) for b in self._bars(pair, interval, params, now_ms)]

    def _each(self, params: Params, build: Callable[[str], dict[str, Any]]) -> Any:
        if params.get("symbol"):
            return build(self._symbol(params))
        return [build(symbol) for symbol in self.specs]

    def ticker_price(self, params: Params, now_ms: int) -> Any:
        def build(symbol: str) -> dict[str, Any]:
            price = self.market.last_price(symbol, now_ms)
            return marketdata.ticker_price_body(symbol, price, self.specs[symbol], now_ms)

        return self._each(params, build)

    def ticker_24hr(self, params: Params, now_ms: int) -> Any:
        def build(symbol: str) -> dict[str, Any]:
            window = self.market.rolling_24h(symbol, now_ms)
            last = self.market.agg_trade(symbol, now_ms)
            return marketdata.ticker_24hr_body(symbol, window, last, self.specs[symbol])

        return self._each(params, build)

    def book_ticker(self, params: Params, now_ms: int) -> Any:
        def build(symbol: str) -> dict[str, Any]:
            book = self.market.book_ticker(symbol, now_ms)
            return marketdata.book_ticker_body(symbol, book, self.specs[symbol], now_ms)

        return self._each(params, build)

    def premium_index(self, params: Params, now_ms: int) -> Any:
        def build(symbol: str) -> dict[str, Any]:
            return marketdata.premium_index_body(
                symbol,
                self.market.mark_price(symbol, now_ms),
                self.market.index_price(symbol, now_ms),
                self.market.funding_rate(symbol, now_ms),
                self.market.next_funding_ms(now_ms),
                now_ms,
            )

        return self._each(params, build)

    def funding_rate(self, params: Params, now_ms: int) -> Any:
        limit = _limit(params, FUNDING_LIMIT_DEFAULT, FUNDING_LIMIT_MAX)
        start_ms = _int(params, "startTime")
        end_ms = _int(params, "endTime")
        rows: list[dict[str, Any]] = []
        for symbol in self._symbols(params):
            events = self.market.funding_history(symbol, start_ms, end_ms, limit, now_ms)
            rows += marketdata.funding_rate_body(symbol, events)
        rows.sort(key=lambda row: int(row["fundingTime"]))
        return rows[:limit] if start_ms is not None else rows[-limit:]

    def depth(self, params: Params, now_ms: int) -> Any:
        symbol = self._symbol(params)
        limit = _limit(params, DEPTH_LIMIT_DEFAULT, DEPTH_LIMIT_MAX)
        bids, asks = self.market.depth(symbol, now_ms, limit)
        update_id = self.market.update_id(now_ms)
        return marketdata.depth_body(bids, asks, self.specs[symbol], update_id, now_ms, now_ms)

    def routes(self) -> dict[tuple[str, str], Handler]:
        """Map (method, path) to handler for every public endpoint, on Binance's exact paths."""
        return {
            ("GET", "/fapi/v1/ping"): self.ping,
            ("GET", "/fapi/v1/time"): self.time,
            ("GET", "/api/v3/ping"): self.ping,  # python-binance's constructor calls these (§10)
            ("GET", "/api/v3/time"): self.time,
            ("GET", "/fapi/v1/exchangeInfo"): self.exchange_info,
            ("GET", "/fapi/v1/klines"): self.klines,
            ("GET", "/fapi/v1/continuousKlines"): self.continuous_klines,
            ("GET", "/fapi/v1/markPriceKlines"): self.mark_price_klines,
            ("GET", "/fapi/v1/indexPriceKlines"): self.index_price_klines,
            ("GET", "/fapi/v1/ticker/price"): self.ticker_price,
            ("GET", "/fapi/v2/ticker/price"): self.ticker_price,
            ("GET", "/fapi/v1/ticker/24hr"): self.ticker_24hr,
            ("GET", "/fapi/v1/ticker/bookTicker"): self.book_ticker,
            ("GET", "/fapi/v1/premiumIndex"): self.premium_index,
            ("GET", "/fapi/v1/fundingRate"): self.funding_rate,
            ("GET", "/fapi/v1/depth"): self.depth,
        }


def rate_limits_body(weight_1m: int, orders_1m: int, orders_10s: int) -> list[dict[str, Any]]:
    """Build exchangeInfo `rateLimits` from the configured limits (order as the real fixture)."""
    return [
        {
            "rateLimitType": "REQUEST_WEIGHT",
            "interval": "MINUTE",
            "intervalNum": 1,
            "limit": weight_1m,
        },
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": orders_1m},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": orders_10s},
    ]
