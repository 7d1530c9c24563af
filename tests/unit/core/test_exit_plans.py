"""Issue 13, hole 2: the trader's exit plan is used only for the fill it was written for, with
levels derived from that fill and checked (procs/guard/logic/plans.py); else the default plan."""

from __future__ import annotations

from decimal import Decimal

from procs.guard.logic import plans as pl
from shared.core import exits as ex
from shared.schemas import guard as g

TICK = Decimal("0.1")


def holding(quantity: str, entry: str, liquidation: str = "0") -> ex.Holding:
    return ex.Holding(
        symbol="BTCUSDT",
        quantity=Decimal(quantity),
        entry_price=Decimal(entry),
        leverage=10,
        liquidation_price=Decimal(liquidation),
        opened_ms=0,
    )


def exit_plan(
    side: str = "BUY",
    client_id: str = "slt-BTCUSDT_1_B-entry-0",
    stop_pct: str = "1",
    tp_pct: str | None = "2",
) -> g.ExitPlan:
    return g.ExitPlan(
        symbol="BTCUSDT",
        client_id=client_id,
        signal_id="BTCUSDT_1_B",
        side=side,
        stop_loss_pct=Decimal(stop_pct),
        take_profit_pct=None if tp_pct is None else Decimal(tp_pct),
        created_ms=1,
    )


# ---- opening fill -------------------------------------------------------------------------------


def test_opening_order_id_of_a_position_opened_by_one_order_is_that_order():
    fills = [pl.Fill(1, Decimal("0.01")), pl.Fill(1, Decimal("-0.01")), pl.Fill(7, Decimal("0.02"))]
    assert pl.opening_order_id(Decimal("0.02"), fills) == 7


def test_opening_order_id_walks_back_over_adds_and_partial_closes():
    fills = [pl.Fill(5, Decimal("0.03")), pl.Fill(6, Decimal("-0.01")), pl.Fill(8, Decimal("0.02"))]
    assert pl.opening_order_id(Decimal("0.04"), fills) == 5


def test_opening_order_id_of_a_flip_is_the_order_that_crossed_zero():
    fills = [pl.Fill(2, Decimal("-0.05")), pl.Fill(3, Decimal("0.08"))]
    assert pl.opening_order_id(Decimal("0.03"), fills) == 3


def test_opening_order_id_is_none_when_the_fills_do_not_reach_back_to_the_opening():
    assert pl.opening_order_id(Decimal("0.05"), [pl.Fill(9, Decimal("0.02"))]) is None
    assert pl.opening_order_id(Decimal("0.05"), []) is None


# ---- derivation and checks ----------------------------------------------------------------------


def test_derive_plan_takes_the_levels_from_the_fill_price_not_the_decision_price():
    plan = pl.derive_plan(exit_plan(), holding("0.02", "50000"), TICK)
    assert plan == ex.Plan(stop_price=Decimal("49500.0"), take_profit_price=Decimal("51000.0"))
    short = pl.derive_plan(exit_plan("SELL"), holding("-0.02", "40000"), TICK)
    assert short == ex.Plan(stop_price=Decimal("40400.0"), take_profit_price=Decimal("39200.0"))


def test_derive_plan_without_a_take_profit_distance_has_no_take_profit():
    plan = pl.derive_plan(exit_plan(tp_pct=None), holding("0.02", "50000"), TICK)
    assert isinstance(plan, ex.Plan) and plan.take_profit_price is None


def test_derive_plan_refuses_a_nan_infinite_zero_or_total_stop_distance():
    for bad in ("NaN", "Infinity", "0", "-1", "100", "150"):
        reason = pl.derive_plan(exit_plan(stop_pct=bad), holding("0.02", "50000"), TICK)
        assert isinstance(reason, str) and "stop distance" in reason, bad


def test_derive_plan_refuses_a_nan_or_negative_take_profit_distance():
    for bad in ("NaN", "-2", "0"):
        reason = pl.derive_plan(exit_plan(tp_pct=bad), holding("0.02", "50000"), TICK)
        assert isinstance(reason, str) and "take-profit distance" in reason, bad


def test_derive_plan_refuses_a_stop_beyond_the_liquidation_price():
    reason = pl.derive_plan(exit_plan(stop_pct="5"), holding("0.02", "50000", "48000"), TICK)
    assert reason == "stop 47500 lies beyond the liquidation price 48000"
    short = pl.derive_plan(
        exit_plan("SELL", stop_pct="5"), holding("-0.02", "50000", "52000"), TICK
    )
    assert short == "stop 52500 lies beyond the liquidation price 52000"


def test_check_levels_refuses_a_stop_on_the_winning_side_of_the_entry():
    long = ex.Plan(stop_price=Decimal("50100"))
    assert pl.check_levels(long, holding("0.02", "50000")) == (
        "stop 50100 is not on the losing side of the entry 50000"
    )
    short = ex.Plan(stop_price=Decimal("49900"))
    assert "not on the losing side" in pl.check_levels(short, holding("-0.02", "50000"))
    at_entry = ex.Plan(stop_price=Decimal("50000"))
    assert "not on the losing side" in pl.check_levels(at_entry, holding("0.02", "50000"))


def test_check_levels_refuses_nan_and_non_positive_levels():
    nan = ex.Plan(stop_price=Decimal("NaN"))
    assert pl.check_levels(nan, holding("0.02", "50000")) == "stop NaN is not finite and positive"
    zero = ex.Plan(stop_price=Decimal("0"))
    assert "not finite and positive" in pl.check_levels(zero, holding("0.02", "50000"))
    tp = ex.Plan(stop_price=Decimal("49000"), take_profit_price=Decimal("NaN"))
    assert "take-profit NaN" in pl.check_levels(tp, holding("0.02", "50000"))


def test_check_levels_refuses_a_take_profit_on_the_losing_side():
    plan = ex.Plan(stop_price=Decimal("49000"), take_profit_price=Decimal("49500"))
    assert "not on the winning side" in pl.check_levels(plan, holding("0.02", "50000"))


def test_check_levels_accepts_a_sound_plan():
    plan = ex.Plan(stop_price=Decimal("49000"), take_profit_price=Decimal("51000"))
    assert pl.check_levels(plan, holding("0.02", "50000", "45000")) == ""


# ---- choice -------------------------------------------------------------------------------------


def test_choose_plan_uses_the_plan_of_the_order_that_opened_the_position():
    fills = [pl.Fill(42, Decimal("0.02"))]
    orders = [pl.EntryOrder("slt-BTCUSDT_1_B-entry-0", 42, "BUY")]
    chosen = pl.choose_plan([exit_plan()], holding("0.02", "50000"), TICK, fills, orders)
    assert isinstance(chosen, pl.Chosen)
    assert chosen.exit_plan.client_id == "slt-BTCUSDT_1_B-entry-0"
    assert chosen.plan.stop_price == Decimal("49500.0")


def test_choose_plan_ignores_a_stale_plan_for_a_position_opened_by_hand():
    # The plan's order filled and closed earlier; the position now was opened by order 43.
    fills = [pl.Fill(42, Decimal("0.02")), pl.Fill(50, Decimal("-0.02")), pl.Fill(43, Decimal("1"))]
    orders = [pl.EntryOrder("slt-BTCUSDT_1_B-entry-0", 42, "BUY")]
    reason = pl.choose_plan([exit_plan()], holding("1", "50000"), TICK, fills, orders)
    assert reason == (
        "no plan bound to the opening fill (order 43); plans of slt-BTCUSDT_1_B-entry-0"
    )


def test_choose_plan_ignores_a_plan_whose_order_never_reached_the_exchange():
    fills = [pl.Fill(43, Decimal("0.02"))]
    reason = pl.choose_plan([exit_plan()], holding("0.02", "50000"), TICK, fills, [])
    assert isinstance(reason, str) and reason.startswith("no plan bound to the opening fill")


def test_choose_plan_ignores_a_plan_of_the_other_side():
    fills = [pl.Fill(42, Decimal("-0.02"))]
    orders = [pl.EntryOrder("slt-BTCUSDT_1_B-entry-0", 42, "SELL")]
    reason = pl.choose_plan([exit_plan("BUY")], holding("-0.02", "50000"), TICK, fills, orders)
    assert isinstance(reason, str) and reason.startswith("no plan bound")


def test_choose_plan_with_an_unusable_bound_plan_says_why():
    fills = [pl.Fill(42, Decimal("0.02"))]
    orders = [pl.EntryOrder("slt-BTCUSDT_1_B-entry-0", 42, "BUY")]
    plans = [exit_plan(stop_pct="NaN")]
    reason = pl.choose_plan(plans, holding("0.02", "50000"), TICK, fills, orders)
    assert reason == "plan of slt-BTCUSDT_1_B-entry-0: stop distance NaN% is not within (0, 100)"


def test_choose_plan_without_plans_says_so():
    assert pl.choose_plan([], holding("0.02", "50000"), TICK, [], []) == "no_plan"


def test_exit_plan_of_the_old_schema_without_a_client_id_does_not_decode():
    import msgspec
    import pytest

    old = msgspec.msgpack.encode(
        {
            "v": 1,
            "symbol": "BTCUSDT",
            "signal_id": "x",
            "side": "BUY",
            "stop_price": "1",
            "created_ms": 1,
        }
    )
    with pytest.raises(msgspec.ValidationError):
        g.decode_plan(old)
