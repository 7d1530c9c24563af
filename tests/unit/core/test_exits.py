"""The guard's exit rules: default plan, trailing track, each rule at its boundary."""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal as D

import numpy as np
import pytest

from shared.config.ops import ExitsConfig
from shared.core.exits import (
    REASONS,
    Exit,
    Holding,
    Plan,
    Track,
    apply_exit,
    default_plan,
    evaluate_exit,
    margin_of,
    new_track,
    trend_strength,
    unrealised_pnl,
    update_track,
)

T0 = 1_700_000_040_000
TICK = D("0.1")
STEP = D("0.001")
CFG = ExitsConfig()  # stop 2 %, tp 4 % (half), trail from 1.5 % at 1 %, time 1 h, max 2 h
LONG = Holding("BTCUSDT", D("0.010"), D("100000"), 10, D(0), T0)  # margin 100 USDT
SHORT = replace(LONG, quantity=D("-0.010"))
FAR_LONG = Plan(stop_price=D("90000.0"))  # a stop that no test mark reaches
FAR_SHORT = Plan(stop_price=D("110000.0"))


def track(plan: Plan, stop: str | None = None, **flags: bool) -> Track:
    return Track(D("100000"), plan.stop_price if stop is None else D(stop), **flags)


def ev(
    holding: Holding,
    plan: Plan,
    mark: str,
    *,
    tr: Track | None = None,
    now_ms: int = T0,
    trend: float | None = None,
    cfg: ExitsConfig = CFG,
) -> Exit | None:
    return evaluate_exit(holding, plan, tr or track(plan), D(mark), now_ms, trend, cfg, STEP)


def full(reason: str, qty: str = "0.010") -> tuple[str, D, bool]:
    return (reason, D(qty), True)


def key(exit: Exit | None) -> tuple[str, D, bool] | None:
    return None if exit is None else (exit.reason, exit.quantity, exit.is_full)


# ---- pnl and margin -----------------------------------------------------------------------------


def test_unrealised_pnl_is_signed_quantity_times_the_move() -> None:
    assert unrealised_pnl(LONG, D("101000")) == D("10.000")
    assert unrealised_pnl(SHORT, D("101000")) == D("-10.000")
    assert unrealised_pnl(SHORT, D("99000")) == D("10.000")


def test_margin_of_cross_position_is_notional_at_entry_over_leverage() -> None:
    assert margin_of(LONG) == D("100")
    assert margin_of(SHORT) == D("100")


def test_margin_of_isolated_position_is_its_isolated_margin() -> None:
    assert margin_of(replace(LONG, isolated_margin=D("80.5"))) == D("80.5")


def test_margin_of_leverage_zero_raises() -> None:
    with pytest.raises(ValueError, match="leverage=0"):
        margin_of(replace(LONG, leverage=0))


# ---- default plan -------------------------------------------------------------------------------


def test_default_plan_long_on_grid_entry_is_exact() -> None:
    assert default_plan(LONG, CFG, TICK) == Plan(D("98000"), D("104000"))


def test_default_plan_short_on_grid_entry_is_exact() -> None:
    assert default_plan(SHORT, CFG, TICK) == Plan(D("102000"), D("96000"))


def test_default_plan_long_rounds_stop_up_and_take_profit_down_toward_the_entry() -> None:
    # 97012.53 * 0.98 = 95072.2794 -> 95072.3; 97012.53 * 1.04 = 100893.0312 -> 100893.0
    plan = default_plan(replace(LONG, entry_price=D("97012.53")), CFG, TICK)
    assert plan == Plan(D("95072.3"), D("100893.0"))


def test_default_plan_short_rounds_stop_down_and_take_profit_up_toward_the_entry() -> None:
    # 97012.53 * 1.02 = 98952.7806 -> 98952.7; 97012.53 * 0.96 = 93132.0288 -> 93132.1
    plan = default_plan(replace(SHORT, entry_price=D("97012.53")), CFG, TICK)
    assert plan == Plan(D("98952.7"), D("93132.1"))


def test_default_plan_level_rounded_onto_the_entry_moves_one_tick_to_its_own_side() -> None:
    # Entry 10, tick 1: stop 9.8 -> 10 and take-profit 10.4 -> 10 would sit on the entry.
    coarse = replace(LONG, entry_price=D("10"))
    assert default_plan(coarse, CFG, D("1")) == Plan(D("9"), D("11"))
    assert default_plan(replace(coarse, quantity=D("-1")), CFG, D("1")) == Plan(D("11"), D("9"))


def test_default_plan_non_positive_tick_raises() -> None:
    with pytest.raises(ValueError, match="tick_size=0"):
        default_plan(LONG, CFG, D(0))


def test_new_track_starts_at_the_entry_and_the_plan_stop() -> None:
    assert new_track(LONG, Plan(D("98000"))) == Track(D("100000"), D("98000"))


# ---- trailing -----------------------------------------------------------------------------------


def test_update_track_long_below_activation_only_raises_best_mark() -> None:
    # 101499.9 is 1.4999 % above the entry: below the 1.5 % activation.
    tr = update_track(Track(D("100000"), D("98000")), LONG, D("101499.9"), CFG, TICK)
    assert tr == Track(D("101499.9"), D("98000"))


def test_update_track_long_at_exact_activation_trails_one_percent_behind_best() -> None:
    tr = update_track(Track(D("100000"), D("98000")), LONG, D("101500"), CFG, TICK)
    assert tr == Track(D("101500"), D("100485"))  # 101500 * 0.99


def test_update_track_long_trailing_stop_rounds_up_to_the_tick() -> None:
    # 101500.5 * 0.99 = 100485.495 -> 100485.5 (never further than 1 % behind)
    tr = update_track(Track(D("100000"), D("98000")), LONG, D("101500.5"), CFG, TICK)
    assert tr == Track(D("101500.5"), D("100485.5"))


def test_update_track_long_never_lowers_best_mark_or_loosens_stop() -> None:
    tr = update_track(Track(D("101500"), D("100600")), LONG, D("100700"), CFG, TICK)
    assert tr == Track(D("101500"), D("100600"))


def test_update_track_short_below_activation_only_lowers_best_mark() -> None:
    tr = update_track(Track(D("100000"), D("102000")), SHORT, D("98500.1"), CFG, TICK)
    assert tr == Track(D("98500.1"), D("102000"))


def test_update_track_short_at_exact_activation_trails_one_percent_above_best() -> None:
    tr = update_track(Track(D("100000"), D("102000")), SHORT, D("98500"), CFG, TICK)
    assert tr == Track(D("98500"), D("99485"))  # 98500 * 1.01


def test_update_track_short_trailing_stop_rounds_down_to_the_tick() -> None:
    # 98499.5 * 1.01 = 99484.495 -> 99484.4
    tr = update_track(Track(D("100000"), D("102000")), SHORT, D("98499.5"), CFG, TICK)
    assert tr == Track(D("98499.5"), D("99484.4"))


def test_update_track_short_never_raises_best_mark_or_loosens_stop() -> None:
    tr = update_track(Track(D("98500"), D("99400")), SHORT, D("99300"), CFG, TICK)
    assert tr == Track(D("98500"), D("99400"))


def test_update_track_keeps_the_flags() -> None:
    start = Track(D("100000"), D("98000"), has_taken_profit=True, has_cut_for_liquidation=True)
    tr = update_track(start, LONG, D("101500"), CFG, TICK)
    assert tr == Track(D("101500"), D("100485"), True, True)


# ---- emergency ----------------------------------------------------------------------------------

EMERGENCY = replace(CFG, emergency_pnl_pct=-50.0)  # -50 USDT on the 100 USDT margin


def test_emergency_long_triggers_at_exact_pnl_share_of_margin() -> None:
    exit = ev(LONG, FAR_LONG, "95000", cfg=EMERGENCY)  # pnl -50.000
    assert exit == Exit(
        "emergency", D("0.010"), True, "unrealised pnl -50.000 <= -50.0% of margin 100.000"
    )


def test_emergency_long_beyond_threshold_triggers() -> None:
    assert key(ev(LONG, FAR_LONG, "94999.9", cfg=EMERGENCY)) == full("emergency")


def test_emergency_long_just_inside_does_not_trigger() -> None:
    assert ev(LONG, FAR_LONG, "95000.1", cfg=EMERGENCY) is None  # pnl -49.999


def test_emergency_short_triggers_at_exact_pnl_share_of_margin() -> None:
    assert key(ev(SHORT, FAR_SHORT, "105000", cfg=EMERGENCY)) == full("emergency")


def test_emergency_short_just_inside_does_not_trigger() -> None:
    assert ev(SHORT, FAR_SHORT, "104999.9", cfg=EMERGENCY) is None


def test_emergency_uses_isolated_margin_when_set() -> None:
    isolated = replace(LONG, isolated_margin=D("80"))  # -40 USDT trips
    assert key(ev(isolated, FAR_LONG, "96000", cfg=EMERGENCY)) == full("emergency")
    assert ev(isolated, FAR_LONG, "96000.1", cfg=EMERGENCY) is None


def test_emergency_comes_before_the_stop_loss() -> None:
    assert key(ev(LONG, Plan(D("98000")), "95000", cfg=EMERGENCY)) == full("emergency")


# ---- liquidation buffer -------------------------------------------------------------------------

NEAR_LIQ_LONG = replace(LONG, liquidation_price=D("98000"))  # 2 % below a mark of 100000
NEAR_LIQ_SHORT = replace(SHORT, liquidation_price=D("102000"))


def test_liquidation_buffer_long_at_exact_buffer_cuts_half() -> None:
    exit = ev(NEAR_LIQ_LONG, FAR_LONG, "100000")
    assert exit == Exit(
        "liquidation_buffer",
        D("0.005"),
        False,
        "mark 100000 within 2.0% of liquidation price 98000",
    )


def test_liquidation_buffer_long_just_inside_the_buffer_cuts() -> None:
    holding = replace(LONG, liquidation_price=D("98000.1"))
    assert key(ev(holding, FAR_LONG, "100000")) == ("liquidation_buffer", D("0.005"), False)


def test_liquidation_buffer_long_just_outside_does_not_trigger() -> None:
    assert ev(replace(LONG, liquidation_price=D("97999.9")), FAR_LONG, "100000") is None


def test_liquidation_buffer_short_at_exact_buffer_cuts_half() -> None:
    assert key(ev(NEAR_LIQ_SHORT, FAR_SHORT, "100000")) == ("liquidation_buffer", D("0.005"), False)


def test_liquidation_buffer_short_just_outside_does_not_trigger() -> None:
    assert ev(replace(SHORT, liquidation_price=D("102000.1")), FAR_SHORT, "100000") is None


def test_liquidation_buffer_unknown_liquidation_price_is_skipped() -> None:
    assert ev(LONG, FAR_LONG, "100000") is None


def test_liquidation_buffer_after_a_cut_closes_everything() -> None:
    tr = track(FAR_LONG, has_cut_for_liquidation=True)
    exit = ev(NEAR_LIQ_LONG, FAR_LONG, "100000", tr=tr)
    assert exit == Exit(
        "liquidation_buffer",
        D("0.010"),
        True,
        "mark 100000 within 2.0% of liquidation price 98000 after a cut",
    )


def test_liquidation_buffer_cut_floored_to_zero_closes_everything() -> None:
    tiny = replace(NEAR_LIQ_LONG, quantity=D("0.001"))  # half is 0.0005 -> 0 steps
    assert key(ev(tiny, FAR_LONG, "100000")) == full("liquidation_buffer", "0.001")


def test_liquidation_buffer_cut_is_floored_to_the_step() -> None:
    odd = replace(NEAR_LIQ_LONG, quantity=D("0.003"))  # half is 0.0015 -> 0.001
    assert key(ev(odd, FAR_LONG, "100000")) == ("liquidation_buffer", D("0.001"), False)


def test_liquidation_buffer_cut_leaving_exactly_one_step_is_partial() -> None:
    two = replace(NEAR_LIQ_LONG, quantity=D("0.002"))
    assert key(ev(two, FAR_LONG, "100000")) == ("liquidation_buffer", D("0.001"), False)


def test_liquidation_buffer_cut_leaving_less_than_one_step_closes_everything() -> None:
    cfg = replace(CFG, liquidation_cut_fraction=1.0)
    assert key(ev(NEAR_LIQ_LONG, FAR_LONG, "100000", cfg=cfg)) == full("liquidation_buffer")
    off_step = replace(NEAR_LIQ_LONG, quantity=D("0.0105"))  # cut 0.010 leaves 0.0005
    assert key(ev(off_step, FAR_LONG, "100000", cfg=cfg)) == full("liquidation_buffer", "0.0105")


def test_liquidation_buffer_comes_before_the_stop_loss() -> None:
    holding = replace(LONG, liquidation_price=D("96000"))
    assert key(ev(holding, Plan(D("98000")), "97900")) == ("liquidation_buffer", D("0.005"), False)


# ---- stop loss and trailing stop ----------------------------------------------------------------

STOP_LONG = Plan(D("98000.0"))
STOP_SHORT = Plan(D("102000.0"))


def test_stop_loss_long_triggers_at_exact_stop_price() -> None:
    exit = ev(LONG, STOP_LONG, "98000.0")
    assert exit == Exit("stop_loss", D("0.010"), True, "mark 98000.0 <= stop 98000.0")


def test_stop_loss_long_triggers_below_the_stop_price() -> None:
    assert key(ev(LONG, STOP_LONG, "97999.9")) == full("stop_loss")


def test_stop_loss_long_does_not_trigger_one_tick_above() -> None:
    assert ev(LONG, STOP_LONG, "98000.1") is None


def test_stop_loss_short_triggers_at_exact_stop_price() -> None:
    exit = ev(SHORT, STOP_SHORT, "102000.0")
    assert exit == Exit("stop_loss", D("0.010"), True, "mark 102000.0 >= stop 102000.0")


def test_stop_loss_short_triggers_above_the_stop_price() -> None:
    assert key(ev(SHORT, STOP_SHORT, "102000.1")) == full("stop_loss")


def test_stop_loss_short_does_not_trigger_one_tick_below() -> None:
    assert ev(SHORT, STOP_SHORT, "101999.9") is None


def test_trailing_stop_long_is_named_when_the_stop_was_tightened() -> None:
    tr = track(STOP_LONG, "100485")
    assert key(ev(LONG, STOP_LONG, "100485", tr=tr)) == full("trailing_stop")
    assert ev(LONG, STOP_LONG, "100485.1", tr=tr) is None


def test_trailing_stop_short_is_named_when_the_stop_was_tightened() -> None:
    tr = track(STOP_SHORT, "99485")
    assert key(ev(SHORT, STOP_SHORT, "99485", tr=tr)) == full("trailing_stop")
    assert ev(SHORT, STOP_SHORT, "99484.9", tr=tr) is None


# ---- invalidation -------------------------------------------------------------------------------


def test_invalidation_long_triggers_at_exact_price() -> None:
    plan = Plan(D("98000"), invalidation_price=D("99000"))
    exit = ev(LONG, plan, "99000")
    assert exit == Exit("invalidation", D("0.010"), True, "mark 99000 <= invalidation 99000")
    assert ev(LONG, plan, "99000.1") is None


def test_invalidation_short_triggers_at_exact_price() -> None:
    plan = Plan(D("102000"), invalidation_price=D("101000"))
    assert key(ev(SHORT, plan, "101000")) == full("invalidation")
    assert key(ev(SHORT, plan, "101000.1")) == full("invalidation")
    assert ev(SHORT, plan, "100999.9") is None


def test_stop_loss_comes_before_invalidation() -> None:
    plan = Plan(D("98000"), invalidation_price=D("99000"))
    assert key(ev(LONG, plan, "97000")) == full("stop_loss")


# ---- take profit --------------------------------------------------------------------------------

TP_LONG = Plan(D("98000"), take_profit_price=D("104000"))
TP_SHORT = Plan(D("102000"), take_profit_price=D("96000"))


def test_take_profit_long_at_exact_price_closes_half() -> None:
    exit = ev(LONG, TP_LONG, "104000")
    assert exit == Exit("take_profit", D("0.005"), False, "mark 104000 >= take-profit 104000")


def test_take_profit_long_one_tick_short_does_not_trigger() -> None:
    assert ev(LONG, TP_LONG, "103999.9") is None


def test_take_profit_short_at_exact_price_closes_half() -> None:
    exit = ev(SHORT, TP_SHORT, "96000")
    assert exit == Exit("take_profit", D("0.005"), False, "mark 96000 <= take-profit 96000")
    assert key(ev(SHORT, TP_SHORT, "95999.9")) == ("take_profit", D("0.005"), False)
    assert ev(SHORT, TP_SHORT, "96000.1") is None


def test_take_profit_already_taken_does_not_repeat() -> None:
    assert ev(LONG, TP_LONG, "105000", tr=track(TP_LONG, has_taken_profit=True)) is None


def test_take_profit_on_one_step_closes_everything() -> None:
    tiny = replace(LONG, quantity=D("0.001"))
    assert key(ev(tiny, TP_LONG, "104000")) == full("take_profit", "0.001")


# ---- time rules ---------------------------------------------------------------------------------

HOUR_MS = 3_600_000


def test_max_holding_triggers_at_exact_limit_even_in_profit() -> None:
    exit = ev(LONG, FAR_LONG, "100100", now_ms=T0 + 2 * HOUR_MS)
    assert exit == Exit("max_holding", D("0.010"), True, "held 7200000 ms >= max holding 7200.0 s")


def test_max_holding_one_ms_before_the_limit_does_not_trigger() -> None:
    assert ev(LONG, FAR_LONG, "100100", now_ms=T0 + 2 * HOUR_MS - 1) is None


def test_max_holding_zero_is_off() -> None:
    cfg = replace(CFG, max_holding_s=0.0)
    assert ev(SHORT, FAR_SHORT, "99900", now_ms=T0 + 100 * HOUR_MS, cfg=cfg) is None


def test_time_stop_long_at_exact_limit_with_zero_pnl_triggers() -> None:
    exit = ev(LONG, FAR_LONG, "100000", now_ms=T0 + HOUR_MS)
    assert exit == Exit(
        "time_stop", D("0.010"), True, "held 3600000 ms >= time stop 3600.0 s with pnl 0.000 <= 0"
    )


def test_time_stop_one_ms_before_the_limit_does_not_trigger() -> None:
    assert ev(LONG, FAR_LONG, "99000", now_ms=T0 + HOUR_MS - 1) is None


def test_time_stop_in_profit_does_not_trigger() -> None:
    assert ev(LONG, FAR_LONG, "100000.1", now_ms=T0 + HOUR_MS) is None
    assert ev(SHORT, FAR_SHORT, "99999.9", now_ms=T0 + HOUR_MS) is None


def test_time_stop_short_at_a_loss_triggers() -> None:
    assert key(ev(SHORT, FAR_SHORT, "100000.1", now_ms=T0 + HOUR_MS)) == full("time_stop")


def test_time_stop_zero_is_off() -> None:
    cfg = replace(CFG, time_stop_s=0.0)
    assert ev(LONG, FAR_LONG, "99000", now_ms=T0 + HOUR_MS, cfg=cfg) is None


# ---- counter trend ------------------------------------------------------------------------------


def test_counter_trend_long_at_exact_strength_with_a_loss_triggers() -> None:
    exit = ev(LONG, FAR_LONG, "99999.9", trend=-0.002)
    assert exit == Exit(
        "counter_trend",
        D("0.010"),
        True,
        "trend -0.002 against the long beyond 0.002 with pnl -0.0010 < 0",
    )


def test_counter_trend_long_just_weaker_does_not_trigger() -> None:
    assert ev(LONG, FAR_LONG, "99999.9", trend=-0.0019999) is None


def test_counter_trend_long_without_a_loss_does_not_trigger() -> None:
    assert ev(LONG, FAR_LONG, "100000", trend=-0.5) is None


def test_counter_trend_short_at_exact_strength_with_a_loss_triggers() -> None:
    assert key(ev(SHORT, FAR_SHORT, "100000.1", trend=0.002)) == full("counter_trend")
    assert ev(SHORT, FAR_SHORT, "100000.1", trend=0.0019999) is None
    assert ev(SHORT, FAR_SHORT, "100000.1", trend=-0.5) is None


def test_counter_trend_unknown_trend_is_skipped() -> None:
    assert ev(LONG, FAR_LONG, "99000", trend=None) is None


# ---- order and input checks ---------------------------------------------------------------------


def test_reasons_are_listed_in_evaluation_order() -> None:
    assert REASONS == (
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


def test_take_profit_comes_before_max_holding() -> None:
    exit = ev(LONG, TP_LONG, "104000", now_ms=T0 + 2 * HOUR_MS)
    assert key(exit) == ("take_profit", D("0.005"), False)


def test_max_holding_comes_before_time_stop_and_counter_trend() -> None:
    exit = ev(LONG, FAR_LONG, "99000", now_ms=T0 + 2 * HOUR_MS, trend=-1.0)
    assert key(exit) == full("max_holding")


def test_evaluate_exit_non_positive_mark_raises() -> None:
    with pytest.raises(ValueError, match="mark=0"):
        ev(LONG, FAR_LONG, "0")


def test_evaluate_exit_zero_quantity_raises() -> None:
    with pytest.raises(ValueError, match="quantity 0"):
        ev(replace(LONG, quantity=D(0)), FAR_LONG, "100000")


# ---- apply_exit ---------------------------------------------------------------------------------


def test_apply_exit_partial_take_profit_marks_it_taken() -> None:
    tr = apply_exit(Track(D("104000"), D("98000")), Exit("take_profit", D("0.005"), False, "x"))
    assert tr == Track(D("104000"), D("98000"), has_taken_profit=True)


def test_apply_exit_partial_liquidation_cut_marks_it_cut() -> None:
    tr = apply_exit(
        Track(D("100000"), D("98000")), Exit("liquidation_buffer", D("0.005"), False, "x")
    )
    assert tr == Track(D("100000"), D("98000"), has_cut_for_liquidation=True)


def test_apply_exit_full_exit_leaves_the_track_unchanged() -> None:
    start = Track(D("100000"), D("98000"))
    assert apply_exit(start, Exit("take_profit", D("0.001"), True, "x")) == start
    assert apply_exit(start, Exit("stop_loss", D("0.010"), True, "x")) == start


def test_a_partial_take_profit_applied_then_only_the_stop_remains() -> None:
    tr = new_track(LONG, TP_LONG)
    first = ev(LONG, TP_LONG, "104000", tr=tr)
    assert first is not None and not first.is_full
    rest = replace(LONG, quantity=LONG.quantity - first.quantity)
    tr = update_track(apply_exit(tr, first), rest, D("104000"), CFG, TICK)
    assert tr == Track(D("104000"), D("102960"), has_taken_profit=True)  # 104000 * 0.99
    assert ev(rest, TP_LONG, "104000", tr=tr) is None
    assert key(ev(rest, TP_LONG, "102960", tr=tr)) == full("trailing_stop", "0.005")


# ---- trend strength -----------------------------------------------------------------------------


def test_trend_strength_rising_closes_hand_computed() -> None:
    # fast n=1: alpha 1 -> 3; slow n=2: alpha 2/3 -> 1, 5/3, 23/9; (3 - 23/9) / 3 = 4/27
    got = trend_strength(np.array([1.0, 2.0, 3.0]), 1, 2)
    assert got == pytest.approx(4 / 27, rel=1e-12, abs=0)


def test_trend_strength_falling_closes_hand_computed() -> None:
    # fast 2; slow 2/3 * 2 + 1/3 * 4 = 8/3; (2 - 8/3) / 2 = -1/3
    got = trend_strength(np.array([4.0, 2.0]), 1, 2)
    assert got == pytest.approx(-1 / 3, rel=1e-12, abs=0)


def test_trend_strength_flat_closes_is_zero() -> None:
    assert trend_strength(np.full(60, 97000.0), 20, 60) == 0.0


def test_trend_strength_needs_slow_bars_closes() -> None:
    assert trend_strength(np.array([1.0, 2.0]), 1, 3) is None
    assert trend_strength(np.array([1.0, 2.0, 3.0]), 1, 3) is not None
    assert trend_strength(np.array([], dtype=np.float64), 1, 2) is None


def test_trend_strength_non_finite_close_gives_none() -> None:
    assert trend_strength(np.array([1.0, math.nan, 3.0]), 1, 2) is None
    assert trend_strength(np.array([1.0, math.inf, 3.0]), 1, 2) is None


def test_trend_strength_last_close_zero_gives_none() -> None:
    assert trend_strength(np.array([1.0, 0.0]), 1, 2) is None


def test_trend_strength_bar_count_below_one_raises() -> None:
    with pytest.raises(ValueError, match="fast=0"):
        trend_strength(np.array([1.0, 2.0]), 0, 2)
