"""Kelly multiplier, capped notional, Laplace win rate and capped leverage, at every boundary."""

from __future__ import annotations

import math
from decimal import Decimal as D

import pytest

from procs.trader.logic.sizing import (
    kelly_multiplier,
    leverage_for,
    position_notional_usdt,
    stop_safe_leverage,
    win_rate,
)

EQUITY = D("1000")
NO_STOP_CAP = (0.1, 0.0)  # stop 0.1 %, no maintenance margin: stop-safe leverage 1000


def notional(
    confidence: float,
    *,
    equity: D = EQUITY,
    leverage: int = 10,
    open_margin: str = "0",
    base: float = 0.05,
    per_position: float = 0.10,
    total: float = 0.50,
) -> D:
    return position_notional_usdt(
        equity, confidence, leverage, D(open_margin), base, per_position, total
    )


# ---- kelly multiplier ---------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [0.0, 0.3, 0.5])
def test_kelly_multiplier_at_or_below_half_confidence_is_zero(confidence: float) -> None:
    assert kelly_multiplier(confidence) == 0.0


@pytest.mark.parametrize(
    ("confidence", "expected"), [(0.75, 1.0), (1.0, 2.0), (0.8, 1.2), (0.625, 0.5)]
)
def test_kelly_multiplier_is_four_times_the_excess_over_half(
    confidence: float, expected: float
) -> None:
    assert kelly_multiplier(confidence) == expected


def test_kelly_multiplier_just_above_half_is_small_but_positive() -> None:
    assert kelly_multiplier(0.5000001) == pytest.approx(4e-7)
    assert kelly_multiplier(0.5000001) > 0.0


@pytest.mark.parametrize("confidence", [-0.1, 1.1, math.nan, math.inf])
def test_kelly_multiplier_outside_zero_to_one_raises(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        kelly_multiplier(confidence)


# ---- notional -----------------------------------------------------------------------------------


def test_notional_at_confidence_075_is_base_margin_times_leverage() -> None:
    assert notional(0.75) == D("500")  # 1000 * 0.05 * 1 = 50 margin, x10


def test_notional_scales_margin_with_the_kelly_multiplier() -> None:
    assert notional(0.8) == D("600")  # 1000 * 0.05 * 1.2 = 60 margin
    assert notional(0.625) == D("250")  # 0.5x


def test_notional_at_confidence_half_or_below_is_zero() -> None:
    assert notional(0.5) == D(0)
    assert notional(0.2) == D(0)


def test_notional_at_confidence_one_exactly_reaches_the_per_position_cap() -> None:
    assert notional(1.0) == D("1000")  # 1000 * 0.05 * 2 = 100 = 10 % of equity


def test_notional_margin_is_capped_at_the_per_position_fraction() -> None:
    assert notional(1.0, base=0.06) == D("1000")  # 120 margin capped to 100
    assert notional(0.75, per_position=0.04) == D("400")  # 50 capped to 40


def test_notional_margin_is_capped_by_the_room_left_under_the_total_fraction() -> None:
    assert notional(0.75, open_margin="460") == D("400")  # 500 - 460 = 40 left
    assert notional(0.75, open_margin="450") == D("500")  # exactly 50 left: not binding


def test_notional_is_zero_when_the_total_fraction_is_used_up_or_exceeded() -> None:
    assert notional(0.9, open_margin="500") == D(0)
    assert notional(0.9, open_margin="650") == D(0)


def test_notional_multiplies_the_margin_by_the_leverage() -> None:
    assert notional(0.75, leverage=1) == D("50")
    assert notional(0.75, leverage=125) == D("6250")


def test_notional_without_positive_equity_is_zero() -> None:
    assert notional(0.9, equity=D(0)) == D(0)
    assert notional(0.9, equity=D("-12.5")) == D(0)


def test_notional_with_a_leverage_below_one_raises() -> None:
    with pytest.raises(ValueError, match="leverage=0"):
        notional(0.75, leverage=0)


def test_notional_with_a_negative_open_margin_raises() -> None:
    with pytest.raises(ValueError, match="open_margin_usdt=-1"):
        notional(0.75, open_margin="-1")


def test_notional_with_a_fraction_above_one_raises() -> None:
    with pytest.raises(ValueError, match=r"max_total_fraction=1\.5"):
        notional(0.75, total=1.5)


# ---- win rate -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wins", "total", "expected"), [(0, 0, 0.5), (3, 8, 0.4), (8, 8, 0.9), (0, 8, 0.1)]
)
def test_win_rate_is_laplace_smoothed(wins: int, total: int, expected: float) -> None:
    assert win_rate(wins, total) == expected


@pytest.mark.parametrize(("wins", "total"), [(-1, 3), (4, 3)])
def test_win_rate_with_wins_outside_zero_to_total_raises(wins: int, total: int) -> None:
    with pytest.raises(ValueError, match="wins"):
        win_rate(wins, total)


# ---- stop-safe leverage -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_pct", "maint", "expected"),
    [(2.0, 0.004, 41), (0.5, 0.004, 111), (1.0, 0.0, 100), (100.0, 0.004, 0)],
)
def test_stop_safe_leverage_is_floor_of_one_over_stop_plus_maintenance(
    stop_pct: float, maint: float, expected: int
) -> None:
    assert stop_safe_leverage(stop_pct, maint) == expected


def test_stop_safe_leverage_without_a_positive_stop_distance_raises() -> None:
    with pytest.raises(ValueError, match="stop_distance_pct=0"):
        stop_safe_leverage(0.0, 0.004)


# ---- leverage -----------------------------------------------------------------------------------


def lev(wr: float, conf: float, max_lev: int = 125, bracket: int = 125) -> int:
    return leverage_for(wr, conf, max_lev, bracket, *NO_STOP_CAP)


@pytest.mark.parametrize(("wr", "conf"), [(0.5, 0.5), (0.4, 0.5), (0.0, 0.0), (0.5, 0.3)])
def test_leverage_at_or_below_edge_quarter_is_one(wr: float, conf: float) -> None:
    assert lev(wr, conf) == 1


@pytest.mark.parametrize(
    ("wr", "conf", "expected"),
    [(0.5, 1.0, 42), (0.625, 1.0, 63), (0.9, 0.9, 93), (0.75, 0.75, 52), (1.0, 1.0, 125)],
)
def test_leverage_is_one_plus_floor_of_the_scaled_edge(
    wr: float, conf: float, expected: int
) -> None:
    # 1 + floor(124 * (edge - 0.25) / 0.75): edge .5 -> 41.33, .625 -> 62, .81 -> 92.59,
    # .5625 -> 51.67, 1 -> 124
    assert lev(wr, conf) == expected


def test_leverage_on_an_exact_level_is_not_lost_to_rounding() -> None:
    assert lev(0.5, 1.0, max_lev=4) == 2  # 3 * 0.25 / 0.75 = 1 exactly


def test_leverage_at_full_edge_is_the_configured_max() -> None:
    assert lev(1.0, 1.0, max_lev=20) == 20
    assert lev(0.9, 0.9, max_lev=20) == 15  # 1 + floor(19 * 0.56 / 0.75) = 1 + 14


def test_leverage_is_capped_at_the_bracket_max() -> None:
    assert lev(1.0, 1.0, bracket=50) == 50
    assert lev(0.5, 1.0, bracket=50) == 42  # not binding


def test_leverage_is_capped_at_the_stop_safe_leverage() -> None:
    assert leverage_for(1.0, 1.0, 125, 125, 2.0, 0.004) == 41
    assert leverage_for(0.5, 1.0, 125, 125, 2.0, 0.004) == 41  # wanted 42
    assert leverage_for(0.5, 0.9, 125, 125, 2.0, 0.004) == 34  # wanted 34, not binding


def test_leverage_is_at_least_one_when_the_stop_is_beyond_liquidation_at_any_leverage() -> None:
    assert leverage_for(1.0, 1.0, 125, 125, 100.0, 0.004) == 1


def test_leverage_never_falls_as_win_rate_or_confidence_rise() -> None:
    grid = [i / 20 for i in range(21)]
    for wr in grid:
        by_conf = [leverage_for(wr, c, 125, 100, 0.5, 0.004) for c in grid]
        assert by_conf == sorted(by_conf)
    for c in grid:
        by_wr = [leverage_for(wr, c, 125, 100, 0.5, 0.004) for wr in grid]
        assert by_wr == sorted(by_wr)


@pytest.mark.parametrize(("max_lev", "bracket"), [(0, 125), (125, 0)])
def test_leverage_with_a_max_below_one_raises(max_lev: int, bracket: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        lev(0.6, 0.8, max_lev=max_lev, bracket=bracket)


def test_leverage_with_a_win_rate_above_one_raises() -> None:
    with pytest.raises(ValueError, match=r"win_rate=1\.5"):
        lev(1.5, 0.8)
