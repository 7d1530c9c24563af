"""The guard's silence policy: REST mode, halt, dead-man's flatten, at their exact thresholds."""

from __future__ import annotations

from dataclasses import replace

from procs.guard.logic.silence import Liveness, SilenceDecision, silence_decision
from shared.config.ops import DmsConfig, GuardConfig

NOW = 10_000_000
GUARD = GuardConfig()  # feed 5 s -> REST, trader 10 s -> halt
DMS = DmsConfig()  # silence 120 s, blind 60 s
FRESH = Liveness(NOW, NOW - 1_000_000, NOW, NOW, NOW, has_positions=True, stream_mark_last_ms=NOW)


def decide(live: Liveness, dms: DmsConfig = DMS) -> SilenceDecision:
    return silence_decision(live, GUARD, dms)


def test_all_fresh_does_nothing() -> None:
    assert decide(FRESH) == SilenceDecision(
        False, False, None, "feed silent 0.000 s, trader silent 0.000 s, freshest mark 0.000 s old"
    )


def test_feed_silent_exactly_the_threshold_stays_on_the_bus() -> None:
    assert not decide(replace(FRESH, feed_last_ms=NOW - 5_000)).use_rest


def test_feed_silent_one_ms_past_the_threshold_switches_to_rest() -> None:
    got = decide(replace(FRESH, feed_last_ms=NOW - 5_001))
    assert got == SilenceDecision(
        True, False, None, "feed silent 5.001 s, trader silent 0.000 s, freshest mark 0.000 s old"
    )


def test_trader_silent_exactly_the_threshold_does_not_halt() -> None:
    assert not decide(replace(FRESH, trader_last_ms=NOW - 10_000)).halt_entries


def test_trader_silent_one_ms_past_the_threshold_halts_entries() -> None:
    got = decide(replace(FRESH, trader_last_ms=NOW - 10_001))
    assert (got.use_rest, got.halt_entries, got.flatten_reason) == (False, True, None)


def test_never_seen_counts_from_the_start_of_watching() -> None:
    live = Liveness(
        NOW, NOW - 5_001, None, None, None, has_positions=False, stream_mark_last_ms=None
    )
    got = decide(live)
    assert (got.use_rest, got.halt_entries, got.flatten_reason) == (True, False, None)
    assert not decide(replace(live, started_ms=NOW - 5_000)).use_rest


def test_feed_and_trader_both_silent_past_dms_flattens() -> None:
    live = replace(FRESH, feed_last_ms=NOW - 120_001, trader_last_ms=NOW - 120_001)
    assert decide(live) == SilenceDecision(
        True,
        True,
        "dms_silence",
        "feed silent 120.001 s, trader silent 120.001 s, freshest mark 0.000 s old",
    )


def test_dms_silence_at_exact_threshold_does_not_flatten() -> None:
    live = replace(FRESH, feed_last_ms=NOW - 120_000, trader_last_ms=NOW - 120_001)
    assert decide(live).flatten_reason is None
    live = replace(FRESH, feed_last_ms=NOW - 120_001, trader_last_ms=NOW - 120_000)
    assert decide(live).flatten_reason is None


def test_only_one_of_feed_and_trader_silent_does_not_flatten() -> None:
    live = replace(FRESH, feed_last_ms=NOW - 500_000)
    assert decide(live).flatten_reason is None


def test_blind_one_ms_past_the_threshold_flattens() -> None:
    assert decide(replace(FRESH, mark_last_ms=NOW - 60_001)).flatten_reason == "dms_blind"


def test_blind_at_exact_threshold_does_not_flatten() -> None:
    assert decide(replace(FRESH, mark_last_ms=NOW - 60_000)).flatten_reason is None


def test_never_seen_mark_counts_from_the_start_of_watching() -> None:
    live = replace(FRESH, started_ms=NOW - 60_001, mark_last_ms=None)
    assert decide(live).flatten_reason == "dms_blind"
    assert decide(replace(live, started_ms=NOW - 60_000)).flatten_reason is None


def test_silence_is_checked_before_blindness() -> None:
    live = replace(
        FRESH, feed_last_ms=NOW - 200_000, trader_last_ms=NOW - 200_000, mark_last_ms=NOW - 200_000
    )
    assert decide(live).flatten_reason == "dms_silence"


def test_no_positions_never_flattens_but_still_reports_rest_and_halt() -> None:
    live = Liveness(NOW, 0, NOW - 500_000, NOW - 500_000, NOW - 500_000, False, NOW - 500_000)
    got = decide(live)
    assert (got.use_rest, got.halt_entries, got.flatten_reason) == (True, True, None)


def test_dms_disabled_never_flattens() -> None:
    live = Liveness(NOW, 0, NOW - 500_000, NOW - 500_000, NOW - 500_000, True, NOW - 500_000)
    got = decide(live, replace(DMS, enabled=False))
    assert (got.use_rest, got.halt_entries, got.flatten_reason) == (True, True, None)


def test_stale_streamed_marks_switch_to_rest_while_the_feed_beats() -> None:
    """A stalled socket: the feed beats (fresh), its marks do not (issue 13, hole 14)."""
    live = replace(FRESH, stream_mark_last_ms=NOW - 30_001, mark_last_ms=NOW - 30_001)
    got = decide(live)
    assert (got.use_rest, got.flatten_reason) == (True, None)
    assert got.detail.endswith("streamed marks 30.001 s old")
    assert not decide(replace(live, stream_mark_last_ms=NOW - 30_000)).use_rest


def test_stale_streamed_marks_without_positions_do_not_switch_to_rest() -> None:
    live = replace(FRESH, has_positions=False, stream_mark_last_ms=NOW - 500_000)
    assert not decide(live).use_rest


def test_a_position_never_marked_by_a_stream_switches_to_rest_after_the_threshold() -> None:
    live = replace(FRESH, started_ms=NOW - 30_001, stream_mark_last_ms=None)
    assert decide(live).use_rest
    assert not decide(replace(live, started_ms=NOW - 30_000)).use_rest


def test_fresh_rest_marks_keep_a_stalled_stream_from_the_blind_flatten() -> None:
    """Streams stalled for 3 minutes, REST marks fresh: REST mode, nothing flattened."""
    live = replace(FRESH, stream_mark_last_ms=NOW - 180_000, mark_last_ms=NOW - 1_000)
    got = decide(live)
    assert (got.use_rest, got.halt_entries, got.flatten_reason) == (True, False, None)


def test_blind_flattens_only_once_rest_marks_are_stale_too() -> None:
    live = replace(FRESH, stream_mark_last_ms=NOW - 180_000, mark_last_ms=NOW - 60_000)
    assert decide(live).flatten_reason is None
    got = decide(replace(live, mark_last_ms=NOW - 60_001))
    assert (got.use_rest, got.flatten_reason) == (True, "dms_blind")
