"""Exchange actions of the protective side, shared by the guard and `slt flatten`.

Decisions are made in shared/core (reconcile.plan_stops, flatten.flatten_orders, exits); this
module performs them over REST and reports what happened, translating the exchange's answers:

    -2021  a stop that would trigger at once: the price is already through it -> close now
    -2022  a reduce-only close with nothing (left) to reduce: already flat, not an error
    -4116  the client id is already open: the order exists (a retry after a lost reply)
    -4130  Binance refuses a second closePosition stop in one direction: cancel the old one
           first, then place (the guard watches the mark meanwhile)
    ExecutionUnknownError: the order is looked up by its deterministic client id.

A replacement stop is placed before the old one is cancelled, and the old one is never cancelled
when its replacement failed: no code path here leaves a position without a resting stop while the
exchange accepts orders (DESIGN-RULES 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from shared import log
from shared.core.flatten import flatten_orders
from shared.core.ids import parse_client_order_id
from shared.core.reconcile import PlaceStop, RestingStop, StopPlan
from shared.exchange.errors import ExchangeError, ExecutionUnknownError, RejectedError
from shared.exchange.rest import ExchangeClient
from shared.schemas import binance as b

WOULD_TRIGGER = -2021
NOTHING_TO_REDUCE = -2022
DUPLICATE_CLIENT_ID = -4116
CLOSE_POSITION_EXISTS = -4130


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
        )
        for a in algo_orders
    ]


@dataclass
class StopOutcome:
    placed: list[PlaceStop] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    trigger_now: list[str] = field(default_factory=list)  # symbols already through their stop
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> one-line error


async def _place(client: ExchangeClient, p: PlaceStop, working_type: str) -> None:
    try:
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
        if await client.fetch_algo_order_by_client_id(p.client_algo_id) is None:
            raise


async def _cancel(client: ExchangeClient, stop: RestingStop, out: StopOutcome) -> None:
    try:
        await client.cancel_algo_order(stop.client_algo_id)
    except RejectedError:
        pass  # -2011: triggered, cancelled or expired meanwhile; it is not resting any more
    out.cancelled.append(stop.client_algo_id)


async def apply_stop_plan(
    client: ExchangeClient, plan: StopPlan, working_type: str, logger: log.EventLogger
) -> StopOutcome:
    """Place the plan's stops, then cancel what it replaces; never cancel a symbol's old stop
    when its new one failed. Each step is logged; errors are reported in the outcome."""
    out = StopOutcome()
    for p in plan.place:
        try:
            try:
                await _place(client, p, working_type)
            except RejectedError as e:
                if e.code != CLOSE_POSITION_EXISTS:
                    raise
                for old in [c for c in plan.cancel if c.symbol == p.symbol]:
                    await _cancel(client, old, out)
                await _place(client, p, working_type)
        except RejectedError as e:
            if e.code == WOULD_TRIGGER:
                out.trigger_now.append(p.symbol)
                logger.warning(
                    "stop_would_trigger",
                    symbol=p.symbol,
                    trigger=p.trigger_price,
                    client_id=p.client_algo_id,
                )
                continue
            out.failed[p.symbol] = str(e)
            logger.error("stop_rejected", symbol=p.symbol, client_id=p.client_algo_id, error=str(e))
            continue
        except ExchangeError as e:
            out.failed[p.symbol] = str(e)
            logger.warning(
                "stop_not_placed", symbol=p.symbol, client_id=p.client_algo_id, error=str(e)
            )
            continue
        out.placed.append(p)
        logger.info(
            "stop_placed",
            symbol=p.symbol,
            side=p.side,
            trigger=p.trigger_price,
            client_id=p.client_algo_id,
        )
    keep = set(out.failed) | set(out.trigger_now)
    for c in plan.cancel:
        if c.symbol in keep or c.client_algo_id in out.cancelled:
            continue
        try:
            await _cancel(client, c, out)
            logger.info("stop_cancelled", symbol=c.symbol, client_id=c.client_algo_id)
        except ExchangeError as e:
            logger.warning(
                "stop_not_cancelled", symbol=c.symbol, client_id=c.client_algo_id, error=str(e)
            )
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


def _our_stops(algo_orders: Sequence[b.AlgoOrder]) -> list[b.AlgoOrder]:
    return [
        a
        for a in algo_orders
        if a.is_close_position and parse_client_order_id(a.client_algo_id) is not None
    ]


async def flatten(
    client: ExchangeClient,
    specs: Mapping[str, b.SymbolSpec],
    episode: str,
    round_s: float,
    max_rounds: int,
    logger: log.EventLogger,
) -> bool:
    """Close every position: cancel risk-increasing orders, then reduce-only MARKET closes with
    deterministic client ids, round after round until REST shows every position at zero, and only
    then cancel our protective stops. Return True when flat; False after `max_rounds` (the stops
    stay in place). Raises nothing for exchange errors (logged; the next round re-reads REST)."""
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
        await asyncio.sleep(round_s)
    logger.error("flatten_incomplete", episode=episode, rounds=max_rounds)
    return False
