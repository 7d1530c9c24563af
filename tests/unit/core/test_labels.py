"""Barrier labels: take-profit first, stop first, both in one bar, neither, unknown at the end.

Entries are at close 100 with take-profit 2 % and stop 1 %: a long wins at a high >= 102 and
loses at a low <= 99; a short wins at a low <= 98 and loses at a high >= 101.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from shared.core.labels import Outcomes, barrier_outcomes

F64 = npt.NDArray[np.float64]
REPO = Path(__file__).resolve().parents[3]
BTC_CSV = REPO / "procs/paper_exchange/data/klines/BTCUSDT-1m-futures-2025-05-26_2025-06-23.csv.gz"
TP_PCT, STOP_PCT = 2.0, 1.0


def outcomes(
    bars: Sequence[tuple[float, float, float]], direction: int, horizon_bars: int = 3
) -> Outcomes:
    """Return the outcomes of (high, low, close) bars with take-profit 2 % and stop 1 %."""
    high, low, close = (np.array(column, dtype=np.float64) for column in zip(*bars, strict=True))
    return barrier_outcomes(high, low, close, direction, TP_PCT, STOP_PCT, horizon_bars)


FLAT = (100.0, 100.0, 100.0)


def first(result: Outcomes) -> tuple[int, float, int]:
    return int(result.label[0]), float(result.exit_return[0]), int(result.exit_offset[0])


def test_long_reaching_take_profit_before_the_stop_is_labelled_one() -> None:
    bars = [FLAT, (101.0, 99.5, 100.5), (103.0, 101.0, 102.5), FLAT, FLAT, FLAT]
    assert first(outcomes(bars, +1)) == (1, 0.02, 2)


def test_long_reaching_the_stop_first_is_labelled_zero_with_the_stop_loss() -> None:
    bars = [FLAT, (100.5, 98.5, 99.0), (103.0, 101.0, 102.5), FLAT, FLAT, FLAT]
    assert first(outcomes(bars, +1)) == (0, -0.01, 1)


def test_bar_touching_both_barriers_counts_as_the_stop() -> None:
    bars = [FLAT, (103.0, 98.0, 100.0), FLAT, FLAT, FLAT]
    assert first(outcomes(bars, +1)) == (0, -0.01, 1)
    assert first(outcomes(bars, -1)) == (0, -0.01, 1)


def test_long_touching_neither_barrier_ends_at_the_horizon_close() -> None:
    bars = [FLAT, (101.0, 99.5, 100.2), (101.5, 99.2, 101.0), (101.0, 100.0, 100.5), FLAT]
    assert first(outcomes(bars, +1)) == (0, 100.5 / 100.0 - 1, 3)


def test_short_touching_neither_barrier_earns_the_fall_to_the_horizon_close() -> None:
    bars = [FLAT, (100.5, 99.0, 99.8), (100.8, 98.5, 99.0), (100.0, 99.0, 99.5), FLAT]
    assert first(outcomes(bars, -1)) == (0, -(99.5 / 100.0 - 1), 3)


def test_short_reaching_take_profit_first_is_labelled_one() -> None:
    bars = [FLAT, (100.5, 99.0, 99.5), (100.0, 97.5, 98.0), FLAT, FLAT]
    assert first(outcomes(bars, -1)) == (1, 0.02, 2)


def test_short_reaching_the_stop_first_is_labelled_zero() -> None:
    bars = [FLAT, (100.5, 99.0, 99.5), (101.5, 99.5, 101.0), (100.0, 97.0, 97.5), FLAT]
    assert first(outcomes(bars, -1)) == (0, -0.01, 2)


def test_rows_whose_horizon_runs_past_the_data_are_unknown_even_if_a_barrier_was_hit() -> None:
    bars = [FLAT, FLAT, FLAT, FLAT, (110.0, 100.0, 105.0)]  # rows 1, 2 and 3 reach it
    result = outcomes(bars, +1, horizon_bars=3)
    assert result.label.tolist() == [0, 1, -1, -1, -1]
    assert result.exit_offset.tolist() == [3, 3, -1, -1, -1]
    assert result.exit_return[:2].tolist() == [0.0, 0.02]
    assert np.all(np.isnan(result.exit_return[2:]))


def test_every_row_is_unknown_when_the_data_is_not_longer_than_the_horizon() -> None:
    result = outcomes([FLAT, FLAT, FLAT], +1, horizon_bars=3)
    assert result.label.tolist() == [-1, -1, -1]


def test_row_with_a_missing_close_is_unknown_and_a_missing_bar_touches_nothing() -> None:
    nan = math.nan
    bars = [(nan, nan, nan), FLAT, (nan, nan, nan), FLAT, FLAT, FLAT]
    result = outcomes(bars, +1, horizon_bars=2)
    assert result.label.tolist() == [-1, 0, -1, 0, -1, -1]
    assert result.exit_offset.tolist() == [-1, 2, -1, 2, -1, -1]


def test_output_types_are_int8_labels_float_returns_int32_offsets() -> None:
    result = outcomes([FLAT] * 5, +1)
    assert result.label.dtype == np.int8
    assert result.exit_return.dtype == np.float64
    assert result.exit_offset.dtype == np.int32


@pytest.mark.parametrize(
    ("direction", "tp", "stop", "horizon", "match"),
    [
        (0, 2.0, 1.0, 3, "direction"),
        (2, 2.0, 1.0, 3, "direction"),
        (1, 0.0, 1.0, 3, "take_profit_pct"),
        (1, 2.0, -1.0, 3, "stop_loss_pct"),
        (1, 2.0, 1.0, 0, "horizon_bars"),
    ],
)
def test_invalid_arguments_raise_value_error(
    direction: int, tp: float, stop: float, horizon: int, match: str
) -> None:
    prices = np.full(5, 100.0)
    with pytest.raises(ValueError, match=match):
        barrier_outcomes(prices, prices, prices, direction, tp, stop, horizon)


def test_arrays_of_different_lengths_raise_value_error() -> None:
    with pytest.raises(ValueError, match="one length"):
        barrier_outcomes(np.ones(5), np.ones(4), np.ones(5), 1, 2.0, 1.0, 3)


def reference(
    high: F64, low: F64, close: F64, direction: int, tp_pct: float, stop_pct: float, horizon: int
) -> list[tuple[int, float, int]]:
    """Bar-by-bar outcomes, one row at a time: the specification written as a plain loop."""
    rows: list[tuple[int, float, int]] = []
    for t in range(len(close)):
        if t + horizon >= len(close):
            rows.append((-1, math.nan, -1))
            continue
        entry = close[t]
        take_profit = entry * (1.0 + direction * tp_pct / 100.0)
        stop = entry * (1.0 - direction * stop_pct / 100.0)
        row = (0, direction * (close[t + horizon] / entry - 1.0), horizon)
        for offset in range(1, horizon + 1):
            hi, lo = high[t + offset], low[t + offset]
            hit_stop = lo <= stop if direction == 1 else hi >= stop
            hit_tp = hi >= take_profit if direction == 1 else lo <= take_profit
            if hit_stop:
                row = (0, -stop_pct / 100.0, offset)
                break
            if hit_tp:
                row = (1, tp_pct / 100.0, offset)
                break
        rows.append(row)
    return rows


@pytest.mark.parametrize("direction", [1, -1])
def test_vectorised_outcomes_match_a_bar_by_bar_loop_on_real_klines(direction: int) -> None:
    with gzip.open(BTC_CSV, "rt") as f:
        lines = [next(f) for _ in range(1501)][1:]
    bars = np.array([[float(x) for x in line.split(",")] for line in lines])
    high, low, close = bars[:, 2], bars[:, 3], bars[:, 4]
    result = barrier_outcomes(high, low, close, direction, 0.3, 0.2, 30)
    expected = reference(high, low, close, direction, 0.3, 0.2, 30)
    assert result.label.tolist() == [row[0] for row in expected]
    assert result.exit_offset.tolist() == [row[2] for row in expected]
    assert np.array_equal(result.exit_return, [row[1] for row in expected], equal_nan=True)
    assert {0, 1} <= set(result.label.tolist())  # both outcomes occur in this sample
