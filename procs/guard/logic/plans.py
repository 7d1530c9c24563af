"""Which exit plan protects a position: the trader's, only for the fill it was written for, with
levels derived from that fill and checked; else the default plan (issue 13, hole 2).

Pure: the guard passes the trader's ExitPlans of the symbol (Redis), the position, the symbol's
fills (userTrades, oldest first) and the orders of those plans' client ids (looked up at the
exchange); `choose_plan` returns the plan to use with its ExitPlan, or the reason the default
plan applies instead.

- Bound to its entry: a plan is used only when the fill that opened the current position (the
  fill after which the position last left zero or changed sign, `opening_order_id`) belongs to
  the order with the plan's client id, and that order is on the plan's side. A plan left in
  Redis by an earlier entry, or by one never sent, is thus never applied to a position opened
  by hand; a position whose opening fill is not among the fills given gets the default plan.
- Re-derived: the stop and take-profit come from the plan's distances (% of the fill price) and
  the position's actual entry price (shared/core/exits.plan_at_distances), never from levels
  computed before the fill.
- Validated (`check_levels`): every level finite and > 0, the stop on the losing side of the
  entry, before the liquidation price (when known), the take-profit on the winning side. A
  stop on the wrong side would trigger at once (-2021) and close the position as it opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from shared.core import exits as ex
from shared.schemas import guard as g


@dataclass(frozen=True, slots=True)
class Fill:
    """One of the symbol's fills, as userTrades reports it."""

    order_id: int
    amount: Decimal  # signed: + bought, - sold


@dataclass(frozen=True, slots=True)
class EntryOrder:
    """The exchange's record of the order with a plan's client id."""

    client_id: str
    order_id: int
    side: str  # "BUY" | "SELL"


@dataclass(frozen=True, slots=True)
class Chosen:
    """The trader's plan bound to the position: its ExitPlan and the levels derived from it."""

    exit_plan: g.ExitPlan
    plan: ex.Plan


def opening_order_id(quantity: Decimal, fills: list[Fill]) -> int | None:
    """Return the order id of the fill that opened the position of signed `quantity`: walking
    back from the newest fill, the first after which the position was zero or of the other
    sign. None when the fills given do not reach back to it."""
    if quantity == 0:
        return None
    before = quantity
    for fill in reversed(fills):
        before -= fill.amount
        if before == 0 or (before > 0) != (quantity > 0):
            return fill.order_id
    return None


def _is_level(value: Decimal | None) -> bool:
    return value is not None and value.is_finite() and value > 0


def check_levels(plan: ex.Plan, holding: ex.Holding) -> str:
    """Return why `plan` cannot protect `holding` ("" when it can): a level not finite or not
    > 0, a stop not on the losing side of the entry or not before the liquidation price (a known
    one, > 0), a take-profit or invalidation price on the wrong side."""
    entry, liq, is_long = holding.entry_price, holding.liquidation_price, holding.quantity > 0
    stop = plan.stop_price
    if not _is_level(entry):
        return f"entry price {entry} is not finite and positive"
    if not _is_level(stop):
        return f"stop {stop} is not finite and positive"
    if (stop >= entry) if is_long else (stop <= entry):
        return f"stop {stop} is not on the losing side of the entry {entry}"
    if _is_level(liq) and ((stop <= liq) if is_long else (stop >= liq)):
        return f"stop {stop} lies beyond the liquidation price {liq}"
    tp = plan.take_profit_price
    if tp is not None and (not _is_level(tp) or ((tp <= entry) if is_long else (tp >= entry))):
        return f"take-profit {tp} is not on the winning side of the entry {entry}"
    inv = plan.invalidation_price
    if inv is not None and (not _is_level(inv) or ((inv >= entry) if is_long else (inv <= entry))):
        return f"invalidation {inv} is not on the losing side of the entry {entry}"
    return ""


def derive_plan(exit_plan: g.ExitPlan, holding: ex.Holding, tick_size: Decimal) -> ex.Plan | str:
    """Return the levels of `exit_plan` at the position's entry price, checked (`check_levels`),
    or why it cannot be used: distances not finite, not > 0, or a stop distance of 100 % or
    more (a stop at or below zero)."""
    stop_pct, tp_pct = exit_plan.stop_loss_pct, exit_plan.take_profit_pct
    if not (stop_pct.is_finite() and 0 < stop_pct < 100):
        return f"stop distance {stop_pct}% is not within (0, 100)"
    if tp_pct is not None and not (tp_pct.is_finite() and tp_pct > 0):
        return f"take-profit distance {tp_pct}% is not finite and positive"
    if not (_is_level(holding.entry_price) and _is_level(tick_size)):
        return f"entry price {holding.entry_price} or tick {tick_size} is not positive"
    plan = ex.plan_at_distances(holding, stop_pct, tp_pct, tick_size)
    return check_levels(plan, holding) or plan


def choose_plan(
    exit_plans: list[g.ExitPlan],
    holding: ex.Holding,
    tick_size: Decimal,
    fills: list[Fill],
    orders: list[EntryOrder],
) -> Chosen | str:
    """Return the trader's plan for `holding` with its levels derived from the fill, or the
    reason the default plan applies: no plan bound to the position's opening fill, or the plan
    bound to it not usable (`derive_plan`)."""
    if not exit_plans:
        return "no_plan"
    opening = opening_order_id(holding.quantity, fills)
    side = "BUY" if holding.quantity > 0 else "SELL"
    by_client_id = {o.client_id: o for o in orders}
    for exit_plan in exit_plans:
        order = by_client_id.get(exit_plan.client_id)
        if (
            order is None
            or opening is None
            or order.order_id != opening
            or order.side != side
            or exit_plan.side != side
            or exit_plan.symbol != holding.symbol
        ):
            continue
        derived = derive_plan(exit_plan, holding, tick_size)
        if isinstance(derived, str):
            return f"plan of {exit_plan.client_id}: {derived}"
        return Chosen(exit_plan, derived)
    ids = ",".join(p.client_id for p in exit_plans)
    return f"no plan bound to the opening fill (order {opening}); plans of {ids}"
