"""The feed's pure logic: which REST klines are closed and new, bus payloads from exchange
events, the account state (positions, open orders) and the Redis mirror of the latest values.

No I/O: `procs/feed/main.py` fetches, writes and publishes what these functions return.

- Klines: a REST reply's rows are closed except possibly the newest (Binance returns the open
  candle last); the newest counts as closed only when its close time has passed. The server-time
  estimate is not trusted for the others: it drifts against a paper exchange running faster than
  real time, and every row with a successor has closed anyway.
- Account: `AccountState` keeps positions per symbol and open orders per client id, applies
  ACCOUNT_UPDATE / ORDER_TRADE_UPDATE / ALGO_UPDATE and REST snapshots, and returns the bus
  messages to publish. Exchange times order the updates: an event older than the state it
  would replace is ignored, so events queued before a REST snapshot cannot undo it.
- Mirror: `CacheMirror` conflates the latest payload per topic and the open orders into one
  batch per flush; after a failed write the next batch rewrites everything. A latest payload may
  be kept as the struct the bus sent and is encoded (stamped as published) only when taken, so a
  mark replaced ten times between flushes is encoded once, not ten times.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from shared.schemas import binance as b
from shared.schemas import bus

INTERVAL = "1m"
INTERVAL_MS = 60_000
OPEN_ORDER_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
OPEN_ALGO_STATUSES = frozenset({"NEW", "TRIGGERING"})
STOP_TYPES = frozenset({"STOP_MARKET", "STOP"})
CLOSED_IDS_REMEMBERED = 4096  # final client ids kept so a late NEW cannot reopen them

Message = tuple[str, bus.Payload]  # (topic, payload) to publish


# ---- klines -------------------------------------------------------------------------------------


def closed_new_klines(rows: Sequence[b.Kline], last_open_ms: int | None) -> list[b.Kline]:
    """Return the closed rows of a REST klines reply newer than `last_open_ms`, oldest first,
    each marked closed."""
    ordered = sorted(rows, key=lambda k: k.open_time_ms)
    closed = ordered[:-1] + [k for k in ordered[-1:] if k.is_closed]
    return [
        msgspec.structs.replace(k, is_closed=True)
        for k in closed
        if last_open_ms is None or k.open_time_ms > last_open_ms
    ]


def has_hole(last_open_ms: int | None, open_ms: int) -> bool:
    """Return whether a closed bar opening at `open_ms` leaves bars missing after the last one."""
    return last_open_ms is not None and open_ms > last_open_ms + INTERVAL_MS


def is_feed_bar(k: b.Kline) -> bool:
    """Return whether a streamed kline is a whole bar of the feed's interval: open time on the
    interval, close time one interval later less 1 ms, exact as a float64 (shm stores floats).
    A malformed time would otherwise poison a window: every later bar would be "not newer"."""
    t = k.open_time_ms
    return (
        k.interval == INTERVAL
        and 0 <= t < 1 << 53
        and t % INTERVAL_MS == 0
        and k.close_time_ms == t + INTERVAL_MS - 1
    )


def backfill_start_ms(last_open_ms: int) -> int:
    """Return the open time of the first bar missing after the last stored one."""
    return last_open_ms + INTERVAL_MS


def bus_kline(k: b.Kline) -> bus.Kline:
    """Return the bus message of a kline (event time = close time)."""
    return bus.Kline(
        ts_ms=k.close_time_ms,
        symbol=k.symbol,
        interval=k.interval,
        open_time_ms=k.open_time_ms,
        close_time_ms=k.close_time_ms,
        open=float(k.open),
        high=float(k.high),
        low=float(k.low),
        close=float(k.close),
        volume=float(k.volume),
        quote_volume=float(k.quote_volume),
        trades=k.trades,
        taker_buy_volume=float(k.taker_buy_volume),
        taker_buy_quote_volume=float(k.taker_buy_quote_volume),
        is_closed=k.is_closed,
    )


def kline_row(k: b.Kline) -> list[float]:
    """Return the shm row of a kline, in `shared.shm.rings.KlineColumn` order."""
    return [
        float(k.open_time_ms),
        float(k.open),
        float(k.high),
        float(k.low),
        float(k.close),
        float(k.volume),
        float(k.close_time_ms),
        float(k.quote_volume),
        float(k.trades),
        float(k.taker_buy_volume),
        float(k.taker_buy_quote_volume),
    ]


def bus_mark(m: b.MarkPrice | b.MarkTick) -> bus.MarkPrice:
    """Return the bus message of a mark price (REST premiumIndex or the stream)."""
    return bus.MarkPrice(
        ts_ms=m.time_ms,
        symbol=m.symbol,
        price=float(m.mark_price),
        index_price=float(m.index_price),
        funding_rate=float(m.funding_rate),
        next_funding_time_ms=m.next_funding_time_ms,
    )


def bus_mark_entry(e: bus.MarkEntry) -> bus.MarkPrice:
    """Return one entry of a `Marks` message as the per-symbol mark (the Redis snapshot's form)."""
    return bus.MarkPrice(
        ts_ms=e.ts_ms,
        symbol=e.symbol,
        price=e.price,
        index_price=e.index_price,
        funding_rate=e.funding_rate,
        next_funding_time_ms=e.next_funding_time_ms,
    )


# ---- account ------------------------------------------------------------------------------------


@dataclass
class _Leg:
    amount: Decimal
    entry_price: Decimal
    updated_ms: int


@dataclass
class _Open:
    state: bus.OrderState
    is_stop: bool  # a reduce-only or close-position stop: protects the position


def _order_state(
    symbol: str,
    client_id: str,
    side: str,
    order_type: str,
    status: str,
    quantity: Decimal,
    filled: Decimal,
    price: Decimal,
    updated_ms: int,
) -> bus.OrderState:
    return bus.OrderState(
        ts_ms=updated_ms,
        symbol=symbol,
        client_order_id=client_id,
        side=side,
        order_type=order_type,
        status=status,
        quantity=quantity,
        filled_quantity=filled,
        price=price,
        updated_ms=updated_ms,
    )


@dataclass
class AccountState:
    """Positions and open orders as the feed last knew them."""

    legs: dict[tuple[str, str], _Leg] = field(default_factory=dict)  # (symbol, side) -> leg
    orders: dict[str, _Open] = field(default_factory=dict)  # open orders by client id
    closed_ids: deque[str] = field(default_factory=lambda: deque(maxlen=CLOSED_IDS_REMEMBERED))

    def has_stop(self, symbol: str) -> bool:
        """Return whether an open protective stop exists for the symbol."""
        return any(o.is_stop and o.state.symbol == symbol for o in self.orders.values())

    def position(self, symbol: str) -> bus.Position:
        """Return the symbol's net position (hedge-mode legs summed; entry of the larger leg)."""
        legs = [leg for (s, _side), leg in self.legs.items() if s == symbol]
        quantity = sum((leg.amount for leg in legs), Decimal(0))
        main = max(legs, key=lambda leg: abs(leg.amount), default=None)
        entry = main.entry_price if main is not None and main.amount else Decimal(0)
        updated = max((leg.updated_ms for leg in legs), default=0)
        return bus.Position(
            ts_ms=updated,
            symbol=symbol,
            quantity=quantity,
            entry_price=entry,
            has_stop=self.has_stop(symbol),
            updated_ms=updated,
        )

    def apply_account_update(self, u: b.AccountUpdate) -> list[Message]:
        """Apply an ACCOUNT_UPDATE; return the changed positions (older legs are ignored)."""
        changed: list[str] = []
        for p in u.positions:
            key = (p.symbol, p.position_side)
            leg = self.legs.get(key)
            if leg is not None and leg.updated_ms > u.transaction_time_ms:
                continue
            self.legs[key] = _Leg(p.amount, p.entry_price, u.transaction_time_ms)
            if p.symbol not in changed:
                changed.append(p.symbol)
        return [(bus.position_topic(s), self.position(s)) for s in changed]

    def _set_order(self, state: bus.OrderState, is_open: bool, is_stop: bool) -> list[Message]:
        """Store an order update unless older than what is known; return the messages."""
        cid = state.client_order_id
        known = self.orders.get(cid)
        if (known is not None and known.state.updated_ms > state.updated_ms) or (
            known is None and cid in self.closed_ids and is_open
        ):
            return []
        had_stop = self.has_stop(state.symbol)
        if is_open:
            self.orders[cid] = _Open(state, is_stop)
        else:
            self.orders.pop(cid, None)
            self.closed_ids.append(cid)
        out: list[Message] = [(bus.order_topic(state.symbol), state)]
        if self.has_stop(state.symbol) != had_stop:
            out.append((bus.position_topic(state.symbol), self.position(state.symbol)))
        return out

    def apply_order_update(self, u: b.OrderUpdate) -> list[Message]:
        """Apply an ORDER_TRADE_UPDATE; return the order message (and the position's if its
        protection changed)."""
        state = _order_state(
            u.symbol,
            u.client_order_id,
            u.side,
            u.order_type,
            u.status,
            u.quantity,
            u.cum_filled_qty,
            u.price,
            u.transaction_time_ms,
        )
        is_stop = u.order_type in STOP_TYPES and (u.is_reduce_only or u.is_close_position)
        return self._set_order(state, u.status in OPEN_ORDER_STATUSES, is_stop)

    def apply_algo_update(self, u: b.AlgoUpdate) -> list[Message]:
        """Apply an ALGO_UPDATE (conditional orders: price = trigger price)."""
        state = _order_state(
            u.symbol,
            u.client_algo_id,
            u.side,
            u.order_type,
            u.status,
            u.quantity,
            u.filled_qty or Decimal(0),
            u.trigger_price,
            u.transaction_time_ms,
        )
        is_stop = u.order_type in STOP_TYPES and (u.is_reduce_only or u.is_close_position)
        return self._set_order(state, u.status in OPEN_ALGO_STATUSES, is_stop)

    def replace(
        self,
        positions: Iterable[b.Position],
        orders: Iterable[b.Order],
        algo_orders: Iterable[b.AlgoOrder],
    ) -> list[Message]:
        """Replace the state with a REST snapshot; return a message for every position and
        open order, plus a zero position for each symbol that had one and now has none."""
        before = {s for (s, _side), leg in self.legs.items() if leg.amount}
        self.legs = {
            (p.symbol, p.position_side): _Leg(p.amount, p.entry_price, p.update_time_ms)
            for p in positions
        }
        fresh: dict[str, _Open] = {}
        for o in orders:
            if o.status in OPEN_ORDER_STATUSES:
                state = _order_state(
                    o.symbol,
                    o.client_order_id,
                    o.side,
                    o.order_type,
                    o.status,
                    o.quantity,
                    o.executed_qty,
                    o.price,
                    o.update_time_ms,
                )
                is_stop = o.order_type in STOP_TYPES and (o.is_reduce_only or o.is_close_position)
                fresh[o.client_order_id] = _Open(state, is_stop)
        for a in algo_orders:
            if a.status in OPEN_ALGO_STATUSES:
                state = _order_state(
                    a.symbol,
                    a.client_algo_id,
                    a.side,
                    a.order_type,
                    a.status,
                    a.quantity,
                    Decimal(0),
                    a.trigger_price,
                    a.update_time_ms,
                )
                is_stop = a.order_type in STOP_TYPES and (a.is_reduce_only or a.is_close_position)
                fresh[a.client_algo_id] = _Open(state, is_stop)
        self.closed_ids.extend(cid for cid in self.orders if cid not in fresh)
        self.orders = fresh
        symbols = sorted(before | {s for s, _side in self.legs})
        out: list[Message] = [(bus.position_topic(s), self.position(s)) for s in symbols]
        out += [(bus.order_topic(o.state.symbol), o.state) for o in fresh.values()]
        return out


# ---- the Redis mirror ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MirrorBatch:
    """One Redis write: `is_full` replaces the hashes with exactly these values."""

    is_full: bool
    latest: dict[str, bytes]  # topic -> payload
    seqs: dict[str, int]  # topic -> seq of that payload
    orders: dict[str, bytes]  # open orders to set, by client id
    removed_orders: list[str]  # client ids to delete

    @property
    def is_empty(self) -> bool:
        return not (self.is_full or self.latest or self.seqs or self.orders or self.removed_orders)


class CacheMirror:
    """The latest payload and seq per topic and the open orders, with what Redis still lacks.

    `source` is stamped on the payloads kept as structs when they are encoded (as the bus
    Publisher stamps them), so Redis holds the bytes a subscriber received.
    """

    def __init__(self, source: str = "") -> None:
        self.source = source
        self.latest: dict[str, bytes | bus.Payload | bus.MarkEntry] = {}
        self.seqs: dict[str, int] = {}
        self.orders: dict[str, bytes] = {}
        self._dirty_topics: set[str] = set()
        self._dirty_orders: set[str] = set()
        self._needs_full = True  # the first write replaces what a predecessor left

    def set_latest(
        self, topic: str, payload: bytes | bus.Payload | bus.MarkEntry, seq: int
    ) -> None:
        """Record the last message published on `topic`: its encoded frame (carrying `seq`), or
        the struct as passed to the Publisher (stamped with `source` and `seq` when taken); a
        `MarkEntry` (one symbol of a `Marks` message, seq = that message's) is kept as the
        symbol's `MarkPrice`, built only when taken."""
        self.latest[topic] = payload
        self.seqs[topic] = seq
        self._dirty_topics.add(topic)

    def set_order(self, client_id: str, payload: bytes | None) -> None:
        """Record an open order's state, or its removal (None)."""
        if payload is None:
            self.orders.pop(client_id, None)
        else:
            self.orders[client_id] = payload
        self._dirty_orders.add(client_id)

    def replace_orders(self, orders: dict[str, bytes]) -> None:
        """Replace every open order (a REST snapshot)."""
        self._dirty_orders |= set(self.orders) | set(orders)
        self.orders = dict(orders)

    def take(self) -> MirrorBatch:
        """Return what to write now and consider it written (call `failed` if it was not)."""
        topics = list(self.latest if self._needs_full else self._dirty_topics)
        latest = {t: self._encoded(t) for t in topics}
        if self._needs_full:
            batch = MirrorBatch(True, latest, dict(self.seqs), dict(self.orders), [])
        else:
            batch = MirrorBatch(
                False,
                latest,
                {t: self.seqs[t] for t in topics},
                {c: self.orders[c] for c in self._dirty_orders if c in self.orders},
                sorted(c for c in self._dirty_orders if c not in self.orders),
            )
        self._needs_full = False
        self._dirty_topics = set()
        self._dirty_orders = set()
        return batch

    def _encoded(self, topic: str) -> bytes:
        payload = self.latest[topic]
        if isinstance(payload, bytes):
            return payload
        if isinstance(payload, bus.MarkEntry):
            payload = bus_mark_entry(payload)
        stamped = msgspec.structs.replace(payload, source=self.source, seq=self.seqs[topic])
        encoded = self.latest[topic] = bus.encode(stamped)  # encoded once, kept for a full write
        return encoded

    def failed(self) -> None:
        """The last batch was not written: the next one rewrites everything."""
        self._needs_full = True
