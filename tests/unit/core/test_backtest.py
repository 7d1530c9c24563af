"""Scoring and the trade backtest on tiny arrays with hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared.core import backtest

FEE = 0.0004  # taker fee per side: a round trip costs 0.0008 of notional
MIN = 60_000


def test_average_ranks_gives_ties_the_mean_of_their_ranks() -> None:
    ranks = backtest.average_ranks(np.array([3.0, 1.0, 3.0, 2.0]))
    assert ranks.tolist() == [3.5, 1.0, 3.5, 2.0]


def test_roc_auc_without_ties_counts_ordered_pairs() -> None:
    y = np.array([0, 0, 1, 1])
    assert backtest.roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75


def test_roc_auc_counts_a_tied_pair_as_half() -> None:
    y = np.array([0, 1, 0, 1])
    assert backtest.roc_auc(y, np.array([0.5, 0.5, 0.2, 0.9])) == 0.875


def test_roc_auc_of_a_constant_score_is_one_half() -> None:
    assert backtest.roc_auc(np.array([0, 1, 1, 0, 1]), np.full(5, 0.3)) == 0.5


def test_roc_auc_with_one_class_is_nan() -> None:
    assert math.isnan(backtest.roc_auc(np.array([1, 1]), np.array([0.2, 0.7])))


def test_log_loss_of_one_half_is_ln_two() -> None:
    assert backtest.log_loss(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(math.log(2))


def test_log_loss_clips_a_certain_wrong_prediction() -> None:
    loss = backtest.log_loss(np.array([1]), np.array([0.0]))
    assert loss == pytest.approx(-math.log(backtest.LOG_LOSS_EPS))


def test_precision_at_counts_labels_of_rows_at_or_above_the_threshold() -> None:
    share, count = backtest.precision_at(
        np.array([1, 0, 1, 1]), np.array([0.5, 0.7, 0.2, 0.9]), 0.5
    )
    assert (share, count) == (2 / 3, 3)
    share, count = backtest.precision_at(np.array([1]), np.array([0.1]), 0.5)
    assert math.isnan(share) and count == 0


def _book() -> dict[str, np.ndarray]:
    # symbol 0 at minutes 0..3, symbol 1 at minute 1
    return {
        "p": np.array([0.6, 0.7, 0.2, 0.9, 0.55]),
        "exit_return": np.array([0.01, -0.005, 0.003, 0.002, -0.005]),
        "exit_offset": np.array([2, 1, 1, 1, 3], dtype=np.int32),
        "time_ms": np.array([0, 1, 2, 3, 1], dtype=np.int64) * MIN,
        "symbol_index": np.array([0, 0, 0, 0, 1], dtype=np.int32),
    }


def test_simulate_trades_skips_entries_while_the_symbol_is_in_a_trade() -> None:
    b = _book()
    r = backtest.simulate_trades(
        b["p"], b["exit_return"], b["exit_offset"], b["time_ms"], b["symbol_index"], 0.5, FEE
    )
    # row 0 holds symbol 0 until minute 2: row 1 is skipped, row 2 is below 0.5, row 3 taken;
    # row 4 is another symbol.
    assert r.taken.tolist() == [0, 4, 3]
    assert r.trades == 3
    assert r.wins == 2
    assert r.pnl == pytest.approx((0.01 - 0.0008) + (-0.005 - 0.0008) + (0.002 - 0.0008))
    assert r.hit_rate == pytest.approx(2 / 3)


def test_simulate_trades_allows_an_entry_at_the_exit_time() -> None:
    r = backtest.simulate_trades(
        np.array([0.9, 0.9]),
        np.array([0.01, 0.01]),
        np.array([1, 1]),
        np.array([0, MIN]),
        np.array([0, 0]),
        0.5,
        FEE,
    )
    assert r.trades == 2


def test_simulate_trades_takes_the_likelier_direction_at_one_time() -> None:
    # long and short of one symbol at one time: only the higher probability is taken
    r = backtest.simulate_trades(
        np.array([0.6, 0.8]),
        np.array([0.01, -0.005]),
        np.array([5, 5]),
        np.array([0, 0]),
        np.array([0, 0]),
        0.5,
        FEE,
    )
    assert r.taken.tolist() == [1]
    assert r.pnl == pytest.approx(-0.0058)
    assert r.hit_rate == 0.0


def test_simulate_trades_without_a_trade_has_zero_pnl_and_nan_hit_rate() -> None:
    r = backtest.simulate_trades(
        np.array([0.1]), np.array([0.01]), np.array([1]), np.array([0]), np.array([0]), 0.5, FEE
    )
    assert (r.trades, r.pnl) == (0, 0.0)
    assert math.isnan(r.hit_rate)


def test_random_baseline_takes_every_sample_when_none_overlap() -> None:
    b = _book()
    sel = np.array([0, 3, 4])  # non-overlapping
    base = backtest.random_baseline(
        0.0,
        3,
        b["exit_return"][sel],
        b["exit_offset"][sel],
        b["time_ms"][sel],
        b["symbol_index"][sel],
        FEE,
        np.random.default_rng(1),
        draws=20,
    )
    assert base.trades == 3
    assert base.mean_pnl == pytest.approx(0.01 + 0.002 - 0.005 - 3 * 0.0008)
    assert base.sd_pnl == pytest.approx(0.0, abs=1e-15)
    assert base.share_beaten == 0.0  # every draw makes +0.0046 > 0


def test_random_baseline_never_holds_two_overlapping_trades_of_a_symbol() -> None:
    # A [0, 5 min) and B [1, 2 min) overlap: each draw holds exactly one of them.
    ret, off = np.array([0.01, -0.01]), np.array([5, 1])
    t, sym = np.array([0, MIN]), np.array([0, 0])
    base = backtest.random_baseline(0.0, 2, ret, off, t, sym, FEE, np.random.default_rng(3), 200)
    assert base.trades == 1
    share_b = base.share_beaten  # only draws holding B (net -0.0108) are below 0
    assert 0.3 < share_b < 0.7
    assert base.mean_pnl == pytest.approx((1 - share_b) * 0.0092 + share_b * -0.0108)


def test_random_baseline_is_reproducible_with_the_same_seed() -> None:
    b = _book()
    args = (b["exit_return"], b["exit_offset"], b["time_ms"], b["symbol_index"], FEE)
    first = backtest.random_baseline(0.001, 2, *args, np.random.default_rng(5), draws=50)
    second = backtest.random_baseline(0.001, 2, *args, np.random.default_rng(5), draws=50)
    assert first == second
