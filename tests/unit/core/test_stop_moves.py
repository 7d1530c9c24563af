"""Moving a protective stop never leaves a moment without a resting stop covering the whole
position, on an exchange that refuses a second closePosition stop in one direction (-4130) as
Binance does; and a stop moves only on a meaningful change (ticks and interval).

The plan (shared/core/reconcile.plan_stops) is carried out here against a small model of the
exchange's algo book, written from Binance's rules and not from the planner: after every step,
and whichever step fails or is cut off (with or without its effect), some resting order must
close the whole position."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal as D

import numpy as np
import pytest

from shared.core.exits import stop_to_rest
from shared.core.reconcile import (
    CancelStop,
    PlaceBridge,
    PlaceStop,
    RestingStop,
    StopStep,
    WantedStop,
    plan_stops,
)

BTC = "BTCUSDT"
TICK = D("0.1")


class Refused(Exception):
    """The model exchange refuses a request (Binance's code)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class AlgoBook:
    """Binance's rules for STOP_MARKET algo orders that matter here (BINANCE-API.md §5.10)."""

    orders: list[RestingStop] = field(default_factory=list)

    def place(self, order: RestingStop) -> None:
        if any(o.client_algo_id == order.client_algo_id for o in self.orders):
            raise Refused(-4116)
        if order.is_close_position and any(
            o.is_close_position and o.side == order.side and o.order_type == order.order_type
            for o in self.orders
            if o.symbol == order.symbol
        ):
            raise Refused(-4130)
        self.orders.append(order)

    def cancel(self, client_id: str) -> None:
        before = len(self.orders)
        self.orders = [o for o in self.orders if o.client_algo_id != client_id]
        if len(self.orders) == before:
            raise Refused(-2011)


def covered(book: AlgoBook, quantity: D) -> bool:
    """Whether some resting STOP_MARKET alone would close all of `quantity` (signed)."""
    closing = "SELL" if quantity > 0 else "BUY"
    return any(
        o.order_type == "STOP_MARKET"
        and o.side == closing
        and (o.is_close_position or (o.is_reduce_only and o.quantity >= abs(quantity)))
        for o in book.orders
    )


def effect(book: AlgoBook, step: StopStep) -> None:
    """Apply one step to the model exchange (raises Refused as the exchange would)."""
    if isinstance(step, CancelStop):
        try:
            book.cancel(step.order.client_algo_id)
        except Refused:
            pass  # -2011: no longer resting, which is what a cancel wants
    elif isinstance(step, PlaceBridge):
        book.place(step.as_resting())
    else:
        book.place(
            RestingStop(
                BTC, step.client_algo_id, step.side, "STOP_MARKET", step.trigger_price, True
            )
        )


def run_plan(
    book: AlgoBook, quantity: D, want: WantedStop, cut_at: int | None = None, happened: bool = False
) -> int:
    """Plan against the book and carry the steps out, checking cover after each; at step
    `cut_at` the request fails (after its effect when `happened`: a lost reply, a KILL) and
    the sequence ends, as in procs/guard/protect.apply_stop_plan. Return the steps planned."""
    plan = plan_stops({BTC: quantity}, {BTC: want}, book.orders)
    steps = [s for seq in plan.steps for s in seq]
    was_covered = covered(book, quantity)  # else this is the first stop, not a move
    for k, step in enumerate(steps):
        if k == cut_at:
            if happened:
                effect(book, step)
            assert covered(book, quantity) or not was_covered, f"gap at cut step {k} {step}"
            return len(steps)
        try:
            effect(book, step)
        except Refused as e:
            pytest.fail(f"the exchange refused step {k} {step} with {e.code}: {book.orders}")
        assert covered(book, quantity), f"gap after step {k} {step}: {book.orders}"
    return len(steps)


def settled(book: AlgoBook, want: WantedStop) -> bool:
    return [(o.is_close_position, o.side, o.trigger_price) for o in book.orders] == [
        (True, want.side, want.trigger_price)
    ]


def trail(quantity: D, side: str, start: str, moves: int, step_ticks: int) -> list[WantedStop]:
    sign = 1 if side == "SELL" else -1
    return [
        WantedStop(BTC, side, D(start) + sign * TICK * step_ticks * k, "BTCUSDT_17")
        for k in range(moves)
    ]


@pytest.mark.parametrize(("quantity", "side"), [(D("0.020"), "SELL"), (D("-3.5"), "BUY")])
def test_trailing_moves_keep_the_whole_position_covered_after_every_step(
    quantity: D, side: str
) -> None:
    book = AlgoBook()
    for want in trail(quantity, side, "98000", 12, 7):
        run_plan(book, quantity, want)
        assert settled(book, want)
        assert run_plan(book, quantity, want) == 0  # nothing left to do


@pytest.mark.parametrize("happened", [False, True])
def test_a_move_cut_off_at_any_step_leaves_a_cover_and_the_next_reconcile_finishes_it(
    happened: bool,
) -> None:
    quantity = D("0.020")
    first, moved = trail(quantity, "SELL", "98000", 2, 50)
    count = len(plan_stops({BTC: quantity}, {BTC: moved}, [_stop(first, 0)]).steps[0])
    assert count == 4  # bridge, cancel the old stop, place the new one, cancel the bridge
    for cut_at in range(count):
        book = AlgoBook([_stop(first, 0)])
        run_plan(book, quantity, moved, cut_at, happened)
        run_plan(book, quantity, moved)  # the next reconcile, the exchange answering again
        assert settled(book, moved), (cut_at, book.orders)


def test_random_trails_with_random_cuts_never_leave_a_gap() -> None:
    rng = np.random.default_rng(13)
    for _ in range(200):
        quantity = D(int(rng.integers(1, 500))) / 1000 * (1 if rng.random() < 0.5 else -1)
        side = "SELL" if quantity > 0 else "BUY"
        book = AlgoBook()
        wants = trail(quantity, side, "98000", int(rng.integers(2, 8)), int(rng.integers(1, 90)))
        for want in wants:
            cut_at = int(rng.integers(0, 5)) if rng.random() < 0.5 else None
            run_plan(book, quantity, want, cut_at, bool(rng.random() < 0.5))
        run_plan(book, quantity, wants[-1])
        assert settled(book, wants[-1]), book.orders


def test_a_flip_places_the_new_side_first_without_a_bridge() -> None:
    old = _stop(WantedStop(BTC, "SELL", D("98000"), "s1"), 0)
    book = AlgoBook([old])
    want = WantedStop(BTC, "BUY", D("101000"), "s1")
    plan = plan_stops({BTC: D("-0.020")}, {BTC: want}, book.orders)
    assert plan.steps == ((PlaceStop(BTC, "BUY", D("101000"), "slt-s1-stop-1"), CancelStop(old)),)
    run_plan(book, D("-0.020"), want)
    assert settled(book, want)


def _stop(want: WantedStop, attempt: int) -> RestingStop:
    cid = f"slt-{want.signal_id}-stop-{attempt}"
    return RestingStop(BTC, cid, want.side, "STOP_MARKET", want.trigger_price, True)


# ---- when a move is meaningful -----------------------------------------------------------------


def rest_at(
    resting: str | None,
    carried: str,
    *,
    last_ms: int | None = 0,
    now_ms: int = 10_000,
    is_long: bool = True,
) -> D:
    return stop_to_rest(
        None if resting is None else D(resting),
        D(carried),
        is_long,
        TICK,
        5,
        last_ms,
        now_ms,
        5_000,
    )


def test_a_first_stop_rests_at_the_carried_stop_at_once() -> None:
    assert rest_at(None, "98000.0", last_ms=9_999) == D("98000.0")


def test_a_tightening_below_the_minimum_ticks_keeps_the_resting_stop() -> None:
    assert rest_at("98000.0", "98000.4") == D("98000.0")  # 4 ticks
    assert rest_at("98000.0", "98000.5") == D("98000.5")  # 5 ticks
    assert rest_at("102000.0", "101999.6", is_long=False) == D("102000.0")
    assert rest_at("102000.0", "101999.5", is_long=False) == D("101999.5")


def test_a_tightening_within_the_minimum_interval_waits_for_it() -> None:
    assert rest_at("98000.0", "98010.0", last_ms=6_000, now_ms=10_999) == D("98000.0")
    assert rest_at("98000.0", "98010.0", last_ms=6_000, now_ms=11_000) == D("98010.0")
    assert rest_at("98000.0", "98010.0", last_ms=None) == D("98010.0")


def test_a_carried_stop_looser_than_the_resting_one_follows_at_once() -> None:
    # Never a trail (the carried stop only tightens): a new plan for a new position.
    assert rest_at("98000.0", "97000.0", last_ms=9_999) == D("97000.0")
    assert rest_at("98000.0", "98000.0") == D("98000.0")


def test_stop_to_rest_refuses_a_non_positive_tick() -> None:
    with pytest.raises(ValueError, match="tick_size"):
        stop_to_rest(D(1), D(2), True, D(0), 5, None, 0, 0)
