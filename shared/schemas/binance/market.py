"""Binance REST replies about the market and small control replies: errors, server time,
listenKey, leverage, countdown, position mode, exchangeInfo (§5.2), klines (§5.3), premiumIndex
(§5.5)."""

from __future__ import annotations

from decimal import Decimal

from shared.schemas.binance.base import (
    Codec,
    Readable,
    Wire,
    check_not_negative,
    check_price,
    invalid,
)

# ---- errors, time, small replies -----------------------------------------------------------------


class ErrorReplyWire(Wire, frozen=True):
    code: int | str  # Binance error code; "200" (a string) in the algo-cancel reply
    msg: str = ""  # message


class _ServerTimeWire(Wire, frozen=True):
    serverTime: int  # server time, ms


class _ListenKeyWire(Wire, frozen=True):
    listenKey: str = ""  # PUT used to answer {} (§6.1)


class _LeverageWire(Wire, frozen=True):
    symbol: str
    leverage: int  # an int here, a string in positionRisk v2 (§4)
    maxNotionalValue: Decimal  # maximum position notional at this leverage, USDT


class _BracketWire(Wire, frozen=True):
    bracket: int  # tier number, 1 = smallest notionals
    initialLeverage: int  # highest leverage allowed in this tier
    notionalCap: Decimal  # tier's upper notional bound, USDT
    notionalFloor: Decimal  # tier's lower notional bound, USDT
    maintMarginRatio: Decimal  # maintenance margin rate in this tier
    cum: Decimal  # maintenance amount deduction, USDT


class _SymbolBracketsWire(Wire, frozen=True):
    symbol: str
    brackets: list[_BracketWire]


class _CountdownWire(Wire, frozen=True):
    symbol: str
    countdownTime: str  # countdown in ms, a string on the wire (§5.16)


class _PositionModeWire(Wire, frozen=True):
    dualSidePosition: bool  # true: hedge mode (LONG/SHORT positions), false: one-way (§5.15)


class Leverage(Readable, frozen=True, kw_only=True):
    symbol: str
    leverage: int
    max_notional_usdt: Decimal


class LeverageBracket(Readable, frozen=True, kw_only=True):
    bracket: int
    max_leverage: int  # initialLeverage
    notional_floor_usdt: Decimal
    notional_cap_usdt: Decimal
    maint_margin_rate: Decimal


class SymbolBrackets(Readable, frozen=True, kw_only=True):
    symbol: str
    brackets: tuple[LeverageBracket, ...]  # in tier order


class Countdown(Readable, frozen=True, kw_only=True):
    symbol: str
    countdown_ms: int  # 0 = disabled


decode_error_reply = Codec(ErrorReplyWire, lambda w: w)
decode_server_time_ms = Codec(_ServerTimeWire, lambda w: w.serverTime)
decode_listen_key = Codec(_ListenKeyWire, lambda w: w.listenKey)
decode_leverage = Codec(
    _LeverageWire,
    lambda w: Leverage(symbol=w.symbol, leverage=w.leverage, max_notional_usdt=w.maxNotionalValue),
)


def _brackets(w: _SymbolBracketsWire) -> SymbolBrackets:
    rows = tuple(
        LeverageBracket(
            bracket=r.bracket,
            max_leverage=r.initialLeverage,
            notional_floor_usdt=r.notionalFloor,
            notional_cap_usdt=r.notionalCap,
            maint_margin_rate=r.maintMarginRatio,
        )
        for r in sorted(w.brackets, key=lambda r: r.bracket)
    )
    return SymbolBrackets(symbol=w.symbol, brackets=rows)


# GET /fapi/v1/leverageBracket?symbol=S answers one object (a list without `symbol`, §5.15).
decode_symbol_brackets = Codec(_SymbolBracketsWire, _brackets)
decode_countdown = Codec(
    _CountdownWire, lambda w: Countdown(symbol=w.symbol, countdown_ms=int(w.countdownTime))
)
decode_code_reply = Codec(ErrorReplyWire, lambda w: str(w.code))
# GET /fapi/v1/positionSide/dual: True when the account is in hedge mode.
decode_is_hedge_mode = Codec(_PositionModeWire, lambda w: w.dualSidePosition)


# ---- exchangeInfo (§5.2) -------------------------------------------------------------------------


class _RateLimitWire(Wire, frozen=True):
    rateLimitType: str  # REQUEST_WEIGHT | ORDERS
    interval: str  # SECOND | MINUTE
    intervalNum: int  # interval multiple
    limit: int


class _FilterWire(Wire, frozen=True):
    filterType: str  # PRICE_FILTER, LOT_SIZE, MARKET_LOT_SIZE, MIN_NOTIONAL, … (others ignored)
    minPrice: Decimal | None = None
    maxPrice: Decimal | None = None
    tickSize: Decimal | None = None
    minQty: Decimal | None = None
    maxQty: Decimal | None = None
    stepSize: Decimal | None = None
    notional: Decimal | None = None  # MIN_NOTIONAL uses `notional` on futures (§5.2)
    limit: int | None = None  # MAX_NUM_ORDERS
    multiplierUp: Decimal | None = None  # PERCENT_PRICE
    multiplierDown: Decimal | None = None


class _SymbolWire(Wire, frozen=True):
    symbol: str
    contractType: str  # PERPETUAL, CURRENT_QUARTER, …
    status: str  # TRADING, …
    baseAsset: str
    quoteAsset: str
    marginAsset: str
    pricePrecision: int  # display precision; validation uses the filters
    quantityPrecision: int
    filters: list[_FilterWire]


class _ExchangeInfoWire(Wire, frozen=True):
    serverTime: int
    rateLimits: list[_RateLimitWire]
    symbols: list[_SymbolWire]


class SymbolSpec(Readable, frozen=True, kw_only=True):
    symbol: str
    contract_type: str
    status: str
    base_asset: str
    quote_asset: str
    margin_asset: str
    tick_size: Decimal  # PRICE_FILTER
    min_price: Decimal
    max_price: Decimal
    step_size: Decimal  # LOT_SIZE (limit orders)
    min_qty: Decimal
    max_qty: Decimal
    market_step_size: Decimal  # MARKET_LOT_SIZE (market orders; LOT_SIZE when absent)
    market_min_qty: Decimal
    market_max_qty: Decimal
    min_notional_usdt: Decimal  # MIN_NOTIONAL (0 when absent); reduce-only orders are exempt
    max_open_orders: int | None  # MAX_NUM_ORDERS
    percent_price_up: Decimal | None  # PERCENT_PRICE multipliers against the mark price
    percent_price_down: Decimal | None
    price_precision: int
    quantity_precision: int


class ExchangeInfo(Readable, frozen=True, kw_only=True):
    server_time_ms: int
    request_weight_limit_1m: int | None  # REQUEST_WEIGHT per 1 MINUTE, when declared
    symbols: tuple[SymbolSpec, ...]


def _decimal(value: Decimal | None, path: str, name: str) -> Decimal:
    if value is None:
        raise invalid(path, f"Object missing required field `{name}`")
    return value


def to_symbol_spec(w: _SymbolWire, path: str = "$") -> SymbolSpec:
    """Return the symbol's trading rules; raises ValidationError if a needed filter is missing.
    Filter values are checked finite (Codec); their sizes are left to the users of a spec (a
    zero tick fails that symbol's own handling, where it is isolated, not every symbol's)."""
    by_type = {f.filterType: f for f in w.filters}
    price, lot = by_type.get("PRICE_FILTER"), by_type.get("LOT_SIZE")
    if price is None or lot is None:
        raise invalid(f"{path}.filters", "PRICE_FILTER and LOT_SIZE are required")
    market = by_type.get("MARKET_LOT_SIZE") or lot
    notional = by_type.get("MIN_NOTIONAL")
    percent = by_type.get("PERCENT_PRICE")
    max_orders = by_type.get("MAX_NUM_ORDERS")
    fp = f"{path}.filters"
    return SymbolSpec(
        symbol=w.symbol,
        contract_type=w.contractType,
        status=w.status,
        base_asset=w.baseAsset,
        quote_asset=w.quoteAsset,
        margin_asset=w.marginAsset,
        tick_size=_decimal(price.tickSize, fp, "tickSize"),
        min_price=_decimal(price.minPrice, fp, "minPrice"),
        max_price=_decimal(price.maxPrice, fp, "maxPrice"),
        step_size=_decimal(lot.stepSize, fp, "stepSize"),
        min_qty=_decimal(lot.minQty, fp, "minQty"),
        max_qty=_decimal(lot.maxQty, fp, "maxQty"),
        market_step_size=_decimal(market.stepSize, fp, "stepSize"),
        market_min_qty=_decimal(market.minQty, fp, "minQty"),
        market_max_qty=_decimal(market.maxQty, fp, "maxQty"),
        min_notional_usdt=(notional.notional if notional and notional.notional else Decimal(0)),
        max_open_orders=max_orders.limit if max_orders else None,
        percent_price_up=percent.multiplierUp if percent else None,
        percent_price_down=percent.multiplierDown if percent else None,
        price_precision=w.pricePrecision,
        quantity_precision=w.quantityPrecision,
    )


def to_exchange_info(w: _ExchangeInfoWire) -> ExchangeInfo:
    """Return the readable exchange info."""
    weight = [
        r.limit
        for r in w.rateLimits
        if r.rateLimitType == "REQUEST_WEIGHT" and r.interval == "MINUTE" and r.intervalNum == 1
    ]
    return ExchangeInfo(
        server_time_ms=w.serverTime,
        request_weight_limit_1m=weight[0] if weight else None,
        symbols=tuple(to_symbol_spec(s, f"$.symbols[{i}]") for i, s in enumerate(w.symbols)),
    )


decode_exchange_info = Codec(_ExchangeInfoWire, to_exchange_info)


# ---- klines (§5.3) and mark price (§5.5) ---------------------------------------------------------

# [openTime, open, high, low, close, volume, closeTime, quoteVolume, trades, takerBuyBase,
#  takerBuyQuote, ignore]
_KlineRowWire = tuple[
    int, Decimal, Decimal, Decimal, Decimal, Decimal, int, Decimal, int, Decimal, Decimal, str
]


class Kline(Readable, frozen=True, kw_only=True):
    symbol: str
    interval: str  # 1m, 5m, …
    open_time_ms: int
    close_time_ms: int  # open time + interval - 1 ms
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal  # base asset
    quote_volume: Decimal
    trades: int
    taker_buy_volume: Decimal
    taker_buy_quote_volume: Decimal
    is_closed: bool


def to_klines(rows: list[_KlineRowWire], symbol: str, interval: str, now_ms: int) -> list[Kline]:
    """Return the klines; a row whose close time is not before `now_ms` is still open."""
    return [
        Kline(
            symbol=symbol,
            interval=interval,
            open_time_ms=r[0],
            close_time_ms=r[6],
            open=r[1],
            high=r[2],
            low=r[3],
            close=r[4],
            volume=r[5],
            quote_volume=r[7],
            trades=r[8],
            taker_buy_volume=r[9],
            taker_buy_quote_volume=r[10],
            is_closed=r[6] < now_ms,
        )
        for r in rows
    ]


_KLINE_ROW_PRICES = ((1, "open"), (2, "high"), (3, "low"), (4, "close"))
_KLINE_ROW_AMOUNTS = ((5, "volume"), (7, "quoteVolume"), (9, "takerBuyBase"), (10, "takerBuyQuote"))


def check_kline_rows(rows: list[_KlineRowWire]) -> list[_KlineRowWire]:
    """Return the rows; raises ValidationError (path `$[row][column]`, the column named) for a
    price that is not > 0 or a volume below 0. A candle is never priced at 0: a zero close would
    give the trader's features a log of 0 and a candidate priced at 0."""
    for i, r in enumerate(rows):
        for j, name in _KLINE_ROW_PRICES:
            check_price(r[j], f"$[{i}][{j}] ({name})")
        for j, name in _KLINE_ROW_AMOUNTS:
            check_not_negative(r[j], f"$[{i}][{j}] ({name})")
    return rows


decode_kline_rows = Codec(list[_KlineRowWire], check_kline_rows)


class _PremiumIndexWire(Wire, frozen=True):
    symbol: str
    markPrice: Decimal
    indexPrice: Decimal
    estimatedSettlePrice: Decimal
    lastFundingRate: Decimal  # the rate of the coming funding, fraction
    nextFundingTime: int  # ms
    time: int  # ms


class MarkPrice(Readable, frozen=True, kw_only=True):
    symbol: str
    mark_price: Decimal
    index_price: Decimal
    estimated_settle_price: Decimal
    funding_rate: Decimal  # fraction per funding interval
    next_funding_time_ms: int
    time_ms: int


def to_mark_price(w: _PremiumIndexWire, path: str = "$") -> MarkPrice:
    """Return the readable mark price; raises ValidationError for a mark price that is not > 0
    (the guard's exit rules act on it in REST mode). The index and settle prices are only
    checked finite: nothing acts on them."""
    check_price(w.markPrice, f"{path}.markPrice")
    return MarkPrice(
        symbol=w.symbol,
        mark_price=w.markPrice,
        index_price=w.indexPrice,
        estimated_settle_price=w.estimatedSettlePrice,
        funding_rate=w.lastFundingRate,
        next_funding_time_ms=w.nextFundingTime,
        time_ms=w.time,
    )


decode_mark_price = Codec(_PremiumIndexWire, to_mark_price)
decode_mark_prices = Codec(
    list[_PremiumIndexWire], lambda ws: [to_mark_price(w, f"$[{i}]") for i, w in enumerate(ws)]
)
