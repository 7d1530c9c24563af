"""The guard's exit rules: when to close an open position, and how much of it.

Pure: the guard passes the position, its plan, the carried state, the mark price, the time and
the trend; `evaluate_exit` returns at most one `Exit` and the guard performs it.

Prices and quantities are Decimal. Percentages come from `ExitsConfig` as floats and are turned
into Decimal through their shortest repr (`Decimal(str(2.0)) == Decimal("2.0")`), so a
boundary written in the config is the boundary applied, without binary float error.

Plan (`plan_at_distances`; `default_plan` with the config's distances, when the trader sent no
usable plan): the stop lies `stop_loss_pct` % of the entry on the losing side, the take-profit
`take_profit_pct` % on the winning side. Both are
rounded to the tick TOWARD the entry (long stop up, short stop down, long take-profit down, short
take-profit up), so neither lies further from the entry than configured. A level that rounding
puts on or across the entry is moved to the nearest tick strictly on its own side of the entry.

Track (`update_track`): `best_mark` is the most favourable mark seen. Once the best mark's profit
(% of the entry) reaches `trailing_activation_pct`, the trailing stop is the best mark less
(long) / plus (short) `trailing_distance_pct` %, rounded to the tick toward the mark (long up,
short down: never further than configured). The carried stop is the tighter of the trailing
stop and the current one, so it never loosens.

Rules (`evaluate_exit`), first match wins, in `REASONS` order:

1. emergency: unrealised PnL <= `emergency_pnl_pct` % of the margin -> full.
2. liquidation_buffer: a known liquidation price (> 0) and |mark - liq| / mark * 100 <=
   `liquidation_buffer_pct` -> the first time, close `liquidation_cut_fraction` of the position
   (floored to the step; full when that is 0 or leaves less than one step); after a cut -> full.
3. stop_loss / trailing_stop: long mark <= stop, short mark >= stop (the carried stop) -> full;
   "trailing_stop" when the carried stop is tighter than the plan's stop, else "stop_loss".
4. invalidation: the plan's invalidation price crossed against the trade (long mark <= it,
   short mark >= it) -> full.
5. take_profit: the plan's take-profit reached (long mark >= it, short mark <= it) and not taken
   yet -> close `take_profit_close_fraction` (floored to the step; full when that is 0 or leaves
   less than one step).
6. max_holding: `max_holding_s` > 0 and held >= max_holding_s -> full.
7. time_stop: `time_stop_s` > 0, held >= time_stop_s and unrealised PnL <= 0 -> full.
8. counter_trend: a trend against the position (long trend <= -min_strength, short trend >=
   +min_strength) and unrealised PnL < 0 -> full.

After the guard executed a partial take-profit or liquidation cut, `apply_exit` records it in
the track so the same partial is not sent twice.

Resting stop (`stop_to_rest`): the trigger the exchange-resident stop should have. Each move at
the exchange costs order requests (on Binance a bridge, a cancel, a place and a cancel: see
shared/core/reconcile.py), so the carried stop is followed only on a meaningful change: a stop
that tightens moves once it is at least `min_move_ticks` ticks tighter than the resting one and
`min_interval_ms` after the symbol's last move; a first stop, or one that the carried stop would
loosen (a new plan, never a trail), follows at once. Between moves the guard's own stop rule
(rule 3 below, on the carried stop) still closes at the tighter level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from shared.config.ops import ExitsConfig
from shared.core.filters import floor_to_step, round_to_tick

REASONS = (
    "emergency",
    "liquidation_buffer",
    "stop_loss",
    "trailing_stop",
    "invalidation",
    "take_profit",
    "max_holding",
    "time_stop",
    "counter_trend",
)

_HUNDRED = Decimal(100)
_MS_PER_S = Decimal(1000)


@dataclass(frozen=True, slots=True)
class Holding:
    """One open position as the guard sees it."""

    symbol: str
    quantity: Decimal  # signed, negative = short, never 0
    entry_price: Decimal
    leverage: int
    liquidation_price: Decimal  # Decimal(0) = none/unknown (then the buffer rule is skipped)
    opened_ms: int  # UTC ms the position was opened (or adopted)
    isolated_margin: Decimal = Decimal(0)  # 0 (cross): margin = |qty| * entry / leverage


@dataclass(frozen=True, slots=True)
class Plan:
    """What to enforce for a position."""

    stop_price: Decimal
    take_profit_price: Decimal | None = None
    invalidation_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Track:
    """Per-position state carried between evaluations."""

    best_mark: Decimal  # most favourable mark seen since entry
    stop_price: Decimal  # current stop: starts at plan.stop_price, only ever tightens
    has_taken_profit: bool = False
    has_cut_for_liquidation: bool = False


@dataclass(frozen=True, slots=True)
class Exit:
    """One close decided by `evaluate_exit`."""

    reason: str  # one of REASONS
    quantity: Decimal  # absolute quantity to close, a multiple of step_size; == |position| if full
    is_full: bool
    detail: str  # one sentence with the values that triggered it


# ---- helpers ------------------------------------------------------------------------------------


def _dec(value: float) -> Decimal:
    """Return a config float as the Decimal it was written as (`2.0` -> `Decimal("2.0")`)."""
    return Decimal(str(value))


def _check_positive(name: str, value: Decimal) -> None:
    if not value > 0:
        raise ValueError(f"exits: {name}={value} must be > 0")


def _is_long(holding: Holding) -> bool:
    if holding.quantity == 0:
        raise ValueError(f"exits: {holding.symbol} holding has quantity 0")
    return holding.quantity > 0


def unrealised_pnl(holding: Holding, mark: Decimal) -> Decimal:
    """Return the unrealised PnL in quote currency (USDT) at `mark`: qty * (mark - entry)."""
    return holding.quantity * (mark - holding.entry_price)


def margin_of(holding: Holding) -> Decimal:
    """Return the position's margin in USDT: the isolated margin when set, else
    |qty| * entry / leverage. Raises ValueError for a leverage below 1."""
    if holding.isolated_margin > 0:
        return holding.isolated_margin
    if holding.leverage < 1:
        raise ValueError(f"exits: {holding.symbol} leverage={holding.leverage} must be >= 1")
    return abs(holding.quantity) * holding.entry_price / holding.leverage


# ---- plan and track -----------------------------------------------------------------------------


def default_plan(holding: Holding, cfg: ExitsConfig, tick_size: Decimal) -> Plan:
    """Return the stop and take-profit used when the trader sent no plan (or one not usable):
    `plan_at_distances` with the config's `stop_loss_pct` and `take_profit_pct`.

    Raises ValueError for a non-positive tick or entry price.
    """
    return plan_at_distances(holding, _dec(cfg.stop_loss_pct), _dec(cfg.take_profit_pct), tick_size)


def plan_at_distances(
    holding: Holding,
    stop_loss_pct: Decimal,
    take_profit_pct: Decimal | None,
    tick_size: Decimal,
) -> Plan:
    """Return the stop `stop_loss_pct` % of the entry on the losing side and the take-profit
    `take_profit_pct` % on the winning side (None: no take-profit).

    Both are rounded to `tick_size` toward the entry (see the module docstring); a level that
    rounding puts on or across the entry is moved one tick onto its own side. Raises
    ValueError for a non-positive tick or entry price.
    """
    _check_positive("tick_size", tick_size)
    _check_positive("entry_price", holding.entry_price)
    entry = holding.entry_price
    stop_off = entry * stop_loss_pct / _HUNDRED
    take_profit: Decimal | None = None
    if _is_long(holding):
        stop = round_to_tick(entry - stop_off, tick_size, "up")
        if stop >= entry:
            stop = round_to_tick(entry, tick_size, "up") - tick_size
        if take_profit_pct is not None:
            take_profit = round_to_tick(
                entry + entry * take_profit_pct / _HUNDRED, tick_size, "down"
            )
            if take_profit <= entry:
                take_profit = round_to_tick(entry, tick_size, "down") + tick_size
    else:
        stop = round_to_tick(entry + stop_off, tick_size, "down")
        if stop <= entry:
            stop = round_to_tick(entry, tick_size, "down") + tick_size
        if take_profit_pct is not None:
            take_profit = round_to_tick(entry - entry * take_profit_pct / _HUNDRED, tick_size, "up")
            if take_profit >= entry:
                take_profit = round_to_tick(entry, tick_size, "up") - tick_size
    return Plan(stop_price=stop, take_profit_price=take_profit)


def new_track(holding: Holding, plan: Plan) -> Track:
    """Return the state of a position just opened (or adopted): best mark = entry, stop = plan."""
    return Track(best_mark=holding.entry_price, stop_price=plan.stop_price)


def update_track(
    track: Track, holding: Holding, mark: Decimal, cfg: ExitsConfig, tick_size: Decimal
) -> Track:
    """Return the track after seeing `mark`: best mark updated, the stop trailed (never loosened).

    Raises ValueError for a non-positive tick.
    """
    _check_positive("tick_size", tick_size)
    entry = holding.entry_price
    is_long = _is_long(holding)
    best = max(track.best_mark, mark) if is_long else min(track.best_mark, mark)
    profit_pct = (best - entry if is_long else entry - best) * _HUNDRED / entry
    stop = track.stop_price
    if profit_pct >= _dec(cfg.trailing_activation_pct):
        distance = best * _dec(cfg.trailing_distance_pct) / _HUNDRED
        if is_long:
            stop = max(stop, round_to_tick(best - distance, tick_size, "up"))
        else:
            stop = min(stop, round_to_tick(best + distance, tick_size, "down"))
    return replace(track, best_mark=best, stop_price=stop)


def stop_to_rest(
    resting: Decimal | None,
    carried: Decimal,
    is_long: bool,
    tick_size: Decimal,
    min_move_ticks: int,
    last_move_ms: int | None,
    now_ms: int,
    min_interval_ms: int,
) -> Decimal:
    """Return the trigger the resting stop should have: `carried` (the track's stop) when no
    stop rests (`resting` None), when it would loosen the resting one, or when it is at least
    `min_move_ticks` ticks tighter and `min_interval_ms` have passed since `last_move_ms` (None:
    never moved); else `resting`. Times in ms on one clock. Raises ValueError for a
    non-positive tick."""
    _check_positive("tick_size", tick_size)
    if resting is None or resting == carried:
        return carried
    tighter_by = carried - resting if is_long else resting - carried
    if tighter_by < 0:
        return carried
    if tighter_by < tick_size * min_move_ticks:
        return resting
    if last_move_ms is not None and now_ms - last_move_ms < min_interval_ms:
        return resting
    return carried


# ---- evaluation ---------------------------------------------------------------------------------


def _partial(reason: str, size: Decimal, fraction: float, step: Decimal, detail: str) -> Exit:
    """Return an exit closing `fraction` of `size` floored to the step, or all of it when that
    is 0 or would leave less than one step."""
    cut = floor_to_step(size * _dec(fraction), step)
    if cut <= 0 or size - cut < step:
        return Exit(reason, size, True, detail)
    return Exit(reason, cut, False, detail)


def evaluate_exit(
    holding: Holding,
    plan: Plan,
    track: Track,
    mark: Decimal,
    now_ms: int,
    trend: float | None,
    cfg: ExitsConfig,
    step_size: Decimal,
) -> Exit | None:
    """Return the first exit rule that matches (in `REASONS` order), or None.

    `trend` is `trend_strength` of recent closes (None = unknown: the counter-trend rule is
    skipped). Raises ValueError for a non-positive mark or step, or a zero quantity.
    """
    _check_positive("mark", mark)
    _check_positive("step_size", step_size)
    is_long = _is_long(holding)
    size = abs(holding.quantity)
    pnl = unrealised_pnl(holding, mark)
    held_ms = now_ms - holding.opened_ms

    margin = margin_of(holding)
    emergency_pct = _dec(cfg.emergency_pnl_pct)
    if pnl * _HUNDRED <= emergency_pct * margin:
        return Exit(
            "emergency", size, True, f"unrealised pnl {pnl} <= {emergency_pct}% of margin {margin}"
        )

    liq = holding.liquidation_price
    buffer_pct = _dec(cfg.liquidation_buffer_pct)
    if liq > 0 and abs(mark - liq) * _HUNDRED <= buffer_pct * mark:
        detail = f"mark {mark} within {buffer_pct}% of liquidation price {liq}"
        if track.has_cut_for_liquidation:
            return Exit("liquidation_buffer", size, True, detail + " after a cut")
        return _partial("liquidation_buffer", size, cfg.liquidation_cut_fraction, step_size, detail)

    stop = track.stop_price
    if (mark <= stop) if is_long else (mark >= stop):
        is_trailed = stop > plan.stop_price if is_long else stop < plan.stop_price
        reason = "trailing_stop" if is_trailed else "stop_loss"
        sign = "<=" if is_long else ">="
        return Exit(reason, size, True, f"mark {mark} {sign} stop {stop}")

    inv = plan.invalidation_price
    if inv is not None and ((mark <= inv) if is_long else (mark >= inv)):
        sign = "<=" if is_long else ">="
        return Exit("invalidation", size, True, f"mark {mark} {sign} invalidation {inv}")

    tp = plan.take_profit_price
    if (
        tp is not None
        and not track.has_taken_profit
        and ((mark >= tp) if is_long else (mark <= tp))
    ):
        sign = ">=" if is_long else "<="
        return _partial(
            "take_profit",
            size,
            cfg.take_profit_close_fraction,
            step_size,
            f"mark {mark} {sign} take-profit {tp}",
        )

    if cfg.max_holding_s > 0 and held_ms >= _dec(cfg.max_holding_s) * _MS_PER_S:
        return Exit(
            "max_holding", size, True, f"held {held_ms} ms >= max holding {cfg.max_holding_s} s"
        )

    if cfg.time_stop_s > 0 and held_ms >= _dec(cfg.time_stop_s) * _MS_PER_S and pnl <= 0:
        return Exit(
            "time_stop",
            size,
            True,
            f"held {held_ms} ms >= time stop {cfg.time_stop_s} s with pnl {pnl} <= 0",
        )

    if trend is not None and pnl < 0:
        strength = cfg.counter_trend_min_strength
        if (trend <= -strength) if is_long else (trend >= strength):
            side = "long" if is_long else "short"
            return Exit(
                "counter_trend",
                size,
                True,
                f"trend {trend} against the {side} beyond {strength} with pnl {pnl} < 0",
            )
    return None


def apply_exit(track: Track, exit: Exit) -> Track:
    """Return the track after `exit` was executed: a partial take-profit or liquidation cut is
    recorded so it is not repeated; any other exit leaves the track unchanged."""
    if exit.is_full:
        return track
    if exit.reason == "take_profit":
        return replace(track, has_taken_profit=True)
    if exit.reason == "liquidation_buffer":
        return replace(track, has_cut_for_liquidation=True)
    return track


def _ema(closes: list[float], bars: int) -> float:
    alpha = 2.0 / (bars + 1)
    ema = closes[0]
    for close in closes[1:]:
        ema = alpha * close + (1.0 - alpha) * ema
    return ema


def trend_strength(closes: npt.NDArray[np.float64], fast_bars: int, slow_bars: int) -> float | None:
    """Return (EMA_fast - EMA_slow) / last close over all `closes` (oldest first).

    Each EMA uses alpha = 2/(n+1) and is seeded with the first close. Returns None when there
    are fewer than `slow_bars` closes, any close is not finite, or the last close is 0. Raises
    ValueError for a bar count below 1.
    """
    if fast_bars < 1 or slow_bars < 1:
        raise ValueError(f"exits: trend bars fast={fast_bars} slow={slow_bars} must be >= 1")
    values = [float(c) for c in closes]
    if len(values) < slow_bars or len(values) == 0:
        return None
    if not all(math.isfinite(v) for v in values) or values[-1] == 0.0:
        return None
    return (_ema(values, fast_bars) - _ema(values, slow_bars)) / values[-1]
