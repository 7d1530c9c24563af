"""What the guard remembers of each position across a restart (issue 13, hole 12).

Pure: the guard passes a position's state (Holding, Plan, Track, ids) and the saved record; these
functions return the record to write, whether it is worth writing now, and whether a record
saved by an earlier guard still describes the position the exchange shows.

- One record per symbol (shared/schemas/guard.GuardPosition): the plan's levels, the trailing
  best mark and carried stop, the partial take-profit and liquidation cut taken, the opening
  time, the ids its orders derive from.
- Written when any of that changes, except the best mark alone, which moves with every better
  mark: it is written when it moved the carried stop, else at most every `BEST_MARK_SAVE_MS`
  (a restart loses at most that much of a trail that has not tightened the stop yet).
- Restored only for the same position: same side, entry price within one tick. A flip, or a
  position closed and opened again at another price, is a new position (default or trader's
  plan, a new clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import msgspec

from shared.core import exits as ex
from shared.schemas.guard import GuardPosition

BEST_MARK_SAVE_MS = 5_000  # a best mark that moved no stop is written at most this often


@dataclass(frozen=True, slots=True)
class Restore:
    """Whether a saved record is the state of the exchange's position, and why."""

    is_kept: bool
    reason: str  # "same_position" | "side_changed" | "entry_changed"
    detail: str  # one sentence with the values compared


def side_of(quantity: Decimal) -> str:
    """Return "LONG" or "SHORT" for a signed position quantity."""
    return "LONG" if quantity > 0 else "SHORT"


def restore_decision(
    saved: GuardPosition, quantity: Decimal, entry_price: Decimal, tick_size: Decimal
) -> Restore:
    """Return whether `saved` still describes the position of signed `quantity` at `entry_price`
    the exchange shows: the same side and an entry within one tick (an added quantity moves the
    entry: a new position as far as the exit rules go)."""
    side = side_of(quantity)
    if saved.side != side:
        return Restore(
            False, "side_changed", f"the record is {saved.side}, the exchange shows {side}"
        )
    if abs(saved.entry_price - entry_price) > tick_size:
        return Restore(
            False,
            "entry_changed",
            f"the record's entry {saved.entry_price} is more than one tick {tick_size} from "
            f"the exchange's {entry_price}",
        )
    return Restore(
        True,
        "same_position",
        f"{side} at entry {entry_price}, opened at {saved.opened_at_ms} ms",
    )


def record_of(
    holding: ex.Holding,
    plan: ex.Plan,
    track: ex.Track,
    signal_id: str,
    plan_id: str,
    exits_sent: int,
    saved_ms: int,
) -> GuardPosition:
    """Return the record of one position's guard state."""
    return GuardPosition(
        symbol=holding.symbol,
        side=side_of(holding.quantity),
        entry_price=holding.entry_price,
        quantity=abs(holding.quantity),
        opened_at_ms=holding.opened_ms,
        stop_loss_price=plan.stop_price,
        take_profit_price=plan.take_profit_price,
        invalidation_price=plan.invalidation_price,
        best_mark=track.best_mark,
        stop_price=track.stop_price,
        has_taken_profit=track.has_taken_profit,
        has_cut_for_liquidation=track.has_cut_for_liquidation,
        signal_id=signal_id,
        plan_id=plan_id,
        exits_sent=exits_sent,
        saved_ms=saved_ms,
    )


def plan_and_track(record: GuardPosition) -> tuple[ex.Plan, ex.Track]:
    """Return the Plan and Track a record restores."""
    plan = ex.Plan(
        stop_price=record.stop_loss_price,
        take_profit_price=record.take_profit_price,
        invalidation_price=record.invalidation_price,
    )
    track = ex.Track(
        best_mark=record.best_mark,
        stop_price=record.stop_price,
        has_taken_profit=record.has_taken_profit,
        has_cut_for_liquidation=record.has_cut_for_liquidation,
    )
    return plan, track


def needs_save(written: GuardPosition | None, current: GuardPosition) -> bool:
    """Return whether `current` should replace the record last written: anything but the best
    mark changed, or the best mark moved and `BEST_MARK_SAVE_MS` passed since that write."""
    if written is None:
        return True
    blank = {"best_mark": Decimal(0), "saved_ms": 0}
    if msgspec.structs.replace(written, **blank) != msgspec.structs.replace(current, **blank):
        return True
    return (
        written.best_mark != current.best_mark
        and current.saved_ms - written.saved_ms >= BEST_MARK_SAVE_MS
    )
