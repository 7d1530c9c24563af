"""The kill switch: equity watched against its peak and against the day's start.

Pure: the guard passes the account equity (USDT, wallet balance plus unrealised PnL) and the
time; it flattens and halts on a trip (DESIGN-RULES rule 2).

- `watch_equity` carries the peak equity and the equity at 00:00 UTC of the current day. The
  first equity seen after a UTC midnight becomes that day's start equity (the guard samples
  often, so this is the equity at midnight to within one sample). A time earlier than the
  current day (a wall clock stepped back) does not restart the day.
- `kill_switch_trip` checks, in this order:
  1. drawdown: (peak - equity) / peak * 100 >= max_drawdown_pct -> "kill_switch_drawdown";
  2. daily loss: (day start - equity) / day start * 100 >= daily_loss_limit_pct ->
     "kill_switch_daily_loss" (skipped when the day's start equity is <= 0).
  A peak <= 0 (an empty account) never trips.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from shared.config.ops import KillSwitchConfig

DAY_MS = 86_400_000
_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class EquityWatch:
    """Equity marks the kill switch compares against."""

    peak_equity: Decimal  # highest equity seen, USDT
    day_start_equity: Decimal  # first equity seen in the current UTC day, USDT
    day_start_ms: int  # 00:00 UTC of the current day


def watch_equity(prev: EquityWatch | None, equity: Decimal, now_ms: int) -> EquityWatch:
    """Return the watch after seeing `equity` at `now_ms` (UTC ms): the peak raised, and a new
    day started at the first sample after 00:00 UTC."""
    midnight_ms = now_ms - now_ms % DAY_MS
    if prev is None:
        return EquityWatch(equity, equity, midnight_ms)
    peak = max(prev.peak_equity, equity)
    if midnight_ms > prev.day_start_ms:
        return EquityWatch(peak, equity, midnight_ms)
    return EquityWatch(peak, prev.day_start_equity, prev.day_start_ms)


def _pct(x: Decimal) -> str:
    return f"{x.quantize(Decimal('0.01'))}"


def kill_switch_trip(
    watch: EquityWatch, equity: Decimal, cfg: KillSwitchConfig
) -> tuple[str, str] | None:
    """Return (reason, detail) when the drawdown or the daily loss reaches its limit, else None.

    The drawdown is checked first; a peak <= 0 never trips.
    """
    peak = watch.peak_equity
    if peak <= 0:
        return None
    max_dd = Decimal(str(cfg.max_drawdown_pct))
    if (peak - equity) * _HUNDRED >= max_dd * peak:
        drawdown = (peak - equity) * _HUNDRED / peak
        return (
            "kill_switch_drawdown",
            f"equity {equity} is {_pct(drawdown)}% below the peak {peak}, limit {max_dd}%",
        )
    start = watch.day_start_equity
    max_daily = Decimal(str(cfg.daily_loss_limit_pct))
    if start > 0 and (start - equity) * _HUNDRED >= max_daily * start:
        loss = (start - equity) * _HUNDRED / start
        return (
            "kill_switch_daily_loss",
            f"equity {equity} is {_pct(loss)}% below the day's start {start}, limit {max_daily}%",
        )
    return None
