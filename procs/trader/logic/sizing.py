"""Position size and leverage from the model's confidence and the recent win rate.

Pure. Money is Decimal; confidences and win rates are floats, turned into Decimal through their
shortest repr (`Decimal(str(0.8)) == Decimal("0.8")`, as in exits.py) wherever they scale money
or pick an integer, so a boundary written as 0.75 is the boundary applied.

Kelly multiplier: k(c) = (c - 0.5) * 4 for a confidence c in [0, 1]; k = 0 for c <= 0.5 (no
trade). So c = 0.75 -> 1x, c = 1.0 -> 2x (the most a confidence can give).

Notional (`position_notional_usdt`):
    margin = equity * base_margin_fraction * k(c)
    margin = min(margin, equity * max_position_fraction,
                 max(0, equity * max_total_fraction - open_margin))
    notional = margin * leverage
Zero when the equity is not positive. Not rounded: `filters.entry_quantity` floors the quantity.

Win rate (`win_rate`): Laplace's rule (wins + 1) / (total + 2), so no history gives 0.5.

Leverage (`leverage_for`), monotone in win_rate * confidence:
    edge = win_rate * confidence
    scale = clamp((edge - 0.25) / 0.75, 0, 1)      # edge 0.25 (a coin flip at 0.5) -> 0
    wanted = 1 + floor((max_leverage - 1) * scale)  # edge 1.0 -> max_leverage
    stop_safe = floor(1 / (stop_distance_pct / 100 + maint_margin_rate))
    leverage = max(1, min(wanted, max_leverage, bracket_max, stop_safe))
`stop_safe` is the highest leverage at which the liquidation price (a loss of 1/leverage less
the maintenance margin) is not reached before the stop. The result is at least 1 even when
`stop_safe` is 0 (a stop 100 % away): 1x cannot be liquidated by a price move below 100 %.
"""

from __future__ import annotations

import math
from decimal import ROUND_FLOOR, Decimal

_HALF = Decimal("0.5")
_FOUR = Decimal(4)
_HUNDRED = Decimal(100)
_EDGE_FLOOR = Decimal("0.25")


def _dec(value: float) -> Decimal:
    """Return a float as the Decimal it was written as (`0.8` -> `Decimal("0.8")`)."""
    return Decimal(str(value))


def _check_unit(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"sizing: {name}={value} is outside 0..1")


def _kelly(confidence: float) -> Decimal:
    _check_unit("confidence", confidence)
    c = _dec(confidence)
    return (c - _HALF) * _FOUR if c > _HALF else Decimal(0)


def kelly_multiplier(confidence: float) -> float:
    """Return (confidence - 0.5) * 4, or 0 for a confidence of 0.5 or less (no trade).

    Raises ValueError for a confidence outside 0..1 or NaN.
    """
    return float(_kelly(confidence))


def position_notional_usdt(
    equity_usdt: Decimal,
    confidence: float,
    leverage: int,
    open_margin_usdt: Decimal,
    base_margin_fraction: float,
    max_position_fraction: float,
    max_total_fraction: float,
) -> Decimal:
    """Return the notional in USDT to enter: Kelly-scaled margin, capped, times the leverage.

    `open_margin_usdt` is the margin of the positions already open. Raises ValueError for a
    leverage below 1, a negative open margin, or a confidence or fraction outside 0..1.
    """
    if leverage < 1:
        raise ValueError(f"sizing: leverage={leverage} must be >= 1")
    if open_margin_usdt < 0:
        raise ValueError(f"sizing: open_margin_usdt={open_margin_usdt} must be >= 0")
    for name, value in (
        ("base_margin_fraction", base_margin_fraction),
        ("max_position_fraction", max_position_fraction),
        ("max_total_fraction", max_total_fraction),
    ):
        _check_unit(name, value)
    kelly = _kelly(confidence)
    if equity_usdt <= 0 or kelly == 0:
        return Decimal(0)
    margin = equity_usdt * _dec(base_margin_fraction) * kelly
    per_position_cap = equity_usdt * _dec(max_position_fraction)
    total_room = max(Decimal(0), equity_usdt * _dec(max_total_fraction) - open_margin_usdt)
    return min(margin, per_position_cap, total_room) * leverage


def win_rate(wins: int, total: int) -> float:
    """Return the Laplace-smoothed win rate (wins + 1) / (total + 2); 0.5 without history.

    Raises ValueError unless 0 <= wins <= total.
    """
    if not 0 <= wins <= total:
        raise ValueError(f"sizing: wins={wins} must be within 0..total={total}")
    return (wins + 1) / (total + 2)


def stop_safe_leverage(stop_distance_pct: float, maint_margin_rate: float) -> int:
    """Return floor(1 / (stop_distance_pct / 100 + maint_margin_rate)), the highest leverage
    whose liquidation does not come before a stop `stop_distance_pct` % away (may be 0).

    Raises ValueError for a stop distance not above 0 or a maintenance rate outside 0..1.
    """
    if not (math.isfinite(stop_distance_pct) and stop_distance_pct > 0):
        raise ValueError(f"sizing: stop_distance_pct={stop_distance_pct} must be > 0")
    _check_unit("maint_margin_rate", maint_margin_rate)
    loss_fraction = _dec(stop_distance_pct) / _HUNDRED + _dec(maint_margin_rate)
    return int((1 / loss_fraction).to_integral_value(rounding=ROUND_FLOOR))


def leverage_for(
    win_rate: float,
    confidence: float,
    max_leverage: int,
    bracket_max: int,
    stop_distance_pct: float,
    maint_margin_rate: float,
) -> int:
    """Return the leverage for an entry (formula in the module docstring); at least 1.

    Raises ValueError for a win rate, confidence or maintenance rate outside 0..1, a stop
    distance not above 0, or a max_leverage or bracket_max below 1.
    """
    _check_unit("win_rate", win_rate)
    _check_unit("confidence", confidence)
    if max_leverage < 1 or bracket_max < 1:
        raise ValueError(
            f"sizing: max_leverage={max_leverage} and bracket_max={bracket_max} must be >= 1"
        )
    stop_safe = stop_safe_leverage(stop_distance_pct, maint_margin_rate)
    edge = _dec(win_rate) * _dec(confidence)
    excess = min(max(edge - _EDGE_FLOOR, Decimal(0)), Decimal(1) - _EDGE_FLOOR)
    # floor((max - 1) * excess / 0.75) as an exact integer division: (max - 1) * excess * 4 is
    # a finite decimal, so no rounding can drop a level that lands exactly on an integer.
    wanted = 1 + int(((max_leverage - 1) * excess * _FOUR) // 3)
    return max(1, min(wanted, max_leverage, bracket_max, stop_safe))
