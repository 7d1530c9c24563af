"""Protective stops against exchange truth (DESIGN-RULES rules 1 and 18).

Pure: the guard fetches positions and open algo orders over REST, passes them with the stop it
wants per symbol, and performs the returned plan: every `place` FIRST, then every `cancel`, so
a position is never left without a resting stop in between.

"Ours" are resting STOP_MARKET orders with closePosition whose client algo id `is_ours` with
purpose "stop". Orders that are not ours are never cancelled. Per symbol, in sorted order:

1. No position (zero or absent): cancel all of ours there; a leftover closePosition stop would
   close the next position opened on that symbol.
2. A position and no wanted stop: leave the resting orders alone and list the symbol in
   `adopted`; the caller builds a plan for it (see `stop_signal_of`) and calls again.
3. A position and a wanted stop (whose side must close the position, else ValueError):
   - one of ours with the wanted side and trigger price is kept (if several, the one carrying
     the wanted signal id with the highest attempt, then the lowest client id) and the others of
     ours are cancelled;
   - otherwise a new stop is placed with attempt = the highest attempt among ours there that
     carry the wanted signal id, plus 1 (0 when none), and all of ours there are cancelled.
     Past attempt 999 the count wraps to 0, and any attempt whose client id is already resting
     is skipped (Binance refuses an open duplicate id, -4116), so the new id is always free.

A resting stop carries the wanted signal id when its client id equals
`client_order_id(signal_id, "stop", its attempt)`. This is the same as comparing the parsed
signal parts for a kept signal id, and also right for a shortened (hashed) one, whose hash
length depends on the width of the attempt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from shared.core.ids import MAX_ATTEMPT, ClientIdParts, client_order_id, parse_client_order_id

STOP_PURPOSE = "stop"
STOP_TYPE = "STOP_MARKET"
_HASH_MARK = "."  # a shortened signal part starts with this (see ids.py)


@dataclass(frozen=True, slots=True)
class RestingStop:
    """An open algo order at the exchange."""

    symbol: str
    client_algo_id: str
    side: str
    order_type: str  # "STOP_MARKET", "TAKE_PROFIT_MARKET", ...
    trigger_price: Decimal
    is_close_position: bool


@dataclass(frozen=True, slots=True)
class WantedStop:
    """The protective stop a position should have."""

    symbol: str
    side: str  # closing side: SELL for a long, BUY for a short
    trigger_price: Decimal
    signal_id: str  # its client id is client_order_id(signal_id, "stop", attempt)


@dataclass(frozen=True, slots=True)
class PlaceStop:
    """A closePosition STOP_MARKET to place."""

    symbol: str
    side: str
    trigger_price: Decimal
    client_algo_id: str


@dataclass(frozen=True, slots=True)
class StopPlan:
    """What to do, in this order: place, then cancel."""

    place: tuple[PlaceStop, ...]  # placed FIRST (never unprotected) ...
    cancel: tuple[RestingStop, ...]  # ... then these are cancelled
    adopted: tuple[str, ...] = ()  # symbols with a position and no wanted stop (report/alert)


def _our_stop(order: RestingStop) -> ClientIdParts | None:
    """Return the id parts of one of our protective stops, or None for any other order."""
    if order.order_type != STOP_TYPE or not order.is_close_position:
        return None
    parts = parse_client_order_id(order.client_algo_id)
    if parts is None or parts.purpose != STOP_PURPOSE:
        return None
    return parts


def _carries(order: RestingStop, parts: ClientIdParts, signal_id: str) -> bool:
    return order.client_algo_id == client_order_id(signal_id, STOP_PURPOSE, parts.attempt)


def _free_id(signal_id: str, first: int, taken: set[str]) -> str:
    """Return the client id of the first attempt from `first` (wrapping past 999 to 0) that is
    not resting."""
    for k in range(MAX_ATTEMPT + 1):
        cid = client_order_id(signal_id, STOP_PURPOSE, (first + k) % (MAX_ATTEMPT + 1))
        if cid not in taken:
            return cid
    raise ValueError(f"reconcile: every stop attempt of signal {signal_id!r} is resting")


def _check_wanted(symbol: str, quantity: Decimal, want: WantedStop) -> None:
    closing = "SELL" if quantity > 0 else "BUY"
    if want.symbol != symbol:
        raise ValueError(f"reconcile: wanted stop for {want.symbol} is filed under {symbol}")
    if want.side != closing:
        raise ValueError(
            f"reconcile: {symbol} wanted stop side {want.side} does not close the position "
            f"{quantity} (needs {closing})"
        )
    if not want.trigger_price > 0:
        raise ValueError(f"reconcile: {symbol} wanted trigger price {want.trigger_price} <= 0")


def plan_stops(
    positions: Mapping[str, Decimal],
    wanted: Mapping[str, WantedStop],
    resting: Sequence[RestingStop],
) -> StopPlan:
    """Return the stops to place and then cancel so every position has exactly its wanted stop.

    `positions` maps symbol to signed quantity. Raises ValueError when a wanted stop's side
    does not close its position, its symbol differs from its key or its trigger is <= 0.
    """
    ours: dict[str, list[tuple[RestingStop, ClientIdParts]]] = {}
    for order in resting:
        parts = _our_stop(order)
        if parts is not None:
            ours.setdefault(order.symbol, []).append((order, parts))
    taken = {order.client_algo_id for order in resting}
    place: list[PlaceStop] = []
    cancel: list[RestingStop] = []
    adopted: list[str] = []
    open_symbols = {symbol for symbol, qty in positions.items() if qty != 0}
    for symbol in sorted(open_symbols | set(ours)):
        mine = sorted(ours.get(symbol, []), key=lambda op: op[0].client_algo_id)
        quantity = positions.get(symbol, Decimal(0))
        if quantity == 0:
            cancel.extend(order for order, _ in mine)
            continue
        want = wanted.get(symbol)
        if want is None:
            adopted.append(symbol)
            continue
        _check_wanted(symbol, quantity, want)
        keepers = [
            (o, p) for o, p in mine if o.side == want.side and o.trigger_price == want.trigger_price
        ]
        if keepers:
            keep, _ = min(
                keepers,
                key=lambda op: (
                    not _carries(op[0], op[1], want.signal_id),
                    -op[1].attempt,
                    op[0].client_algo_id,
                ),
            )
            cancel.extend(order for order, _ in mine if order is not keep)
            continue
        highest = max((p.attempt for o, p in mine if _carries(o, p, want.signal_id)), default=-1)
        cid = _free_id(want.signal_id, highest + 1, taken)
        place.append(PlaceStop(symbol, want.side, want.trigger_price, cid))
        cancel.extend(order for order, _ in mine)
    return StopPlan(tuple(place), tuple(cancel), tuple(adopted))


def stop_signal_of(resting: Sequence[RestingStop], symbol: str) -> str | None:
    """Return the signal id of our newest protective stop on `symbol` (highest attempt, then
    highest client id), or None when there is none.

    Only kept signal ids count: a shortened (hashed) one cannot be turned back into the signal
    id that made it. Reuse the returned id in a `WantedStop` so the resting stop is kept.
    """
    best: tuple[int, str, str] | None = None
    for order in resting:
        parts = _our_stop(order)
        if parts is None or order.symbol != symbol or parts.signal.startswith(_HASH_MARK):
            continue
        key = (parts.attempt, order.client_algo_id, parts.signal)
        if best is None or key > best:
            best = key
    return None if best is None else best[2]
