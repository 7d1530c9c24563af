"""The kill switch: equity watched against its peak and against the day's start.

Pure: the guard passes the account equity (USDT, wallet balance plus unrealised PnL), the
exchange time of the wallet balance it read, the time, the operator's re-arm and the account's
transfers; it flattens and halts on a trip (DESIGN-RULES rule 2). The watch is persisted by the
guard (`<run.dir>/guard/equity.json`) so a restart keeps the peak and the day's start.

- `watch_equity` carries the peak equity and the equity at 00:00 UTC of the current day. The
  first equity seen after a UTC midnight becomes that day's start equity (the guard samples
  often, so this is the equity at midnight to within one sample). A time earlier than the
  current day (a wall clock stepped back) does not restart the day. Each mark remembers the
  exchange time of the wallet balance it was read with (`*_balance_ms`).
- `reset_watch` starts the watch again from the current equity: what `slt rearm` asks for after
  a kill-switch trip (`HaltState.equity_reset_ms` newer than the watch's `reset_ms`), so the next
  check does not trip again on the same loss.
- `net_transfers` moves the marks by each transfer into (+) or out of (-) the futures wallet
  (income type TRANSFER) newer than the watch's `transfers_through_ms`, so moving money is never
  a gain or a loss. A mark is moved only when it was read before the transfer (its balance time
  is older than the transfer's time); a mark read after it already holds it. This makes netting
  late harmless: a transfer found minutes after it happened is netted the same. A sample taken
  between a transfer and its netting is judged against the marks of before the transfer.
- `kill_switch_trip` checks, in this order:
  1. drawdown: (peak - equity) / peak * 100 >= max_drawdown_pct -> "kill_switch_drawdown";
  2. daily loss: (day start - equity) / day start * 100 >= daily_loss_limit_pct ->
     "kill_switch_daily_loss" (skipped when the day's start equity is <= 0).
  A peak <= 0 (an empty account) never trips.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from shared.config.ops import KillSwitchConfig

DAY_MS = 86_400_000
_HUNDRED = Decimal(100)
# ACCOUNT_UPDATE reasons (`a.m`, BINANCE-API.md §6.3) that move money in or out of the wallet:
# the guard then fetches the income history (TRANSFER rows) before its next check.
TRANSFER_REASONS = frozenset(
    {
        "DEPOSIT",
        "WITHDRAW",
        "WITHDRAW_REJECT",
        "ADMIN_DEPOSIT",
        "ADMIN_WITHDRAW",
        "ASSET_TRANSFER",
        "MARGIN_TRANSFER",
        "COIN_SWAP_DEPOSIT",
        "COIN_SWAP_WITHDRAW",
    }
)


@dataclass(frozen=True, slots=True)
class EquityWatch:
    """Equity marks the kill switch compares against (persisted as run/guard/equity.json)."""

    peak_equity: Decimal  # highest equity seen, USDT
    day_start_equity: Decimal  # first equity seen in the current UTC day, USDT
    day_start_ms: int  # 00:00 UTC of the current day
    peak_balance_ms: int = 0  # exchange time of the wallet balance the peak was read with
    day_start_balance_ms: int = 0  # the same for the day's start equity
    transfers_through_ms: int = 0  # transfers up to this exchange time (inclusive) are netted
    reset_ms: int = 0  # the last operator reset applied (HaltState.equity_reset_ms)


@dataclass(frozen=True, slots=True)
class Transfer:
    """One move of money into (+) or out of (-) the futures wallet: an income TRANSFER row."""

    amount_usdt: Decimal
    time_ms: int  # exchange time of the transfer


def watch_equity(
    prev: EquityWatch | None, equity: Decimal, now_ms: int, balance_ms: int = 0
) -> EquityWatch:
    """Return the watch after seeing `equity` at `now_ms` (UTC ms), read with a wallet balance
    of exchange time `balance_ms`: the peak raised, and a new day started at the first sample
    after 00:00 UTC. A new watch counts every transfer up to `balance_ms` as netted."""
    midnight_ms = now_ms - now_ms % DAY_MS
    if prev is None:
        return EquityWatch(equity, equity, midnight_ms, balance_ms, balance_ms, balance_ms)
    watch = prev
    if equity > prev.peak_equity:
        watch = replace(watch, peak_equity=equity, peak_balance_ms=balance_ms)
    if midnight_ms > prev.day_start_ms:
        watch = replace(
            watch,
            day_start_equity=equity,
            day_start_ms=midnight_ms,
            day_start_balance_ms=balance_ms,
        )
    return watch


def reset_watch(
    prev: EquityWatch, equity: Decimal, now_ms: int, balance_ms: int, reset_ms: int
) -> EquityWatch:
    """Return a watch started again from `equity` (peak and day start), recording the operator
    reset `reset_ms` as applied; transfers already netted stay netted."""
    fresh = watch_equity(None, equity, now_ms, balance_ms)
    through_ms = max(prev.transfers_through_ms, balance_ms)
    return replace(fresh, transfers_through_ms=through_ms, reset_ms=reset_ms)


def needs_reset(watch: EquityWatch, equity_reset_ms: int) -> bool:
    """Return True when the halt record carries an operator reset the watch has not applied."""
    return equity_reset_ms > watch.reset_ms


def net_transfers(
    watch: EquityWatch, transfers: Iterable[Transfer], through_ms: int
) -> EquityWatch:
    """Return the watch with every transfer in (transfers_through_ms, through_ms] netted out of
    the marks read before it, and `transfers_through_ms` advanced to `through_ms`.

    Transfers outside that window (already netted, or not yet covered) are ignored, so the same
    rows may be passed twice.
    """
    peak, day_start = watch.peak_equity, watch.day_start_equity
    for t in transfers:
        if not watch.transfers_through_ms < t.time_ms <= through_ms:
            continue
        if watch.peak_balance_ms < t.time_ms:
            peak += t.amount_usdt
        if watch.day_start_balance_ms < t.time_ms:
            day_start += t.amount_usdt
    return replace(
        watch,
        peak_equity=peak,
        day_start_equity=day_start,
        transfers_through_ms=max(watch.transfers_through_ms, through_ms),
    )


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
