"""Protective stops against exchange truth (DESIGN-RULES rules 1 and 18).

Pure: the guard fetches positions and open algo orders over REST, passes them with the stop it
wants per symbol, and performs the returned plan: per symbol, its steps in order, and a step that
fails ends that symbol's steps (the next reconcile plans again from exchange truth). Every
sequence keeps a resting stop covering the whole position at every instant, on Binance and on
the paper exchange alike.

"Ours" are resting STOP_MARKET orders whose client algo id `is_ours`: with closePosition and
purpose "stop" (the protective stop), or reduce-only with a quantity and purpose "bridge" (see
below). Orders that are not ours are never cancelled. Per symbol, in sorted order:

1. No position (zero or absent): cancel all of ours there; a leftover stop would close the next
   position opened on that symbol.
2. A position and no wanted stop: leave the resting orders alone and list the symbol in
   `adopted`; the caller builds a plan for it (see `stop_signal_of`) and calls again.
3. A position and a wanted stop (whose side must close the position, else ValueError):
   - one of our closePosition stops with the wanted side and trigger price is kept (if several,
     the one carrying the wanted signal id with the highest attempt, then the lowest client id)
     and all other orders of ours there are cancelled;
   - otherwise a new closePosition stop is placed with attempt = the highest attempt among our
     stops and bridges there that carry the wanted signal id, plus 1 (0 when none). Past
     attempt 999 the count wraps to 0, and any attempt whose client id is already resting is
     skipped (Binance refuses an open duplicate id, -4116), so the new id is always free; nor
     does it repeat the id of the stop or bridge it replaces.
     - No closePosition stop of ours rests on the wanted side (a first stop, a flip, or a move
       interrupted after its old stop was cancelled): place the new stop FIRST, then cancel
       all other orders of ours.
     - Else the stop MOVES. Binance refuses a second closePosition stop in one direction
       (-4130), so the new one can only be placed once the old one is gone. A BRIDGE covers the
       swap: a reduce-only STOP_MARKET for the whole position (|quantity|) at the new trigger,
       which -4130 does not concern. Steps: place the bridge (or keep one of ours already
       resting on the wanted side and trigger for at least the whole position), cancel the old
       closePosition stop(s) of that side, place the new closePosition stop, cancel the
       bridge, then cancel the other orders of ours. A failure at any step leaves a stop
       covering the whole position: the old stop (the bridge failed), the old stop and the
       bridge (the cancel failed), or the bridge (the new stop failed); the next reconcile
       finishes the move. The bridge's client id is `client_order_id(signal_id, "bridge",
       attempt)` with the new stop's attempt (or the next free one).

A resting stop carries the wanted signal id when its client id equals
`client_order_id(signal_id, purpose, its attempt)`. This is the same as comparing the parsed
signal parts for a kept signal id, and also right for a shortened (hashed) one, whose hash
length depends on the width of the attempt.

A bridge needs the position's quantity within the symbol's MARKET_LOT_SIZE maxQty (a STOP_MARKET
child is a market order); above it the exchange refuses the bridge and the move stops before
the old stop is touched: protected, but not trailed, and alerted by the guard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from shared.core.ids import MAX_ATTEMPT, ClientIdParts, client_order_id, parse_client_order_id

STOP_PURPOSE = "stop"
BRIDGE_PURPOSE = "bridge"
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
    quantity: Decimal = Decimal(0)  # 0 with closePosition
    is_reduce_only: bool = False


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
class PlaceBridge:
    """A reduce-only STOP_MARKET for `quantity` to place: it covers a stop while it moves."""

    symbol: str
    side: str
    trigger_price: Decimal
    quantity: Decimal  # the whole position, unsigned
    client_algo_id: str

    def as_resting(self) -> RestingStop:
        """Return the bridge as it rests once placed (for the step that cancels it)."""
        return RestingStop(
            self.symbol,
            self.client_algo_id,
            self.side,
            STOP_TYPE,
            self.trigger_price,
            False,
            self.quantity,
            True,
        )


@dataclass(frozen=True, slots=True)
class CancelStop:
    """One of our resting orders to cancel."""

    order: RestingStop

    @property
    def symbol(self) -> str:
        return self.order.symbol


StopStep = PlaceStop | PlaceBridge | CancelStop


@dataclass(frozen=True, slots=True)
class StopPlan:
    """What to do: per symbol (sorted), its steps in order; a failed step ends its symbol's."""

    steps: tuple[tuple[StopStep, ...], ...] = ()
    adopted: tuple[str, ...] = ()  # symbols with a position and no wanted stop (report/alert)

    @property
    def place(self) -> tuple[PlaceStop, ...]:
        """Return the closePosition stops the plan places."""
        return tuple(s for seq in self.steps for s in seq if isinstance(s, PlaceStop))

    @property
    def cancel(self) -> tuple[RestingStop, ...]:
        """Return the resting orders the plan cancels, bridges it places included."""
        return tuple(s.order for seq in self.steps for s in seq if isinstance(s, CancelStop))


def _ours(order: RestingStop) -> ClientIdParts | None:
    """Return the id parts of one of our protective stops or bridges, or None for any other."""
    if order.order_type != STOP_TYPE:
        return None
    parts = parse_client_order_id(order.client_algo_id)
    if parts is None:
        return None
    if order.is_close_position and parts.purpose == STOP_PURPOSE:
        return parts
    if not order.is_close_position and parts.purpose == BRIDGE_PURPOSE:
        return parts
    return None


def is_protective(order: RestingStop) -> bool:
    """Return whether `order` is one of our protective stops or bridges (module docstring)."""
    return _ours(order) is not None


def covers(order: RestingStop, symbol: str, quantity: Decimal) -> bool:
    """Return whether `order` alone closes the whole signed position `quantity` of `symbol`
    when triggered: a STOP_MARKET on the closing side with closePosition, or reduce-only for at
    least |quantity|."""
    if order.symbol != symbol or order.order_type != STOP_TYPE or quantity == 0:
        return False
    if order.side != ("SELL" if quantity > 0 else "BUY"):
        return False
    return order.is_close_position or (order.is_reduce_only and order.quantity >= abs(quantity))


def _carries(order: RestingStop, parts: ClientIdParts, signal_id: str) -> bool:
    return order.client_algo_id == client_order_id(signal_id, parts.purpose, parts.attempt)


def _free_attempt(signal_id: str, purpose: str, first: int, taken: set[str]) -> int:
    """Return the first attempt from `first` (wrapping past 999 to 0) whose client id is not
    resting."""
    for k in range(MAX_ATTEMPT + 1):
        attempt = (first + k) % (MAX_ATTEMPT + 1)
        if client_order_id(signal_id, purpose, attempt) not in taken:
            return attempt
    raise ValueError(f"reconcile: every {purpose} attempt of signal {signal_id!r} is resting")


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


def _symbol_steps(
    quantity: Decimal,
    want: WantedStop,
    mine: list[tuple[RestingStop, ClientIdParts]],
    taken: set[str],
) -> tuple[StopStep, ...]:
    """Return the steps that give one position exactly its wanted stop (module docstring)."""
    stops = [(o, p) for o, p in mine if o.is_close_position]
    keepers = [
        (o, p) for o, p in stops if o.side == want.side and o.trigger_price == want.trigger_price
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
        return tuple(CancelStop(o) for o, _ in mine if o is not keep)
    highest = max((p.attempt for o, p in mine if _carries(o, p, want.signal_id)), default=-1)
    attempt = _free_attempt(want.signal_id, STOP_PURPOSE, highest + 1, taken)
    new = PlaceStop(
        want.symbol,
        want.side,
        want.trigger_price,
        client_order_id(want.signal_id, STOP_PURPOSE, attempt),
    )
    blocking = [o for o, _ in stops if o.side == want.side]  # -4130 while any of these rests
    if not blocking:
        return (new, *(CancelStop(o) for o, _ in mine))
    size = abs(quantity)
    covering = [
        o
        for o, _ in mine
        if not o.is_close_position
        and o.side == want.side
        and o.trigger_price == want.trigger_price
        and o.quantity >= size
    ]
    steps: list[StopStep] = []
    if covering:
        bridge = min(covering, key=lambda o: o.client_algo_id)
    else:
        bridge_attempt = _free_attempt(want.signal_id, BRIDGE_PURPOSE, attempt, taken)
        placed = PlaceBridge(
            want.symbol,
            want.side,
            want.trigger_price,
            size,
            client_order_id(want.signal_id, BRIDGE_PURPOSE, bridge_attempt),
        )
        steps.append(placed)
        bridge = placed.as_resting()
    steps += [CancelStop(o) for o in blocking]
    steps += [new, CancelStop(bridge)]
    steps += [CancelStop(o) for o, _ in mine if o not in blocking and o is not bridge]
    return tuple(steps)


def plan_stops(
    positions: Mapping[str, Decimal],
    wanted: Mapping[str, WantedStop],
    resting: Sequence[RestingStop],
) -> StopPlan:
    """Return, per symbol, the steps that give every position exactly its wanted stop without
    a moment uncovered (module docstring).

    `positions` maps symbol to signed quantity. Raises ValueError when a wanted stop's side
    does not close its position, its symbol differs from its key or its trigger is <= 0.
    """
    ours: dict[str, list[tuple[RestingStop, ClientIdParts]]] = {}
    for order in resting:
        parts = _ours(order)
        if parts is not None:
            ours.setdefault(order.symbol, []).append((order, parts))
    taken = {order.client_algo_id for order in resting}
    steps: list[tuple[StopStep, ...]] = []
    adopted: list[str] = []
    open_symbols = {symbol for symbol, qty in positions.items() if qty != 0}
    for symbol in sorted(open_symbols | set(ours)):
        mine = sorted(ours.get(symbol, []), key=lambda op: op[0].client_algo_id)
        quantity = positions.get(symbol, Decimal(0))
        if quantity == 0:
            if mine:
                steps.append(tuple(CancelStop(order) for order, _ in mine))
            continue
        want = wanted.get(symbol)
        if want is None:
            adopted.append(symbol)
            continue
        _check_wanted(symbol, quantity, want)
        symbol_steps = _symbol_steps(quantity, want, mine, taken)
        if symbol_steps:
            steps.append(symbol_steps)
    return StopPlan(tuple(steps), tuple(adopted))


def stop_signal_of(resting: Sequence[RestingStop], symbol: str) -> str | None:
    """Return the signal id of our newest protective stop or bridge on `symbol` (highest
    attempt, then highest client id), or None when there is none.

    Only kept signal ids count: a shortened (hashed) one cannot be turned back into the signal
    id that made it. Reuse the returned id in a `WantedStop` so the resting stop is kept.
    """
    best: tuple[int, str, str] | None = None
    for order in resting:
        parts = _ours(order)
        if parts is None or order.symbol != symbol or parts.signal.startswith(_HASH_MARK):
            continue
        key = (parts.attempt, order.client_algo_id, parts.signal)
        if best is None or key > best:
            best = key
    return None if best is None else best[2]


FLAT_READS_TO_SETTLE = 2  # consecutive believed flat reads before a symbol counts as flat


@dataclass(frozen=True, slots=True)
class FlatRun:
    """Consecutive believed flat reads of one symbol."""

    count: int
    first_read_ns: int  # when the first of them was started


@dataclass(frozen=True, slots=True)
class Belief:
    """What one REST snapshot may be acted on for (see `believe_snapshot`)."""

    settled: tuple[str, ...]  # symbols whose position in the snapshot is acted on, flat or not
    held_back: tuple[str, ...]  # symbols left as they were: a stale snapshot or a first flat read
    flat_runs: dict[str, FlatRun]  # the flat runs per symbol, updated


def believe_snapshot(
    symbols: Sequence[str],
    positions: Mapping[str, Decimal],
    read_started_ns: int,
    last_event_ns: Mapping[str, int],
    flat_runs: Mapping[str, FlatRun],
) -> Belief:
    """Return which symbols of a REST snapshot to act on (issue 13, hole 9).

    `positions` maps symbol to the signed quantity read (absent = flat); `read_started_ns` is
    when the read was started and `last_event_ns` when the last user-data event of each symbol
    arrived, both on one monotonic clock. Per symbol of `symbols`:

    - a snapshot whose read started no later than the symbol's last user-data event is not
      believed: it may predate the fill, close or cancel the event reported, so the symbol is
      held back and its flat run kept;
    - a believed open position is settled, and its flat run ended;
    - a believed flat read is settled only as the `FLAT_READS_TO_SETTLE`-th of a run of flat
      reads all started after the symbol's last user-data event (REST may lag the stream even
      for a read started after the event); the earlier ones are held back. Settling a flat
      symbol cancels its stops and forgets its position: a leftover stop would close the next
      position, but a stop cancelled on a stale read leaves a position naked.

    Runs of symbols outside `symbols` are carried over unchanged.
    """
    runs = dict(flat_runs)
    settled: list[str] = []
    held_back: list[str] = []
    for symbol in symbols:
        event_ns = last_event_ns.get(symbol)
        if event_ns is not None and read_started_ns <= event_ns:
            held_back.append(symbol)
            continue
        if positions.get(symbol, Decimal(0)) != 0:
            runs.pop(symbol, None)
            settled.append(symbol)
            continue
        run = runs.get(symbol)
        if run is None or (event_ns is not None and run.first_read_ns <= event_ns):
            run = FlatRun(1, read_started_ns)  # an event since the run began restarts it
        else:
            run = FlatRun(run.count + 1, run.first_read_ns)
        runs[symbol] = run
        (settled if run.count >= FLAT_READS_TO_SETTLE else held_back).append(symbol)
    return Belief(tuple(settled), tuple(held_back), runs)
