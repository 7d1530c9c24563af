"""Exchange actions of the protective side, shared by the guard and `slt flatten`.

Decisions are made in shared/core (reconcile.plan_stops, flatten.flatten_orders, exits); this
module performs them over REST and reports what happened, translating the exchange's answers:

    -2021  a stop that would trigger at once: the price is already through it -> close now
    -2022  a reduce-only close with nothing (left) to reduce: already flat, not an error
    -4116  the client id is already open: the order exists (a retry after a lost reply)
    -4130  a closePosition stop already rests in that direction (Binance allows one): the plan
           never asks for a second one of ours, so this is someone else's stop; reported
    -2011  a cancel of an order that no longer rests (triggered, cancelled, expired): done
    ExecutionUnknownError: the order is looked up by its deterministic client id.

A stop plan is a sequence of steps per symbol (reconcile.plan_stops); the steps run in order and
the first that fails ends its symbol's sequence, so a move never gets past a step that did not
happen: the bridge before the old stop is cancelled, the old stop gone before the new one is
placed, the new one resting before the bridge goes. Whatever step fails or is interrupted (a
timeout, a 5xx, -1015, an open circuit breaker, a KILL), a stop of ours covering the whole
position still rests (DESIGN-RULES 1); the next reconcile finishes the move.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from shared import log
from shared.core.flatten import flatten_orders
from shared.core.ids import parse_client_order_id
from shared.core.reconcile import (
    CancelStop,
    PlaceBridge,
    PlaceStop,
    RestingStop,
    StopPlan,
    StopStep,
    is_protective,
)
from shared.exchange.errors import ExchangeError, ExecutionUnknownError, RejectedError
from shared.exchange.rest import ExchangeClient
from shared.schemas import binance as b

WOULD_TRIGGER = -2021
NOTHING_TO_REDUCE = -2022
DUPLICATE_CLIENT_ID = -4116


@dataclass(frozen=True)
class Truth:
    """One REST view of the account: what the exchange says, which beats our records (rule 18)."""

    positions: dict[str, b.Position]  # non-zero positions by symbol
    algo_orders: tuple[b.AlgoOrder, ...]
    orders: tuple[b.Order, ...]

    def amounts(self) -> dict[str, Decimal]:
        return {s: p.amount for s, p in self.positions.items()}


async def fetch_truth(
    client: ExchangeClient, symbol: str | None = None, with_orders: bool = True
) -> Truth:
    """Fetch positions, open algo orders and (`with_orders`) open regular orders, of one symbol
    or all. Raises ExchangeError; the calls are not atomic, so callers re-check before acting
    twice. Regular orders weigh 40 without a symbol: skip them where they are not used."""
    positions = await client.position_risk(symbol)
    algo = await client.open_algo_orders(symbol)
    orders = await client.open_orders(symbol) if with_orders else []
    return Truth({p.symbol: p for p in positions if p.amount != 0}, tuple(algo), tuple(orders))


def resting_stops(algo_orders: Sequence[b.AlgoOrder]) -> list[RestingStop]:
    """Return the algo orders in the form the stop planner reads."""
    return [
        RestingStop(
            symbol=a.symbol,
            client_algo_id=a.client_algo_id,
            side=a.side,
            order_type=a.order_type,
            trigger_price=a.trigger_price,
            is_close_position=a.is_close_position,
            quantity=a.quantity,
            is_reduce_only=a.is_reduce_only,
        )
        for a in algo_orders
    ]


@dataclass
class StopOutcome:
    placed: list[PlaceStop] = field(default_factory=list)
    bridged: list[PlaceBridge] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)  # client ids no longer resting
    trigger_now: list[str] = field(default_factory=list)  # symbols already through their stop
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> one-line error


async def _place(client: ExchangeClient, p: PlaceStop | PlaceBridge, working_type: str) -> None:
    """Place a closePosition stop or a reduce-only bridge; a duplicate id means it rests."""
    try:
        if isinstance(p, PlaceBridge):
            await client.new_algo_order(
                p.symbol,
                p.side,
                "STOP_MARKET",
                p.trigger_price,
                p.client_algo_id,
                quantity=p.quantity,
                is_reduce_only=True,
                working_type=working_type,
            )
        else:
            await client.new_algo_order(
                p.symbol,
                p.side,
                "STOP_MARKET",
                p.trigger_price,
                p.client_algo_id,
                is_close_position=True,
                working_type=working_type,
            )
    except RejectedError as e:
        if e.code != DUPLICATE_CLIENT_ID:
            raise
    except ExecutionUnknownError:
        # Only a resting order with this id proves the placement: the id may also name an older
        # order of ours, cancelled or triggered long ago, which protects nothing now.
        found = await client.fetch_algo_order_by_client_id(p.client_algo_id)
        if found is None or found.status != "NEW":
            raise


async def _cancel(client: ExchangeClient, stop: RestingStop, out: StopOutcome) -> None:
    try:
        await client.cancel_algo_order(stop.client_algo_id)
    except RejectedError:
        pass  # -2011: triggered, cancelled or expired meanwhile; it is not resting any more
    out.cancelled.append(stop.client_algo_id)


async def _perform(
    client: ExchangeClient,
    step: StopStep,
    working_type: str,
    logger: log.EventLogger,
    out: StopOutcome,
) -> bool:
    """Perform one step; return whether it happened (False ends the symbol's sequence)."""
    if isinstance(step, CancelStop):
        c = step.order
        try:
            await _cancel(client, c, out)
        except ExchangeError as e:
            out.failed[c.symbol] = str(e)
            logger.warning(
                "stop_not_cancelled", symbol=c.symbol, client_id=c.client_algo_id, error=str(e)
            )
            return False
        logger.info("stop_cancelled", symbol=c.symbol, client_id=c.client_algo_id)
        return True
    try:
        await _place(client, step, working_type)
    except RejectedError as e:
        if e.code == WOULD_TRIGGER:
            out.trigger_now.append(step.symbol)
            logger.warning(
                "stop_would_trigger",
                symbol=step.symbol,
                trigger=step.trigger_price,
                client_id=step.client_algo_id,
            )
            return False
        out.failed[step.symbol] = str(e)
        logger.error(
            "stop_rejected", symbol=step.symbol, client_id=step.client_algo_id, error=str(e)
        )
        return False
    except ExchangeError as e:
        out.failed[step.symbol] = str(e)
        logger.warning(
            "stop_not_placed", symbol=step.symbol, client_id=step.client_algo_id, error=str(e)
        )
        return False
    if isinstance(step, PlaceBridge):
        out.bridged.append(step)
        logger.info(
            "stop_bridge_placed",
            symbol=step.symbol,
            side=step.side,
            trigger=step.trigger_price,
            qty=step.quantity,
            client_id=step.client_algo_id,
        )
    else:
        out.placed.append(step)
        logger.info(
            "stop_placed",
            symbol=step.symbol,
            side=step.side,
            trigger=step.trigger_price,
            client_id=step.client_algo_id,
        )
    return True


async def apply_stop_plan(
    client: ExchangeClient, plan: StopPlan, working_type: str, logger: log.EventLogger
) -> StopOutcome:
    """Perform the plan's steps, symbol by symbol, in order; a step that fails ends its
    symbol's steps (module docstring). Each step is logged; errors are reported in the outcome.
    On cancellation the step in flight may or may not have happened; either way a stop covering
    the whole position rests, and the next reconcile reads which."""
    out = StopOutcome()
    for steps in plan.steps:
        for step in steps:
            if not await _perform(client, step, working_type, logger, out):
                break
    return out


async def close_now(
    client: ExchangeClient, symbol: str, side: str, quantity: Decimal, client_id: str
) -> b.Order | None:
    """Send a reduce-only MARKET close; return the order, or None when there was nothing to
    reduce (-2022). Raises ExchangeError for other failures (the caller re-reads positions)."""
    try:
        return await client.new_order(
            symbol, side, "MARKET", quantity, client_id, is_reduce_only=True
        )
    except RejectedError as e:
        if e.code == NOTHING_TO_REDUCE:
            return None
        if e.code == DUPLICATE_CLIENT_ID:
            return await client.fetch_order_by_client_id(symbol, client_id)
        raise
    except ExecutionUnknownError:
        return await client.fetch_order_by_client_id(symbol, client_id)


async def cancel_risk_increasing(
    client: ExchangeClient, truth: Truth, logger: log.EventLogger
) -> int:
    """Cancel every open order that could open or add to a position (not reduce-only, not a
    closePosition stop); return how many were cancelled. Protective orders stay."""
    count = 0
    for o in truth.orders:
        if o.is_reduce_only or o.is_close_position:
            continue
        try:
            await client.cancel_order(o.symbol, o.client_order_id)
            count += 1
        except ExchangeError as e:
            logger.warning(
                "order_not_cancelled", symbol=o.symbol, client_id=o.client_order_id, error=str(e)
            )
    for a in truth.algo_orders:
        if a.is_reduce_only or a.is_close_position:
            continue
        try:
            await client.cancel_algo_order(a.client_algo_id)
            count += 1
        except ExchangeError as e:
            logger.warning(
                "order_not_cancelled", symbol=a.symbol, client_id=a.client_algo_id, error=str(e)
            )
    return count


def _our_stops(algo_orders: Sequence[b.AlgoOrder]) -> list[RestingStop]:
    """Return our closePosition orders and our bridges (reconcile.is_protective)."""
    return [
        r
        for r in resting_stops(algo_orders)
        if is_protective(r)
        or (r.is_close_position and parse_client_order_id(r.client_algo_id) is not None)
    ]


async def flatten(
    client: ExchangeClient,
    specs: Mapping[str, b.SymbolSpec],
    episode: str,
    round_s: float,
    max_rounds: int,
    logger: log.EventLogger,
    on_round: Callable[[int], None] | None = None,
) -> bool:
    """Close every position: cancel risk-increasing orders, then reduce-only MARKET closes with
    deterministic client ids, round after round until REST shows every position at zero, and only
    then cancel our protective stops. Return True when flat; False after `max_rounds` (the stops
    stay in place). Raises nothing for exchange errors (logged; the next round re-reads REST).
    `on_round(round_no)` is called at the end of every round that did not finish the flatten
    (the guard reports progress and persists the round)."""
    for round_no in range(max_rounds):
        try:
            truth = await fetch_truth(client)
            if round_no == 0:
                cancelled = await cancel_risk_increasing(client, truth, logger)
                logger.info(
                    "flatten_started",
                    episode=episode,
                    positions=len(truth.positions),
                    cancelled=cancelled,
                )
            if not truth.positions:
                for stop in _our_stops(truth.algo_orders):
                    try:
                        await client.cancel_algo_order(stop.client_algo_id)
                    except RejectedError:
                        pass  # no longer resting
                logger.info("flatten_done", episode=episode, rounds=round_no)
                return True
            step = {s: specs[s].market_step_size for s in truth.positions if s in specs}
            cap = {s: specs[s].market_max_qty for s in truth.positions if s in specs}
            for order in flatten_orders(truth.amounts(), episode, round_no, step, cap):
                filled = await close_now(
                    client, order.symbol, order.side, order.quantity, order.client_order_id
                )
                logger.info(
                    "flatten_close_sent",
                    symbol=order.symbol,
                    side=order.side,
                    qty=order.quantity,
                    client_id=order.client_order_id,
                    status=filled.status if filled else "nothing_to_reduce",
                )
        except ExchangeError as e:
            logger.warning(
                "flatten_round_failed", episode=episode, round=round_no, error=str(e)[:300]
            )
        if on_round is not None:
            on_round(round_no)
        await asyncio.sleep(round_s)
    logger.error("flatten_incomplete", episode=episode, rounds=max_rounds)
    return False
