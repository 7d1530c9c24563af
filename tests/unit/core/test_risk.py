"""The kill switch: peak and day-start equity, drawdown before daily loss, exact boundaries."""

from __future__ import annotations

from decimal import Decimal as D

from procs.guard.logic.risk import DAY_MS, EquityWatch, kill_switch_trip, watch_equity
from shared.config.ops import KillSwitchConfig

DAY0 = 1_699_920_000_000  # 2023-11-14T00:00:00Z: 19675 whole days since the epoch
NOON = DAY0 + DAY_MS // 2
CFG = KillSwitchConfig()  # drawdown 20 %, daily loss 10 %


def test_watch_equity_first_sample_sets_peak_day_start_and_midnight() -> None:
    assert watch_equity(None, D("1000"), NOON) == EquityWatch(D("1000"), D("1000"), DAY0)


def test_watch_equity_raises_the_peak_and_keeps_the_day_start() -> None:
    watch = watch_equity(None, D("1000"), NOON)
    assert watch_equity(watch, D("1100"), NOON + 1) == EquityWatch(D("1100"), D("1000"), DAY0)
    assert watch_equity(watch, D("900"), NOON + 1) == EquityWatch(D("1000"), D("1000"), DAY0)


def test_watch_equity_one_ms_before_midnight_is_the_same_day() -> None:
    watch = EquityWatch(D("1000"), D("1000"), DAY0)
    got = watch_equity(watch, D("950"), DAY0 + DAY_MS - 1)
    assert got == EquityWatch(D("1000"), D("1000"), DAY0)


def test_watch_equity_at_exact_midnight_starts_a_new_day() -> None:
    watch = EquityWatch(D("1200"), D("1000"), DAY0)
    got = watch_equity(watch, D("950"), DAY0 + DAY_MS)
    assert got == EquityWatch(D("1200"), D("950"), DAY0 + DAY_MS)


def test_watch_equity_after_days_without_samples_starts_the_current_day() -> None:
    watch = EquityWatch(D("1000"), D("1000"), DAY0)
    got = watch_equity(watch, D("1300"), DAY0 + 3 * DAY_MS + 5)
    assert got == EquityWatch(D("1300"), D("1300"), DAY0 + 3 * DAY_MS)


def test_watch_equity_clock_stepped_back_does_not_restart_the_day() -> None:
    watch = EquityWatch(D("1000"), D("990"), DAY0 + DAY_MS)
    got = watch_equity(watch, D("980"), DAY0 + DAY_MS - 1)
    assert got == EquityWatch(D("1000"), D("990"), DAY0 + DAY_MS)


def test_kill_switch_drawdown_trips_at_exact_limit() -> None:
    watch = EquityWatch(D("1000"), D("850"), DAY0)
    assert kill_switch_trip(watch, D("800"), CFG) == (
        "kill_switch_drawdown",
        "equity 800 is 20.00% below the peak 1000, limit 20.0%",
    )


def test_kill_switch_drawdown_beyond_limit_trips() -> None:
    watch = EquityWatch(D("1000"), D("850"), DAY0)
    trip = kill_switch_trip(watch, D("799.99"), CFG)
    assert trip is not None and trip[0] == "kill_switch_drawdown"


def test_kill_switch_drawdown_just_inside_limit_does_not_trip() -> None:
    watch = EquityWatch(D("1000"), D("850"), DAY0)
    assert kill_switch_trip(watch, D("800.01"), CFG) is None


def test_kill_switch_daily_loss_trips_at_exact_limit() -> None:
    watch = EquityWatch(D("1000"), D("900"), DAY0)
    assert kill_switch_trip(watch, D("810"), CFG) == (
        "kill_switch_daily_loss",
        "equity 810 is 10.00% below the day's start 900, limit 10.0%",
    )


def test_kill_switch_daily_loss_just_inside_limit_does_not_trip() -> None:
    watch = EquityWatch(D("1000"), D("900"), DAY0)
    assert kill_switch_trip(watch, D("810.01"), CFG) is None


def test_kill_switch_drawdown_is_checked_before_daily_loss() -> None:
    watch = EquityWatch(D("1000"), D("1000"), DAY0)
    trip = kill_switch_trip(watch, D("700"), CFG)
    assert trip is not None and trip[0] == "kill_switch_drawdown"


def test_kill_switch_equity_above_peak_does_not_trip() -> None:
    assert kill_switch_trip(EquityWatch(D("1000"), D("1000"), DAY0), D("1500"), CFG) is None


def test_kill_switch_non_positive_peak_never_trips() -> None:
    assert kill_switch_trip(EquityWatch(D("0"), D("0"), DAY0), D("-5"), CFG) is None


def test_kill_switch_non_positive_day_start_skips_daily_loss() -> None:
    watch = EquityWatch(D("1000"), D("0"), DAY0)
    assert kill_switch_trip(watch, D("900"), CFG) is None


def test_kill_switch_custom_limits_apply_exactly() -> None:
    cfg = KillSwitchConfig(max_drawdown_pct=2.5, daily_loss_limit_pct=1.5)
    watch = EquityWatch(D("2000"), D("1990"), DAY0)
    assert kill_switch_trip(watch, D("1960.15"), cfg) == (
        "kill_switch_daily_loss",
        "equity 1960.15 is 1.50% below the day's start 1990, limit 1.5%",
    )
    assert kill_switch_trip(watch, D("1960.16"), cfg) is None
    trip = kill_switch_trip(watch, D("1950"), cfg)
    assert trip is not None and trip[0] == "kill_switch_drawdown"
