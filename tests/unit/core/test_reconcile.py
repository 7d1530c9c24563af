"""Protective stops against exchange truth: keep, place, move through a bridge, cancel, adopt."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from shared.core.ids import client_order_id
from shared.core.reconcile import (
    CancelStop,
    PlaceBridge,
    PlaceStop,
    RestingStop,
    StopPlan,
    WantedStop,
    plan_stops,
    stop_signal_of,
)

BTC = "BTCUSDT"
ETH = "ETHUSDT"
LONG_SIGNAL = "BTCUSDT_1718000000000_breakout_long_v2"  # too long: hashed in client ids


def rest(
    cid: str,
    trigger: str = "98000",
    *,
    symbol: str = BTC,
    side: str = "SELL",
    order_type: str = "STOP_MARKET",
    is_close_position: bool = True,
    quantity: str = "0",
) -> RestingStop:
    return RestingStop(
        symbol,
        cid,
        side,
        order_type,
        D(trigger),
        is_close_position,
        D(quantity),
        not is_close_position,
    )


def bridge(cid: str, trigger: str, quantity: str = "0.010", side: str = "SELL") -> RestingStop:
    return rest(cid, trigger, side=side, is_close_position=False, quantity=quantity)


def plan(*steps: object, adopted: tuple[str, ...] = ()) -> StopPlan:
    """A plan with one sequence per argument (a tuple of steps)."""
    return StopPlan(tuple(steps), adopted)  # type: ignore[arg-type]


def cancels(*orders: RestingStop) -> tuple[CancelStop, ...]:
    return tuple(CancelStop(o) for o in orders)


def want(
    trigger: str = "98000", *, symbol: str = BTC, side: str = "SELL", signal: str = "s1"
) -> WantedStop:
    return WantedStop(symbol, side, D(trigger), signal)


LONG_POS = {BTC: D("0.010")}


def test_matching_stop_is_kept_and_nothing_is_sent() -> None:
    got = plan_stops(LONG_POS, {BTC: want()}, [rest("slt-s1-stop-0")])
    assert got == StopPlan()


def test_trigger_equal_in_value_but_not_in_digits_is_kept() -> None:
    got = plan_stops(LONG_POS, {BTC: want("98000.0")}, [rest("slt-s1-stop-0", "98000")])
    assert got == StopPlan()


def test_missing_stop_is_placed_with_attempt_zero() -> None:
    got = plan_stops(LONG_POS, {BTC: want()}, [])
    assert got == plan((PlaceStop(BTC, "SELL", D("98000"), "slt-s1-stop-0"),))


def test_short_position_gets_a_buy_stop() -> None:
    got = plan_stops({BTC: D("-0.5")}, {BTC: want("102000", side="BUY")}, [])
    assert got.place == (PlaceStop(BTC, "BUY", D("102000"), "slt-s1-stop-0"),)


def test_a_move_bridges_with_a_reduce_only_stop_before_the_old_one_is_cancelled() -> None:
    # Binance refuses a second closePosition stop in one direction (-4130): the old one must go
    # before the new one can rest, and a reduce-only stop for the whole position covers the swap.
    old = rest("slt-s1-stop-0", "98000")
    got = plan_stops(LONG_POS, {BTC: want("98500")}, [old])
    placed = PlaceBridge(BTC, "SELL", D("98500"), D("0.010"), "slt-s1-bridge-1")
    assert got == plan(
        (
            placed,
            CancelStop(old),
            PlaceStop(BTC, "SELL", D("98500"), "slt-s1-stop-1"),
            CancelStop(bridge("slt-s1-bridge-1", "98500")),
        )
    )
    assert got.place == (PlaceStop(BTC, "SELL", D("98500"), "slt-s1-stop-1"),)


def test_a_short_move_bridges_with_the_unsigned_quantity() -> None:
    old = rest("slt-s1-stop-4", "102000", side="BUY")
    got = plan_stops({BTC: D("-0.5")}, {BTC: want("101500", side="BUY")}, [old])
    (steps,) = got.steps
    assert steps[0] == PlaceBridge(BTC, "BUY", D("101500"), D("0.5"), "slt-s1-bridge-5")
    assert steps[1:3] == (CancelStop(old), PlaceStop(BTC, "BUY", D("101500"), "slt-s1-stop-5"))


def test_a_move_interrupted_after_the_old_stop_went_places_the_stop_then_drops_the_bridge() -> None:
    left = bridge("slt-s1-bridge-1", "98500")
    got = plan_stops(LONG_POS, {BTC: want("98500")}, [left])
    # Attempts count bridges too: the new stop never takes an id an older stop of ours had.
    assert got == plan((PlaceStop(BTC, "SELL", D("98500"), "slt-s1-stop-2"), CancelStop(left)))


def test_a_move_interrupted_before_the_old_stop_went_reuses_the_resting_bridge() -> None:
    old, left = rest("slt-s1-stop-0", "98000"), bridge("slt-s1-bridge-1", "98500")
    got = plan_stops(LONG_POS, {BTC: want("98500")}, [old, left])
    new = PlaceStop(BTC, "SELL", D("98500"), "slt-s1-stop-2")
    assert got == plan((CancelStop(old), new, CancelStop(left)))


def test_a_bridge_too_small_for_a_grown_position_is_replaced_not_reused() -> None:
    old, small = rest("slt-s1-stop-0", "98000"), bridge("slt-s1-bridge-1", "98500", "0.004")
    got = plan_stops(LONG_POS, {BTC: want("98500")}, [old, small])
    placed = PlaceBridge(BTC, "SELL", D("98500"), D("0.010"), "slt-s1-bridge-2")
    assert got == plan(
        (
            placed,
            CancelStop(old),
            PlaceStop(BTC, "SELL", D("98500"), "slt-s1-stop-2"),
            CancelStop(placed.as_resting()),
            CancelStop(small),
        )
    )


def test_a_bridge_is_dropped_once_the_wanted_stop_rests() -> None:
    stop, left = rest("slt-s1-stop-1", "98500"), bridge("slt-s1-bridge-1", "98500")
    assert plan_stops(LONG_POS, {BTC: want("98500")}, [stop, left]) == plan((CancelStop(left),))


def test_next_attempt_follows_the_highest_resting_attempt_of_the_signal() -> None:
    a, b = rest("slt-s1-stop-7", "97000"), rest("slt-s1-stop-3", "97500")
    other = rest("slt-s2-stop-40", "96000")
    got = plan_stops(LONG_POS, {BTC: want("98500")}, [a, b, other])
    assert got.place == (PlaceStop(BTC, "SELL", D("98500"), "slt-s1-stop-8"),)
    (steps,) = got.steps
    assert steps[0] == PlaceBridge(BTC, "SELL", D("98500"), D("0.010"), "slt-s1-bridge-8")
    assert steps[1:4] == cancels(b, a, other)  # sorted by client id, all before the new stop


def test_a_stop_of_another_signal_is_moved_from_attempt_zero() -> None:
    old = rest("slt-s0-stop-5", "97000")
    got = plan_stops(LONG_POS, {BTC: want()}, [old])
    assert got.place == (PlaceStop(BTC, "SELL", D("98000"), "slt-s1-stop-0"),)
    assert got.steps[0][:2] == (
        PlaceBridge(BTC, "SELL", D("98000"), D("0.010"), "slt-s1-bridge-0"),
        CancelStop(old),
    )


def test_a_stop_of_another_signal_at_the_wanted_trigger_is_kept() -> None:
    got = plan_stops(LONG_POS, {BTC: want()}, [rest("slt-s0-stop-5")])
    assert got == StopPlan()


def test_of_several_matching_stops_the_wanted_signals_newest_is_kept() -> None:
    s1_old, s1_new, s0 = rest("slt-s1-stop-0"), rest("slt-s1-stop-1"), rest("slt-s0-stop-9")
    got = plan_stops(LONG_POS, {BTC: want()}, [s0, s1_old, s1_new])
    assert got == plan(cancels(s0, s1_old))


def test_a_stop_on_the_wrong_side_is_replaced_placing_first() -> None:
    leftover = rest("slt-s1-stop-0", side="BUY")  # from a short that was reversed: no -4130
    got = plan_stops(LONG_POS, {BTC: want()}, [leftover])
    assert got == plan((PlaceStop(BTC, "SELL", D("98000"), "slt-s1-stop-1"), CancelStop(leftover)))


def test_attempt_past_999_wraps_to_zero_when_zero_is_free() -> None:
    old = rest("slt-s1-stop-999", "97000")
    got = plan_stops(LONG_POS, {BTC: want()}, [old])
    assert got.place == (PlaceStop(BTC, "SELL", D("98000"), "slt-s1-stop-0"),)
    assert got.cancel[0] == old


def test_attempt_past_999_skips_zero_when_zero_is_resting() -> None:
    zero, last = rest("slt-s1-stop-0", "96000"), rest("slt-s1-stop-999", "97000")
    got = plan_stops(LONG_POS, {BTC: want()}, [last, zero])
    assert got.place == (PlaceStop(BTC, "SELL", D("98000"), "slt-s1-stop-1"),)
    assert got.cancel[:2] == (zero, last)


def test_new_id_never_repeats_a_resting_order_that_is_not_ours() -> None:
    # A STOP (limit) with the id we would use: not ours to cancel, but its id is taken.
    limit = rest("slt-s1-stop-0", order_type="STOP")
    got = plan_stops(LONG_POS, {BTC: want()}, [limit])
    assert got == plan((PlaceStop(BTC, "SELL", D("98000"), "slt-s1-stop-1"),))


def test_hashed_signal_id_finds_its_attempt_across_id_widths() -> None:
    # The hash is shorter at attempt 99 than at attempt 0: compare whole recomputed ids.
    old = rest(client_order_id(LONG_SIGNAL, "stop", 99), "97000")
    got = plan_stops(LONG_POS, {BTC: want(signal=LONG_SIGNAL)}, [old])
    new_id = client_order_id(LONG_SIGNAL, "stop", 100)
    assert got.place == (PlaceStop(BTC, "SELL", D("98000"), new_id),)
    assert got.cancel[0] == old


def test_position_without_a_wanted_stop_is_adopted_and_left_alone() -> None:
    ours = rest("slt-s1-stop-0", symbol=ETH)
    got = plan_stops({ETH: D("2.5")}, {}, [ours])
    assert got == StopPlan(adopted=(ETH,))


def test_our_stops_and_bridges_on_a_symbol_without_position_are_cancelled() -> None:
    gone, zero = rest("slt-s1-stop-0", symbol=ETH), rest("slt-s2-stop-3", symbol=BTC)
    left = bridge("slt-s2-bridge-3", "98500")
    got = plan_stops({BTC: D("0")}, {BTC: want()}, [gone, zero, left])
    assert got == plan(cancels(left, zero), cancels(gone))


def test_orders_that_are_not_ours_are_never_cancelled() -> None:
    others = [
        rest("web_abc123"),  # placed by hand
        rest("slt-s1-tp-0", order_type="TAKE_PROFIT_MARKET"),  # ours, not a stop
        rest("slt-s1-stop-1", is_close_position=False),  # a sized stop, not closePosition
        rest("slt-s1-bridge-1"),  # a closePosition order named like a bridge
        rest("slt-s1-entry-0"),  # our id, other purpose
    ]
    assert plan_stops({}, {}, others) == StopPlan()
    got = plan_stops(LONG_POS, {BTC: want("98500")}, others)
    # None of ours rests, so no bridge: the new stop is placed (its -4130, if a closePosition
    # stop of someone else rests, is the guard's to report). stop-0 is the first free id.
    assert got == plan((PlaceStop(BTC, "SELL", D("98500"), "slt-s1-stop-0"),))


def test_plan_covers_many_symbols_in_sorted_order() -> None:
    positions = {"XRPUSDT": D("-10"), BTC: D("0.010"), ETH: D("1"), "SOLUSDT": D("0")}
    wanted = {"XRPUSDT": want("0.6", symbol="XRPUSDT", side="BUY"), BTC: want()}
    sol = rest("slt-s9-stop-0", symbol="SOLUSDT")
    got = plan_stops(positions, wanted, [sol])
    assert got == plan(
        (PlaceStop(BTC, "SELL", D("98000"), "slt-s1-stop-0"),),
        cancels(sol),
        (PlaceStop("XRPUSDT", "BUY", D("0.6"), "slt-s1-stop-0"),),
        adopted=(ETH,),
    )


def test_wanted_side_that_does_not_close_the_position_raises() -> None:
    with pytest.raises(ValueError, match="side SELL does not close"):
        plan_stops({BTC: D("-0.010")}, {BTC: want()}, [])
    with pytest.raises(ValueError, match="side BUY does not close"):
        plan_stops(LONG_POS, {BTC: want(side="BUY")}, [])


def test_wanted_stop_filed_under_another_symbol_raises() -> None:
    with pytest.raises(ValueError, match="filed under"):
        plan_stops(LONG_POS, {BTC: want(symbol=ETH)}, [])


def test_wanted_trigger_not_positive_raises() -> None:
    with pytest.raises(ValueError, match="trigger price 0"):
        plan_stops(LONG_POS, {BTC: want("0")}, [])


def test_stop_signal_of_returns_the_signal_of_our_newest_stop() -> None:
    resting = [
        rest("slt-s1-stop-2"),
        rest("slt-s2-stop-5"),
        rest("slt-s9-stop-9", symbol=ETH),
        rest("slt-s8-stop-99", order_type="STOP"),
        rest("web_1"),
    ]
    assert stop_signal_of(resting, BTC) == "s2"
    assert stop_signal_of(resting, ETH) == "s9"
    assert stop_signal_of(resting, "XRPUSDT") is None


def test_stop_signal_of_skips_hashed_signal_ids() -> None:
    hashed = rest(client_order_id(LONG_SIGNAL, "stop", 7))
    assert stop_signal_of([hashed], BTC) is None
    assert stop_signal_of([hashed, rest("BTC_1718-stop-0"), rest("slt-BTC_1718-stop-0")], BTC) == (
        "BTC_1718"
    )


def test_adopted_stop_kept_when_the_caller_reuses_its_signal() -> None:
    resting = [rest("slt-s2-stop-5", "97000", symbol=ETH)]
    first = plan_stops({ETH: D("1")}, {}, resting)
    assert first.adopted == (ETH,)
    signal = stop_signal_of(resting, ETH)
    assert signal == "s2"
    wanted = {ETH: want("97000", symbol=ETH, signal=signal)}
    assert plan_stops({ETH: D("1")}, wanted, resting) == StopPlan()
