"""Training labels: which barrier a trade entered at a bar's close would have hit first.

For each bar t the entry is close[t]. A long's take-profit lies `take_profit_pct` % above the
entry and its stop `stop_loss_pct` % below; a short mirrors (take-profit below, stop above).
Bars t+1 .. t+horizon_bars are scanned in order: a long hits the take-profit when a bar's high
is >= its price and the stop when a bar's low is <= its price (a short: low <= take-profit,
high >= stop). The first bar touching either decides; a bar touching both counts as the stop
(conservative: the bar's path inside is unknown).

- label 1, exit_return +take_profit_pct/100: take-profit first.
- label 0, exit_return -stop_loss_pct/100: stop first (or both in the same bar).
- label 0, exit_return direction * (close[t+h]/close[t] - 1), h = horizon_bars: neither.
- label -1, exit_return NaN, exit_offset -1: unknown, because t + horizon_bars runs past the last
  bar (even when a barrier was already touched: every known row then saw a full horizon, so
  the end of the data does not favour fast outcomes), or close[t] is not finite and positive.

exit_offset is the number of bars after t at which the outcome was decided (1..horizon_bars).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Outcomes:
    """Per-bar barrier outcomes of one direction (arrays of the input length)."""

    label: npt.NDArray[np.int8]  # 1 take-profit first, 0 stop first or neither, -1 unknown
    exit_return: F64  # fraction, signed for the direction; NaN when unknown
    exit_offset: npt.NDArray[np.int32]  # bars after t when the outcome was decided; -1 unknown


def barrier_outcomes(
    high: F64,
    low: F64,
    close: F64,
    direction: int,
    take_profit_pct: float,
    stop_loss_pct: float,
    horizon_bars: int,
) -> Outcomes:
    """Return the take-profit/stop/horizon outcome of an entry at every bar's close.

    direction is +1 (long) or -1 (short); percentages are of the entry price. Raises ValueError
    for arrays of different lengths or not 1-D, a direction other than +1/-1, a non-positive
    percentage or a horizon below 1.
    """
    if high.ndim != 1 or high.shape != low.shape or high.shape != close.shape:
        raise ValueError(
            f"labels: high {high.shape}, low {low.shape} and close {close.shape} "
            "must be 1-D of one length"
        )
    if direction not in (1, -1):
        raise ValueError(f"labels: direction={direction} must be +1 (long) or -1 (short)")
    if not (take_profit_pct > 0 and stop_loss_pct > 0):
        raise ValueError(
            f"labels: take_profit_pct={take_profit_pct} and stop_loss_pct={stop_loss_pct} "
            "must be > 0"
        )
    if horizon_bars < 1:
        raise ValueError(f"labels: horizon_bars={horizon_bars} must be >= 1")

    total = close.shape[0]
    label = np.full(total, -1, dtype=np.int8)
    exit_return = np.full(total, np.nan, dtype=np.float64)
    exit_offset = np.full(total, -1, dtype=np.int32)
    known = total - horizon_bars  # rows 0 .. known-1 see a full horizon
    if known <= 0:
        return Outcomes(label, exit_return, exit_offset)

    entry = close[:known]
    with np.errstate(invalid="ignore"):
        has_entry = np.isfinite(entry) & (entry > 0)
    entry = np.where(has_entry, entry, 1.0)
    take_profit_move = take_profit_pct / 100.0
    stop_move = stop_loss_pct / 100.0
    take_profit_price = entry * (1.0 + direction * take_profit_move)
    stop_price = entry * (1.0 - direction * stop_move)
    is_open = has_entry.copy()
    label_known = np.zeros(known, dtype=np.int8)
    return_known = np.zeros(known, dtype=np.float64)
    offset_known = np.full(known, horizon_bars, dtype=np.int32)
    # NaN bars compare False (touch nothing); the errstate keeps numpy quiet about them.
    with np.errstate(invalid="ignore"):
        for offset in range(1, horizon_bars + 1):
            bar_high = high[offset : offset + known]
            bar_low = low[offset : offset + known]
            if direction == 1:
                hits_take_profit = bar_high >= take_profit_price
                hits_stop = bar_low <= stop_price
            else:
                hits_take_profit = bar_low <= take_profit_price
                hits_stop = bar_high >= stop_price
            stopped = is_open & hits_stop
            took_profit = is_open & hits_take_profit & ~hits_stop
            return_known[stopped] = -stop_move
            return_known[took_profit] = take_profit_move
            label_known[took_profit] = 1
            offset_known[stopped | took_profit] = offset
            is_open &= ~(stopped | took_profit)
        final = close[horizon_bars : horizon_bars + known]
        held = is_open & np.isfinite(final)
        return_known[held] = direction * (final[held] / entry[held] - 1.0)

    decided = has_entry & (~is_open | held)
    label[:known] = np.where(decided, label_known, np.int8(-1))
    exit_return[:known] = np.where(decided, return_known, np.nan)
    exit_offset[:known] = np.where(decided, offset_known, np.int32(-1))
    return Outcomes(label, exit_return, exit_offset)
