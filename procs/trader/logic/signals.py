"""Entry candidates from the model's probabilities, and which of them to take.

Pure. The confidence of a side is the model's probability that the side reaches its
take-profit before its stop (labels.barrier_outcomes with that direction).

Candidates (`candidates_from_probabilities`): for each symbol in the given order, a BUY from
p_long and a SELL from p_short; a NaN probability gives no candidate for that side, a price
that is not finite and above 0 gives none for the symbol.

Selection (`select_entries`, "bidding"): candidates are ranked by confidence, highest first;
ties go to the symbol that sorts first, then BUY before SELL. Walking the ranking, each
candidate is skipped with the first reason that applies, else taken:
1. "halted": entries are halted (every candidate is skipped).
2. "symbol_open": a position in the symbol is already open (one position per symbol).
3. "other_side_better": a higher-ranked candidate of the same symbol came first (only a
   symbol's best-ranked side competes, whether or not it was taken).
4. "below_confidence": confidence <= min_confidence. Strictly above, as in the seeds ("a
   signal needs confidence above 0.5"); at 0.5 the Kelly multiplier is 0 anyway.
5. "max_positions": the open positions plus those taken reach max_open_positions.
`taken` and `skipped` both keep the ranking order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SIDES = ("BUY", "SELL")
SKIP_REASONS = ("halted", "symbol_open", "other_side_better", "below_confidence", "max_positions")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One possible entry: a side of a symbol with the model's confidence in it."""

    symbol: str
    side: str  # "BUY" | "SELL"
    confidence: float  # probability the side reaches its take-profit first, 0..1
    price: float  # last close, quote currency (USDT)

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"signals: {self.symbol} side {self.side!r} is not BUY or SELL")


@dataclass(frozen=True, slots=True)
class Selection:
    """The entries to make, and every other candidate with the reason it was not taken."""

    taken: tuple[Candidate, ...]
    skipped: tuple[tuple[Candidate, str], ...]  # reason: one of SKIP_REASONS


def _as_vector(name: str, values: npt.ArrayLike, n: int) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (n,):
        raise ValueError(f"signals: {name} has shape {array.shape}, expected ({n},)")
    return array


def candidates_from_probabilities(
    symbols: Sequence[str],
    p_long: npt.NDArray[np.float64],
    p_short: npt.NDArray[np.float64],
    prices: npt.NDArray[np.float64],
) -> list[Candidate]:
    """Return a BUY (p_long) and a SELL (p_short) candidate per symbol, skipping NaN ones.

    Raises ValueError when an array is not one value per symbol or a probability is outside
    0..1 (NaN is allowed and means no prediction).
    """
    n = len(symbols)
    longs = _as_vector("p_long", p_long, n)
    shorts = _as_vector("p_short", p_short, n)
    closes = _as_vector("prices", prices, n)
    out: list[Candidate] = []
    for i, symbol in enumerate(symbols):
        price = float(closes[i])
        if not (math.isfinite(price) and price > 0.0):
            continue
        for side, p in (("BUY", float(longs[i])), ("SELL", float(shorts[i]))):
            if math.isnan(p):
                continue
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"signals: {symbol} {side} probability {p} is outside 0..1")
            out.append(Candidate(symbol, side, p, price))
    return out


def rank(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Return the candidates by confidence, highest first; ties: symbol asc, then BUY, SELL."""
    return sorted(candidates, key=lambda c: (-c.confidence, c.symbol, SIDES.index(c.side)))


def select_entries(
    candidates: Iterable[Candidate],
    open_symbols: set[str],
    max_open_positions: int,
    min_confidence: float,
    is_halted: bool,
) -> Selection:
    """Return the candidates to enter and the reason each other one was skipped.

    Rules and their order are in the module docstring. Raises ValueError for a negative
    max_open_positions or a NaN confidence.
    """
    if max_open_positions < 0:
        raise ValueError(f"signals: max_open_positions={max_open_positions} must be >= 0")
    ranked = rank(candidates)
    if any(math.isnan(c.confidence) for c in ranked):
        raise ValueError("signals: a candidate has confidence NaN")
    slots = max_open_positions - len(open_symbols)
    taken: list[Candidate] = []
    skipped: list[tuple[Candidate, str]] = []
    seen: set[str] = set()
    for candidate in ranked:
        is_first_side = candidate.symbol not in seen
        seen.add(candidate.symbol)
        if is_halted:
            reason = "halted"
        elif candidate.symbol in open_symbols:
            reason = "symbol_open"
        elif not is_first_side:
            reason = "other_side_better"
        elif not candidate.confidence > min_confidence:
            reason = "below_confidence"
        elif len(taken) >= slots:
            reason = "max_positions"
        else:
            taken.append(candidate)
            continue
        skipped.append((candidate, reason))
    return Selection(tuple(taken), tuple(skipped))
