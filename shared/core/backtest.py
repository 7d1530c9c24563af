"""Scoring and a trade-level backtest of held-out probabilities (pure: arrays in, figures out).

Scores of a binary classifier, y in {0, 1}, p = predicted probability of 1:
  - roc_auc: exact rank statistic. Ranks 1..n of the scores, tied scores get the average of their
    ranks; AUC = (sum of positive ranks - P*(P+1)/2) / (P*N). NaN when P or N is 0.
  - log_loss: -mean(y*ln(p) + (1-y)*ln(1-p)), p clipped to [1e-15, 1 - 1e-15].
  - precision_at: share of samples with p >= threshold whose label is 1 (NaN when none is).

Backtest (`simulate_trades`): each sample is a possible entry at the close of its bar (time_ms is
that bar's open time), in one direction, whose barrier exit is already known: exit_return (signed
for the direction, a fraction of entry price) after exit_offset bars. A sample is taken when
p >= threshold, in time order (at one time, higher p first), at most one open trade per symbol:
an entry at t blocks that symbol while time < t + exit_offset * bar_ms. Per unit notional,
net return = exit_return - 2 * taker_fee_rate (entry and exit both pay the taker fee);
PnL = sum of net returns; hit rate = share of taken trades with net return > 0.

Random baseline (`random_baseline`): each draw visits the samples in a random order (a seeded
numpy Generator) and takes one whenever its interval [t, t + exit_offset * bar_ms) does not
overlap a taken trade of the same symbol, until it holds as many trades as the model took (or the
samples run out). Same exits and fees; the figures are the mean and sample standard deviation of
the draws' PnL and the share of draws whose PnL is strictly below the model's.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

LOG_LOSS_EPS = 1e-15


def average_ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return 1-based ranks of values, ties given the average of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    n = len(values)
    is_new = np.empty(n, dtype=bool)
    is_new[:1] = True
    is_new[1:] = sorted_values[1:] != sorted_values[:-1]
    starts = np.flatnonzero(is_new)
    ends = np.append(starts[1:], n)  # exclusive
    group_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def roc_auc(y: NDArray[np.integer] | NDArray[np.floating], score: NDArray[np.float64]) -> float:
    """Return the exact ROC AUC of score for binary labels y (ties averaged); NaN if one class."""
    is_pos = np.asarray(y) == 1
    n_pos = int(is_pos.sum())
    n_neg = len(is_pos) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(np.asarray(score, dtype=np.float64))
    return float((ranks[is_pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y: NDArray[np.integer] | NDArray[np.floating], p: NDArray[np.float64]) -> float:
    """Return the mean binary cross-entropy in nats, p clipped to [1e-15, 1-1e-15]; NaN if empty."""
    if len(p) == 0:
        return float("nan")
    q = np.clip(np.asarray(p, dtype=np.float64), LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    yf = np.asarray(y, dtype=np.float64)
    return float(-np.mean(yf * np.log(q) + (1.0 - yf) * np.log1p(-q)))


def precision_at(
    y: NDArray[np.integer] | NDArray[np.floating], p: NDArray[np.float64], threshold: float
) -> tuple[float, int]:
    """Return (share of p >= threshold samples labelled 1, their count); NaN share when none."""
    chosen = np.asarray(p) >= threshold
    count = int(chosen.sum())
    if count == 0:
        return float("nan"), 0
    return float((np.asarray(y)[chosen] == 1).sum() / count), count


@dataclass(frozen=True)
class TradeResult:
    """Trades taken by a backtest, per unit notional."""

    trades: int
    wins: int  # net return > 0
    pnl: float  # sum of net returns (fraction of notional per trade, summed)
    taken: NDArray[np.intp]  # sample indices taken, in entry order

    @property
    def hit_rate(self) -> float:
        """Share of trades with a positive net return; NaN without trades."""
        return self.wins / self.trades if self.trades else float("nan")


@dataclass(frozen=True)
class Baseline:
    """Random-entry PnL over `draws` draws."""

    draws: int
    trades: int  # trades per draw (the model's count, or fewer if the samples ran out)
    mean_pnl: float
    sd_pnl: float  # sample standard deviation (ddof=1); 0 for one draw
    share_beaten: float  # share of draws whose PnL < the model's PnL


def _net(
    exit_return: NDArray[np.float64], idx: NDArray[np.intp], fee: float
) -> NDArray[np.float64]:
    return np.asarray(exit_return[idx] - 2.0 * fee, dtype=np.float64)


def _result(taken: list[int], exit_return: NDArray[np.float64], fee: float) -> TradeResult:
    idx = np.asarray(taken, dtype=np.intp)
    net = _net(exit_return, idx, fee)
    return TradeResult(len(idx), int((net > 0).sum()), float(net.sum()), idx)


def simulate_trades(
    p: NDArray[np.float64],
    exit_return: NDArray[np.float64],
    exit_offset: NDArray[np.integer],
    time_ms: NDArray[np.int64],
    symbol_index: NDArray[np.integer],
    threshold: float,
    taker_fee_rate: float,
    bar_ms: int = 60_000,
) -> TradeResult:
    """Take samples with p >= threshold in time order, one open trade per symbol (module rule)."""
    chosen = np.flatnonzero(np.asarray(p) >= threshold)
    # Time ascending, then p descending: of two directions at one time the likelier goes first.
    order = chosen[np.lexsort((-p[chosen], time_ms[chosen]))]
    busy_until: dict[int, int] = {}
    taken: list[int] = []
    for i in order.tolist():
        sym = int(symbol_index[i])
        t = int(time_ms[i])
        if t < busy_until.get(sym, t):
            continue
        busy_until[sym] = t + int(exit_offset[i]) * bar_ms
        taken.append(i)
    return _result(taken, exit_return, taker_fee_rate)


def _random_draw(
    perm: NDArray[np.intp],
    start: NDArray[np.int64],
    end: NDArray[np.int64],
    symbol_index: NDArray[np.integer],
    trades: int,
) -> list[int]:
    starts: dict[int, list[int]] = {}  # per symbol, sorted starts of taken intervals
    ends: dict[int, list[int]] = {}  # matching ends (intervals do not overlap, so also sorted)
    taken: list[int] = []
    for i in perm.tolist():
        if len(taken) >= trades:
            break
        sym = int(symbol_index[i])
        s, e = int(start[i]), int(end[i])
        ss, ee = starts.setdefault(sym, []), ends.setdefault(sym, [])
        k = bisect.bisect_right(ss, s)
        if k > 0 and ee[k - 1] > s:  # the interval starting at or before s is still open at s
            continue
        if k < len(ss) and ss[k] < e:  # the next interval starts before this one ends
            continue
        ss.insert(k, s)
        ee.insert(k, e)
        taken.append(i)
    return taken


def random_baseline(
    model_pnl: float,
    trades: int,
    exit_return: NDArray[np.float64],
    exit_offset: NDArray[np.integer],
    time_ms: NDArray[np.int64],
    symbol_index: NDArray[np.integer],
    taker_fee_rate: float,
    rng: np.random.Generator,
    draws: int = 200,
    bar_ms: int = 60_000,
) -> Baseline:
    """Return the PnL spread of `draws` random-entry draws of `trades` trades (module rule)."""
    start = np.asarray(time_ms, dtype=np.int64)
    end = start + np.asarray(exit_offset, dtype=np.int64) * bar_ms
    pnls = np.empty(draws, dtype=np.float64)
    counts: list[int] = []
    for d in range(draws):
        perm = rng.permutation(len(start)).astype(np.intp)
        taken = _random_draw(perm, start, end, symbol_index, trades)
        counts.append(len(taken))
        pnls[d] = float(_net(exit_return, np.asarray(taken, dtype=np.intp), taker_fee_rate).sum())
    sd = float(np.std(pnls, ddof=1)) if draws > 1 else 0.0
    beaten = float((pnls < model_pnl).sum() / draws) if draws else float("nan")
    mean = float(pnls.mean()) if draws else float("nan")
    return Baseline(draws, min(counts, default=0), mean, sd, beaten)
