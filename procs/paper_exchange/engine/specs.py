"""Symbol specs and leverage brackets: typed views of exchangeInfo and leverageBracket objects.

`parse_spec` reads one raw exchangeInfo symbol object (BINANCE-API.md §5.2), `parse_brackets` one
symbol's `brackets` list of `GET /fapi/v1/leverageBracket` (§5.15). The filter checks raise the
`ApiError` Binance answers for each violated filter, and the `fmt_*` functions write numbers the
way Binance's matching engine writes them (§4): prices to `pricePrecision`, quantities to
`quantityPrecision`, balances and PnL to 8 decimals.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from procs.paper_exchange.errors import rejected

ZERO = Decimal(0)
ONE = Decimal(1)
EIGHT_PLACES = Decimal("0.00000001")


@dataclass(frozen=True)
class SymbolSpec:
    """The trading rules of one USDT-M symbol, from its exchangeInfo object."""

    symbol: str
    price_precision: int  # decimals of prices on the wire
    quantity_precision: int  # decimals of quantities on the wire
    tick_size: Decimal  # PRICE_FILTER
    min_price: Decimal
    max_price: Decimal
    step_size: Decimal  # LOT_SIZE: limit orders
    min_qty: Decimal
    max_qty: Decimal
    market_step_size: Decimal  # MARKET_LOT_SIZE: market orders
    market_min_qty: Decimal
    market_max_qty: Decimal
    max_num_orders: int  # MAX_NUM_ORDERS: open regular orders on this symbol
    min_notional: Decimal  # MIN_NOTIONAL `notional`
    min_notional_text: str  # the same value as exchangeInfo spells it, for the -4164 message
    multiplier_up: Decimal  # PERCENT_PRICE vs mark
    multiplier_down: Decimal
    trigger_protect: Decimal  # max |mark - last| / mark for priceProtect algo orders
    liquidation_fee: Decimal  # insurance-fund clearance fee rate


@dataclass(frozen=True)
class Bracket:
    """One notional tier of a symbol's leverage brackets."""

    initial_leverage: int
    notional_cap: Decimal
    notional_floor: Decimal
    maint_margin_ratio: Decimal
    cum: Decimal  # maintenance amount: maintenance margin = notional x ratio - cum


def _filter(raw: dict[str, Any], name: str) -> dict[str, Any]:
    for item in raw.get("filters", []):
        if item.get("filterType") == name:
            return dict(item)
    return {}


def parse_spec(raw: dict[str, Any]) -> SymbolSpec:
    """Build a SymbolSpec from a raw exchangeInfo symbol object (§5.2); absent filters relax."""
    price = _filter(raw, "PRICE_FILTER")
    lot = _filter(raw, "LOT_SIZE")
    market_lot = _filter(raw, "MARKET_LOT_SIZE") or lot
    notional = _filter(raw, "MIN_NOTIONAL")
    percent = _filter(raw, "PERCENT_PRICE")
    orders = _filter(raw, "MAX_NUM_ORDERS")
    notional_text = str(notional.get("notional", "0"))
    return SymbolSpec(
        symbol=str(raw["symbol"]),
        price_precision=int(raw["pricePrecision"]),
        quantity_precision=int(raw["quantityPrecision"]),
        tick_size=Decimal(str(price.get("tickSize", "0"))),
        min_price=Decimal(str(price.get("minPrice", "0"))),
        max_price=Decimal(str(price.get("maxPrice", "0"))),
        step_size=Decimal(str(lot.get("stepSize", "0"))),
        min_qty=Decimal(str(lot.get("minQty", "0"))),
        max_qty=Decimal(str(lot.get("maxQty", "0"))),
        market_step_size=Decimal(str(market_lot.get("stepSize", "0"))),
        market_min_qty=Decimal(str(market_lot.get("minQty", "0"))),
        market_max_qty=Decimal(str(market_lot.get("maxQty", "0"))),
        max_num_orders=int(orders.get("limit", 200)),
        min_notional=Decimal(notional_text),
        min_notional_text=notional_text,
        multiplier_up=Decimal(str(percent.get("multiplierUp", "0"))),
        multiplier_down=Decimal(str(percent.get("multiplierDown", "0"))),
        trigger_protect=Decimal(str(raw.get("triggerProtect", "0.05"))),
        liquidation_fee=Decimal(str(raw.get("liquidationFee", "0.0125"))),
    )


def parse_brackets(raw: list[dict[str, Any]]) -> tuple[Bracket, ...]:
    """Build a symbol's brackets from leverageBracket `brackets` items, lowest notional first."""
    brackets = [
        Bracket(
            initial_leverage=int(item["initialLeverage"]),
            notional_cap=Decimal(str(item["notionalCap"])),
            notional_floor=Decimal(str(item["notionalFloor"])),
            maint_margin_ratio=Decimal(str(item["maintMarginRatio"])),
            cum=Decimal(str(item.get("cum", 0))),
        )
        for item in raw
    ]
    return tuple(sorted(brackets, key=lambda b: b.notional_floor))


def bracket_for(brackets: tuple[Bracket, ...], notional: Decimal) -> Bracket:
    """Return the bracket whose [floor, cap) holds `notional` (the last one beyond every cap)."""
    for bracket in brackets:
        if notional < bracket.notional_cap:
            return bracket
    return brackets[-1]


def max_leverage(brackets: tuple[Bracket, ...]) -> int:
    """Return the highest leverage the symbol allows (its first bracket's)."""
    return max(b.initial_leverage for b in brackets)


def max_notional(brackets: tuple[Bracket, ...], leverage: int) -> Decimal:
    """Return the largest position notional allowed at `leverage` (maxNotionalValue)."""
    caps = [b.notional_cap for b in brackets if b.initial_leverage >= leverage]
    return max(caps) if caps else brackets[0].notional_cap


# -- numbers on the wire ------------------------------------------------------------------------


def decimals_of(value: Decimal) -> int:
    """Return the number of significant decimals (trailing zeros do not count)."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def fmt_fixed(value: Decimal, places: int) -> str:
    """Write `value` with exactly `places` decimals, half-up ("0.000", "110001.00")."""
    text = f"{value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):f}"
    return text[1:] if text.startswith("-") and Decimal(text) == 0 else text


def fmt_plain(value: Decimal) -> str:
    """Write `value` without trailing zeros, "0" for zero ("0.13855", "38", "-0.5")."""
    if value == 0:
        return "0"
    text = f"{value.normalize():f}"
    return text


def fmt_derived_price(value: Decimal) -> str:
    """Write a computed price (average entry, break-even) with at most 8 decimals, no trailing
    zeros ("67445.9", "67479.62295"), as positionRisk does (§5.8)."""
    return fmt_plain(value.quantize(EIGHT_PLACES, rounding=ROUND_HALF_UP))


def fmt_money(value: Decimal) -> str:
    """Write a balance, fee or PnL with 8 decimals ("31.02261200")."""
    return fmt_fixed(value, 8)


def fmt_money_or_zero(value: Decimal) -> str:
    """Write a PnL with 8 decimals, or "0" when it is zero (userTrades realizedPnl, `rp`)."""
    return "0" if value == 0 else fmt_money(value)


def fmt_price(spec: SymbolSpec, value: Decimal) -> str:
    """Write a price with the symbol's pricePrecision decimals."""
    return fmt_fixed(value, spec.price_precision)


def fmt_qty(spec: SymbolSpec, value: Decimal) -> str:
    """Write a quantity with the symbol's quantityPrecision decimals."""
    return fmt_fixed(value, spec.quantity_precision)


def fmt_quote(spec: SymbolSpec, value: Decimal) -> str:
    """Write a quote amount (cumQuote, quoteQty) with price + quantity precision decimals.

    Real replies show "0.00000" / "365.67100" for BTCUSDT (2 + 3 decimals, §5.9, §5.17).
    """
    return fmt_fixed(value, spec.price_precision + spec.quantity_precision)


def round_to_tick(spec: SymbolSpec, price: Decimal, *, up: bool) -> Decimal:
    """Round a price onto the tick grid, up (against a buyer) or down (against a seller)."""
    if spec.tick_size <= 0:
        return price
    steps = (price / spec.tick_size).to_integral_value(
        rounding=ROUND_CEILING if up else ROUND_FLOOR
    )
    return (steps * spec.tick_size).normalize()


# -- filters (§5.2, §11.14) ---------------------------------------------------------------------


def check_quantity(spec: SymbolSpec, qty: Decimal, *, is_market: bool) -> None:
    """Apply LOT_SIZE (limit) or MARKET_LOT_SIZE (market) to a quantity; raise Binance's error."""
    step, low, high = (
        (spec.market_step_size, spec.market_min_qty, spec.market_max_qty)
        if is_market
        else (spec.step_size, spec.min_qty, spec.max_qty)
    )
    if qty <= 0:
        raise rejected(-4003)
    if decimals_of(qty) > spec.quantity_precision:
        raise rejected(-1111)
    if step > 0 and (qty - low) % step != 0:
        raise rejected(-4023)
    if qty < low:
        raise rejected(-4004)
    if high > 0 and qty > high:
        raise rejected(-4005)


def check_price(spec: SymbolSpec, price: Decimal) -> None:
    """Apply PRICE_FILTER to a limit, trigger or activation price; raise Binance's error."""
    if price < 0:
        raise rejected(-4001)
    if decimals_of(price) > spec.price_precision:
        raise rejected(-1111)
    if price < spec.min_price or price == 0:
        raise rejected(-4013)
    if spec.max_price > 0 and price > spec.max_price:
        raise rejected(-4002)
    if spec.tick_size > 0 and (price - spec.min_price) % spec.tick_size != 0:
        raise rejected(-4014)


def check_percent_price(spec: SymbolSpec, price: Decimal, mark: Decimal) -> None:
    """Apply PERCENT_PRICE: a limit price must lie within mark x [multiplierDown, multiplierUp].

    Both bounds apply to both sides; the digest (§5.2) leaves the direction rule unconfirmed and
    Binance's newer wording of -4016 ("Limit price can't be higher than ...") is side-neutral.
    """
    if spec.multiplier_up > 0 and price > mark * spec.multiplier_up:
        raise rejected(-4016)
    if spec.multiplier_down > 0 and price < mark * spec.multiplier_down:
        raise rejected(-4024)
