"""What became of an entry whose outcome was not known, and the round trips in a run of fills.

`entry_outcome` settles an entry from the exchange's answer to a look-up by client id: a final
order with a fill is `filled`, a final one without is `rejected`, a working one (or no answer) is
still `unknown`. An order the exchange does not know is `rejected` only once no request signed
when the intent was recorded can reach it any more (its recvWindow has passed, with a margin);
before that it may still be on its way.

`round_trips` rebuilds the positions that opened and closed within a run of one symbol's fills
(userTrades, one-way mode), knowing the position now: a trip starts when the position leaves
zero and ends when it returns to zero (a fill that flips the side ends one trip and starts the
next with its remainder). A trip already open when the fills begin is not complete and is left
out, as is one still open at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from shared.schemas import binance as b

FINAL_ORDER_STATUSES = frozenset({"FILLED", "CANCELED", "EXPIRED", "REJECTED", "EXPIRED_IN_MATCH"})
SIGN = {"BUY": Decimal(1), "SELL": Decimal(-1)}


def entry_outcome(
    order: b.Order | None, created_ms: int, now_ms: int, not_found_final_ms: int
) -> str:
    """Return `filled`, `rejected` or `unknown` for an entry recorded at `created_ms`, given
    the order found by its client id (None: the exchange does not know it)."""
    if order is None:
        return "rejected" if now_ms - created_ms > not_found_final_ms else "unknown"
    if order.status not in FINAL_ORDER_STATUSES:
        return "unknown"
    return "filled" if order.executed_qty > 0 else "rejected"


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """A position that opened and closed within the fills read."""

    symbol: str
    side: str  # of the opening fills: "BUY" (long) or "SELL" (short)
    first_trade_id: int  # the opening fill's id: makes the rebuilt trade's id deterministic
    quantity: Decimal  # largest size reached, base asset
    entry_price: Decimal  # VWAP of the fills that grew the position
    exit_price: Decimal  # VWAP of the fills that reduced it
    opened_ms: int
    closed_ms: int
    gross_pnl_usdt: Decimal  # realized PnL of the closing fills
    fees_usdt: Decimal  # commissions of every fill of the trip


@dataclass
class _Open:
    side: str
    first_trade_id: int
    opened_ms: int
    size: Decimal = Decimal(0)
    peak: Decimal = Decimal(0)
    in_qty: Decimal = Decimal(0)
    in_quote: Decimal = Decimal(0)
    out_qty: Decimal = Decimal(0)
    out_quote: Decimal = Decimal(0)
    gross: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)

    def done(self, symbol: str, closed_ms: int) -> RoundTrip:
        return RoundTrip(
            symbol=symbol,
            side=self.side,
            first_trade_id=self.first_trade_id,
            quantity=self.peak,
            entry_price=self.in_quote / self.in_qty,
            exit_price=self.out_quote / self.out_qty,
            opened_ms=self.opened_ms,
            closed_ms=closed_ms,
            gross_pnl_usdt=self.gross,
            fees_usdt=self.fees,
        )


def round_trips(fills: list[b.UserTrade], position_now: Decimal) -> list[RoundTrip]:
    """Return the complete round trips within `fills` (one symbol's), oldest first."""
    ordered = sorted(fills, key=lambda f: (f.time_ms, f.trade_id))
    position = position_now - sum((SIGN[f.side] * f.quantity for f in ordered), Decimal(0))
    trips: list[RoundTrip] = []
    current: _Open | None = None  # None while flat, or while a trip older than the fills runs
    for f in ordered:
        signed = SIGN[f.side] * f.quantity
        after = position + signed
        closing = min(f.quantity, abs(position)) if position * signed < 0 else Decimal(0)
        opening = f.quantity - closing
        if current is not None and closing > 0:
            share = closing / f.quantity
            current.out_qty += closing
            current.out_quote += closing * f.price
            current.gross += f.realized_pnl
            current.fees += f.commission * share
            current.size -= closing
            if current.size == 0:
                trips.append(current.done(f.symbol, f.time_ms))
                current = None
        if opening > 0:
            if position == 0 or (position * after < 0):  # from flat, or the flip's remainder
                current = _Open(f.side, f.trade_id, f.time_ms)
            if current is not None:
                current.size += opening
                current.peak = max(current.peak, current.size)
                current.in_qty += opening
                current.in_quote += opening * f.price
                current.fees += f.commission * (opening / f.quantity)
        position = after
    return trips
