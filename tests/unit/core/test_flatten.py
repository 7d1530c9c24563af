"""Flatten rounds: one reduce-only close per position, chunked to maxQty, deterministic ids."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from shared.core.flatten import CloseOrder, flatten_orders
from shared.core.ids import client_order_id

STEPS = {"BTCUSDT": D("0.001"), "ETHUSDT": D("0.001")}
MAX_QTY = {"BTCUSDT": D("120"), "ETHUSDT": D("2000")}


def test_flatten_closes_each_non_zero_position_sorted_by_symbol() -> None:
    positions = {"XRPUSDT": D(0), "ETHUSDT": D("-1.500"), "BTCUSDT": D("0.010")}
    assert flatten_orders(positions, "E1", 0, STEPS, MAX_QTY) == [
        CloseOrder("BTCUSDT", "SELL", D("0.010"), "slt-E1_BTCUSDT-flat0-0"),
        CloseOrder("ETHUSDT", "BUY", D("1.500"), "slt-E1_ETHUSDT-flat0-0"),
    ]


def test_flatten_with_no_positions_sends_nothing() -> None:
    assert flatten_orders({}, "E1", 0, STEPS, MAX_QTY) == []
    assert flatten_orders({"BTCUSDT": D("0.000")}, "E1", 0, STEPS, MAX_QTY) == []


def test_flatten_same_round_gives_the_same_ids_and_the_next_round_new_ones() -> None:
    positions = {"BTCUSDT": D("-0.004")}
    first = flatten_orders(positions, "k7", 3, STEPS, MAX_QTY)
    assert first == flatten_orders(positions, "k7", 3, STEPS, MAX_QTY)
    assert first == [CloseOrder("BTCUSDT", "BUY", D("0.004"), "slt-k7_BTCUSDT-flat0-3")]
    nxt = flatten_orders(positions, "k7", 4, STEPS, MAX_QTY)
    assert [o.client_order_id for o in nxt] == ["slt-k7_BTCUSDT-flat0-4"]


def test_flatten_exactly_max_quantity_is_one_order() -> None:
    got = flatten_orders({"BTCUSDT": D("120")}, "E1", 0, STEPS, MAX_QTY)
    assert got == [CloseOrder("BTCUSDT", "SELL", D("120"), "slt-E1_BTCUSDT-flat0-0")]


def test_flatten_one_step_over_max_quantity_sends_a_one_step_remainder() -> None:
    got = flatten_orders({"BTCUSDT": D("120.001")}, "E1", 0, STEPS, MAX_QTY)
    assert [(o.quantity, o.client_order_id) for o in got] == [
        (D("120"), "slt-E1_BTCUSDT-flat0-0"),
        (D("0.001"), "slt-E1_BTCUSDT-flat1-0"),
    ]


def test_flatten_splits_into_max_quantity_chunks_then_the_remainder() -> None:
    got = flatten_orders({"BTCUSDT": D("-250.005")}, "E1", 2, STEPS, MAX_QTY)
    assert got == [
        CloseOrder("BTCUSDT", "BUY", D("120"), "slt-E1_BTCUSDT-flat0-2"),
        CloseOrder("BTCUSDT", "BUY", D("120"), "slt-E1_BTCUSDT-flat1-2"),
        CloseOrder("BTCUSDT", "BUY", D("10.005"), "slt-E1_BTCUSDT-flat2-2"),
    ]


def test_flatten_exact_multiple_of_max_quantity_has_no_empty_remainder() -> None:
    got = flatten_orders({"BTCUSDT": D("240")}, "E1", 0, STEPS, MAX_QTY)
    assert [o.quantity for o in got] == [D("120"), D("120")]


def test_flatten_max_quantity_off_the_step_grid_is_floored_to_the_step() -> None:
    got = flatten_orders({"BTCUSDT": D("250.005")}, "E1", 0, STEPS, {"BTCUSDT": D("100.0005")})
    assert [o.quantity for o in got] == [D("100.000"), D("100.000"), D("50.005")]


def test_flatten_remainder_off_the_step_grid_is_sent_unchanged() -> None:
    got = flatten_orders({"BTCUSDT": D("250.0005")}, "E1", 0, STEPS, MAX_QTY)
    assert [o.quantity for o in got] == [D("120"), D("120"), D("10.0005")]


def test_flatten_without_known_filters_sends_one_order() -> None:
    got = flatten_orders({"NEWUSDT": D("5000000")}, "E1", 0, {}, {})
    assert got == [CloseOrder("NEWUSDT", "SELL", D("5000000"), "slt-E1_NEWUSDT-flat0-0")]


def test_flatten_long_episode_and_symbol_get_the_hashed_deterministic_id() -> None:
    got = flatten_orders({"1000SHIBUSDT": D("-100")}, "20261123T115447Z", 999, {}, {})
    cid = client_order_id("20261123T115447Z_1000SHIBUSDT", "flat0", 999)
    assert got == [CloseOrder("1000SHIBUSDT", "BUY", D("100"), cid)]
    assert cid.startswith("slt-.") and len(cid) == 36


@pytest.mark.parametrize("round_no", [-1, 1000])
def test_flatten_round_outside_0_to_999_raises(round_no: int) -> None:
    with pytest.raises(ValueError, match=f"round_no={round_no}"):
        flatten_orders({"BTCUSDT": D("1")}, "E1", round_no, STEPS, MAX_QTY)


@pytest.mark.parametrize("round_no", [0, 999])
def test_flatten_round_at_the_ends_of_0_to_999_is_accepted(round_no: int) -> None:
    (order,) = flatten_orders({"BTCUSDT": D("1")}, "E1", round_no, STEPS, MAX_QTY)
    assert order.client_order_id == f"slt-E1_BTCUSDT-flat0-{round_no}"


@pytest.mark.parametrize("episode", ["", "e-1", "e_1", "é1", "E1\n"])
def test_flatten_episode_outside_letters_and_digits_raises(episode: str) -> None:
    with pytest.raises(ValueError, match="episode="):
        flatten_orders({}, episode, 0, STEPS, MAX_QTY)


def test_flatten_max_quantity_below_one_step_raises() -> None:
    with pytest.raises(ValueError, match="below one step"):
        flatten_orders({"BTCUSDT": D("1")}, "E1", 0, STEPS, {"BTCUSDT": D("0.0005")})
