"""What the guard remembers of a position across a restart (issue 13, hole 12): the restore
decision, the record's round trip through the positions file's schema, and when it is written."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from procs.guard.logic import memory as mem
from shared.core import exits as ex
from shared.schemas import guard as g

TICK = Decimal("0.1")
HOLDING = ex.Holding(
    symbol="BTCUSDT",
    quantity=Decimal("0.05"),
    entry_price=Decimal("100000.0"),
    leverage=5,
    liquidation_price=Decimal("80000"),
    opened_ms=1_700_000_000_000,
)
PLAN = ex.Plan(stop_price=Decimal("98000.0"), take_profit_price=Decimal("103000.0"))
TRACK = ex.Track(
    best_mark=Decimal("103100.0"), stop_price=Decimal("101000.0"), has_taken_profit=True
)


def saved(**changes: object) -> g.GuardPosition:
    record = mem.record_of(HOLDING, PLAN, TRACK, "BTCUSDT_1", "slt-7-entry-0", 2, 1_700_000_100_000)
    return msgspec.structs.replace(record, **changes)


def test_restore_decision_keeps_the_same_side_with_the_entry_within_a_tick() -> None:
    decision = mem.restore_decision(saved(), Decimal("0.02"), Decimal("100000.1"), TICK)
    assert (decision.is_kept, decision.reason) == (True, "same_position")


def test_restore_decision_drops_a_flipped_position() -> None:
    decision = mem.restore_decision(saved(), Decimal("-0.05"), Decimal("100000.0"), TICK)
    assert (decision.is_kept, decision.reason) == (False, "side_changed")
    assert "LONG" in decision.detail and "SHORT" in decision.detail


def test_restore_decision_drops_a_position_whose_entry_moved_more_than_a_tick() -> None:
    decision = mem.restore_decision(saved(), Decimal("0.05"), Decimal("100000.2"), TICK)
    assert (decision.is_kept, decision.reason) == (False, "entry_changed")


def test_a_restored_record_gives_back_the_plan_and_the_track_with_the_partial_taken() -> None:
    raw = g.encode_json(g.GuardPositions(positions=[saved()]))
    (record,) = g.decode_positions(raw).positions
    plan, track = mem.plan_and_track(record)
    assert plan == PLAN and track == TRACK
    assert record.opened_at_ms == HOLDING.opened_ms and record.side == "LONG"
    assert (record.signal_id, record.plan_id, record.exits_sent) == (
        "BTCUSDT_1",
        "slt-7-entry-0",
        2,
    )


def test_a_best_mark_that_moved_no_stop_is_written_at_most_every_few_seconds() -> None:
    written = saved()
    soon = saved(best_mark=Decimal("103200.0"), saved_ms=written.saved_ms + 1_000)
    later = saved(best_mark=Decimal("103200.0"), saved_ms=written.saved_ms + mem.BEST_MARK_SAVE_MS)
    assert not mem.needs_save(written, soon)
    assert mem.needs_save(written, later)
    assert not mem.needs_save(written, saved(saved_ms=written.saved_ms + 60_000))


def test_a_stop_that_moved_or_a_partial_taken_is_written_at_once() -> None:
    written = saved(has_taken_profit=False)
    assert mem.needs_save(written, saved(saved_ms=written.saved_ms + 1))
    assert mem.needs_save(saved(), saved(stop_price=Decimal("101100.0")))
    assert mem.needs_save(None, saved())
