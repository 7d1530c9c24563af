"""Candidates from probabilities, and the ranked selection of entries with every skip reason."""

from __future__ import annotations

import math

import numpy as np
import pytest

from procs.trader.logic.signals import (
    SKIP_REASONS,
    Candidate,
    Selection,
    candidates_from_probabilities,
    rank,
    select_entries,
)

NAN = math.nan


def arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def buy(symbol: str, confidence: float) -> Candidate:
    return Candidate(symbol, "BUY", confidence, 100.0)


def sell(symbol: str, confidence: float) -> Candidate:
    return Candidate(symbol, "SELL", confidence, 100.0)


def select(
    candidates: list[Candidate],
    open_symbols: set[str] | None = None,
    max_open: int = 3,
    min_confidence: float = 0.5,
    is_halted: bool = False,
) -> Selection:
    return select_entries(candidates, open_symbols or set(), max_open, min_confidence, is_halted)


def reasons(selection: Selection) -> list[tuple[str, str, str]]:
    return [(c.symbol, c.side, reason) for c, reason in selection.skipped]


def names(selection: Selection) -> list[tuple[str, str]]:
    return [(c.symbol, c.side) for c in selection.taken]


# ---- candidates ---------------------------------------------------------------------------------


def test_candidates_give_a_buy_from_p_long_and_a_sell_from_p_short_per_symbol() -> None:
    out = candidates_from_probabilities(
        ["BTCUSDT", "ETHUSDT"], arr(0.6, 0.2), arr(0.3, 0.55), arr(97000.5, 3100.25)
    )
    assert out == [
        Candidate("BTCUSDT", "BUY", 0.6, 97000.5),
        Candidate("BTCUSDT", "SELL", 0.3, 97000.5),
        Candidate("ETHUSDT", "BUY", 0.2, 3100.25),
        Candidate("ETHUSDT", "SELL", 0.55, 3100.25),
    ]


def test_candidates_skip_a_nan_probability_side() -> None:
    out = candidates_from_probabilities(
        ["BTCUSDT", "ETHUSDT"], arr(NAN, 0.7), arr(0.55, NAN), arr(97000.0, 3100.0)
    )
    assert out == [
        Candidate("BTCUSDT", "SELL", 0.55, 97000.0),
        Candidate("ETHUSDT", "BUY", 0.7, 3100.0),
    ]


@pytest.mark.parametrize("price", [NAN, 0.0, -1.0, math.inf])
def test_candidates_skip_a_symbol_without_a_usable_price(price: float) -> None:
    out = candidates_from_probabilities(
        ["BTCUSDT", "ETHUSDT"], arr(0.6, 0.7), arr(0.3, 0.2), arr(price, 3100.0)
    )
    assert [(c.symbol, c.side) for c in out] == [("ETHUSDT", "BUY"), ("ETHUSDT", "SELL")]


def test_candidates_with_an_array_not_one_value_per_symbol_raise() -> None:
    with pytest.raises(ValueError, match=r"p_short has shape \(1,\), expected \(2,\)"):
        candidates_from_probabilities(["A", "B"], arr(0.6, 0.7), arr(0.3), arr(1.0, 2.0))


def test_candidates_with_a_probability_above_one_raise() -> None:
    with pytest.raises(ValueError, match=r"ETHUSDT BUY probability 1\.2 is outside 0\.\.1"):
        candidates_from_probabilities(["ETHUSDT"], arr(1.2), arr(0.1), arr(3100.0))


def test_candidate_with_an_unknown_side_raises() -> None:
    with pytest.raises(ValueError, match="BTCUSDT side 'LONG'"):
        Candidate("BTCUSDT", "LONG", 0.6, 1.0)


# ---- ranking ------------------------------------------------------------------------------------


def test_rank_orders_by_confidence_then_symbol_then_buy_before_sell() -> None:
    ranked = rank(
        [sell("ETHUSDT", 0.7), buy("ETHUSDT", 0.7), sell("BTCUSDT", 0.7), buy("ADAUSDT", 0.9)]
    )
    assert [(c.symbol, c.side) for c in ranked] == [
        ("ADAUSDT", "BUY"),
        ("BTCUSDT", "SELL"),
        ("ETHUSDT", "BUY"),
        ("ETHUSDT", "SELL"),
    ]


# ---- selection ----------------------------------------------------------------------------------


def test_select_takes_the_most_confident_up_to_max_open_positions() -> None:
    chosen = select(
        [buy("XRPUSDT", 0.6), buy("BTCUSDT", 0.8), buy("SOLUSDT", 0.65), sell("ETHUSDT", 0.7)],
        max_open=3,
    )
    assert names(chosen) == [("BTCUSDT", "BUY"), ("ETHUSDT", "SELL"), ("SOLUSDT", "BUY")]
    assert reasons(chosen) == [("XRPUSDT", "BUY", "max_positions")]


def test_select_counts_open_positions_against_the_maximum() -> None:
    chosen = select(
        [buy("BTCUSDT", 0.8), sell("ETHUSDT", 0.7), buy("SOLUSDT", 0.65)],
        open_symbols={"ADAUSDT", "XRPUSDT"},
        max_open=3,
    )
    assert names(chosen) == [("BTCUSDT", "BUY")]
    assert reasons(chosen) == [
        ("ETHUSDT", "SELL", "max_positions"),
        ("SOLUSDT", "BUY", "max_positions"),
    ]


def test_select_with_more_open_than_the_maximum_takes_nothing() -> None:
    chosen = select([buy("BTCUSDT", 0.8)], open_symbols={"A", "B", "C", "D"}, max_open=3)
    assert reasons(chosen) == [("BTCUSDT", "BUY", "max_positions")]


def test_select_skips_a_symbol_with_an_open_position() -> None:
    chosen = select(
        [buy("BTCUSDT", 0.9), sell("BTCUSDT", 0.6), buy("ETHUSDT", 0.7)], open_symbols={"BTCUSDT"}
    )
    assert names(chosen) == [("ETHUSDT", "BUY")]
    assert reasons(chosen) == [
        ("BTCUSDT", "BUY", "symbol_open"),
        ("BTCUSDT", "SELL", "symbol_open"),
    ]


def test_select_takes_one_side_per_symbol_the_more_confident() -> None:
    chosen = select([buy("BTCUSDT", 0.6), sell("BTCUSDT", 0.7)])
    assert names(chosen) == [("BTCUSDT", "SELL")]
    assert reasons(chosen) == [("BTCUSDT", "BUY", "other_side_better")]


def test_select_reports_the_weaker_side_as_other_side_better_even_when_the_best_is_not_taken() -> (
    None
):
    chosen = select([buy("BTCUSDT", 0.8), sell("BTCUSDT", 0.7)], max_open=0)
    assert reasons(chosen) == [
        ("BTCUSDT", "BUY", "max_positions"),
        ("BTCUSDT", "SELL", "other_side_better"),
    ]


def test_select_breaks_a_confidence_tie_by_symbol_then_buy_before_sell() -> None:
    chosen = select([buy("ETHUSDT", 0.7), sell("BTCUSDT", 0.7), buy("BTCUSDT", 0.7)], max_open=1)
    assert names(chosen) == [("BTCUSDT", "BUY")]
    assert reasons(chosen) == [
        ("BTCUSDT", "SELL", "other_side_better"),
        ("ETHUSDT", "BUY", "max_positions"),
    ]


def test_select_skips_confidence_exactly_at_the_minimum() -> None:
    chosen = select([buy("BTCUSDT", 0.5), buy("ETHUSDT", 0.5000001)], min_confidence=0.5)
    assert names(chosen) == [("ETHUSDT", "BUY")]
    assert reasons(chosen) == [("BTCUSDT", "BUY", "below_confidence")]


@pytest.mark.parametrize("confidence", [0.75, 1.0])
def test_select_takes_confidence_above_the_minimum(confidence: float) -> None:
    assert names(select([sell("BTCUSDT", confidence)])) == [("BTCUSDT", "SELL")]


def test_select_with_a_relaxed_minimum_takes_a_lower_confidence() -> None:
    candidates = [buy("BTCUSDT", 0.47)]
    assert reasons(select(candidates)) == [("BTCUSDT", "BUY", "below_confidence")]
    assert names(select(candidates, min_confidence=0.45)) == [("BTCUSDT", "BUY")]


def test_select_when_halted_takes_nothing_and_says_halted_for_each() -> None:
    chosen = select(
        [buy("BTCUSDT", 0.9), sell("BTCUSDT", 0.2), buy("ETHUSDT", 0.8)],
        open_symbols={"ETHUSDT"},
        is_halted=True,
    )
    assert chosen.taken == ()
    assert reasons(chosen) == [
        ("BTCUSDT", "BUY", "halted"),
        ("ETHUSDT", "BUY", "halted"),
        ("BTCUSDT", "SELL", "halted"),
    ]


def test_select_accounts_for_every_candidate_once_with_a_known_reason() -> None:
    candidates = candidates_from_probabilities(
        ["A", "B", "C", "D", "E"],
        arr(0.9, 0.4, 0.7, 0.6, 0.55),
        arr(0.1, 0.8, 0.3, 0.65, 0.2),
        arr(1.0, 2.0, 3.0, 4.0, 5.0),
    )
    chosen = select(candidates, open_symbols={"C"}, max_open=3)
    assert names(chosen) == [("A", "BUY"), ("B", "SELL")]
    assert reasons(chosen) == [
        ("C", "BUY", "symbol_open"),
        ("D", "SELL", "max_positions"),
        ("D", "BUY", "other_side_better"),
        ("E", "BUY", "max_positions"),
        ("B", "BUY", "other_side_better"),
        ("C", "SELL", "symbol_open"),
        ("E", "SELL", "other_side_better"),
        ("A", "SELL", "other_side_better"),
    ]
    assert {r for _, r in chosen.skipped} <= set(SKIP_REASONS)
    assert len(chosen.taken) + len(chosen.skipped) == len(candidates)


def test_select_with_no_candidates_selects_nothing() -> None:
    assert select([]) == Selection((), ())


def test_select_with_a_negative_maximum_raises() -> None:
    with pytest.raises(ValueError, match="max_open_positions=-1"):
        select([buy("BTCUSDT", 0.9)], max_open=-1)
