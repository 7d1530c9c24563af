"""Exchange rounding and order checks: tick, step, quantity limits and minimum notional.

Pure, Decimal throughout. The symbol's rules come from `SymbolSpec` (exchangeInfo filters).

- `floor_to_step`: qty -> floor(qty / step) * step; never rounds a quantity up, so an order
  never exceeds the notional it was sized for.
- `round_to_tick`: price -> k * tick with k = floor ("down"), ceiling ("up") or the nearest
  integer, halves away from zero ("nearest") of price / tick.
- `entry_quantity` (a MARKET entry): qty = floor_to_step(notional / price, market_step_size)
  (MARKET_LOT_SIZE). Problems, one sentence each naming the symbol, the value and the limit:
  the symbol not TRADING; qty < market_min_qty; qty > market_max_qty; qty * price <
  min_notional_usdt (MIN_NOTIONAL; a notional equal to the minimum passes, as on Binance).
  An order with problems must not be sent; the quantity is still returned for the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from shared.schemas.binance.market import SymbolSpec

_ROUNDINGS = {"down": ROUND_FLOOR, "up": ROUND_CEILING, "nearest": ROUND_HALF_UP}


@dataclass(frozen=True, slots=True)
class OrderCheck:
    """The quantity an order would carry, and why it must not be sent (empty: it may)."""

    quantity: Decimal
    problems: tuple[str, ...]

    @property
    def is_ok(self) -> bool:
        """Return True when the order has no problem."""
        return not self.problems


def floor_to_step(qty: Decimal, step: Decimal) -> Decimal:
    """Return `qty` floored to a multiple of `step`.

    Raises ValueError for a step not above 0 or a negative quantity.
    """
    if not step > 0:
        raise ValueError(f"filters: step {step} must be > 0")
    if qty < 0:
        raise ValueError(f"filters: quantity {qty} must be >= 0")
    return (qty / step).to_integral_value(rounding=ROUND_FLOOR) * step


def round_to_tick(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    """Return `price` as a multiple of `tick`, rounded "down", "up" or to the "nearest".

    Raises ValueError for a tick not above 0 or an unknown rounding.
    """
    if not tick > 0:
        raise ValueError(f"filters: tick {tick} must be > 0")
    mode = _ROUNDINGS.get(rounding)
    if mode is None:
        raise ValueError(f"filters: rounding {rounding!r} is not down, up or nearest")
    return (price / tick).to_integral_value(rounding=mode) * tick


def entry_quantity(notional_usdt: Decimal, price: Decimal, spec: SymbolSpec) -> OrderCheck:
    """Return the MARKET entry quantity for `notional_usdt` at `price`, with its problems.

    Raises ValueError for a price not above 0 or a negative notional.
    """
    if not price > 0:
        raise ValueError(f"filters: {spec.symbol} price {price} must be > 0")
    if notional_usdt < 0:
        raise ValueError(f"filters: {spec.symbol} notional {notional_usdt} must be >= 0")
    qty = floor_to_step(notional_usdt / price, spec.market_step_size)
    problems: list[str] = []
    if spec.status != "TRADING":
        problems.append(f"{spec.symbol} status {spec.status} is not TRADING")
    if qty < spec.market_min_qty:
        problems.append(f"{spec.symbol} quantity {qty} is below the minimum {spec.market_min_qty}")
    if qty > spec.market_max_qty:
        problems.append(f"{spec.symbol} quantity {qty} is above the maximum {spec.market_max_qty}")
    notional = qty * price
    if notional < spec.min_notional_usdt:
        problems.append(
            f"{spec.symbol} notional {notional} USDT is below the minimum "
            f"{spec.min_notional_usdt} USDT"
        )
    return OrderCheck(qty, tuple(problems))
