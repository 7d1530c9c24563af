"""The closing orders of one flatten round (DESIGN-RULES rule 2: cancel is not flatten).

Pure: the guard fetches fresh positions over REST, sends these orders as reduce-only MARKET
orders, waits, and calls again with the next round number until REST shows no position.

- One close per non-zero position, symbols in sorted order; "SELL" closes a long, "BUY" a short.
- A close larger than the symbol's MARKET_LOT_SIZE maxQty is split into chunks of maxQty
  floored to the symbol's step, then the remainder. Binance positions are always a multiple of
  the step, so the remainder is too; should one not be, it is sent unchanged: reduce-only can
  never open a position, and flooring it would leave a residue no later round could close.
- A symbol without a known maxQty is closed in one order; without a known step, maxQty is used
  as is. Missing filters never stop a flatten.
- Client ids are deterministic, so a round re-sent after a restart cannot double a close:
  `client_order_id(f"{episode}_{symbol}", f"flat{chunk}", round_no)`, chunk counted from 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from shared.core.ids import MAX_ATTEMPT, client_order_id

_EPISODE = re.compile(r"[A-Za-z0-9]+")
MAX_CHUNKS = 1_000_000  # "flat" + 6 digits is the longest purpose client_order_id accepts


@dataclass(frozen=True, slots=True)
class CloseOrder:
    """One reduce-only MARKET close."""

    symbol: str
    side: str  # "SELL" closes a long, "BUY" a short
    quantity: Decimal
    client_order_id: str  # deterministic: same episode, symbol, round and chunk -> same id


def _chunks(
    symbol: str, size: Decimal, max_qty: Decimal | None, step: Decimal | None
) -> list[Decimal]:
    if max_qty is None:
        return [size]
    chunk = max_qty
    if step is not None and step > 0:
        chunk = (max_qty / step).to_integral_value(rounding=ROUND_FLOOR) * step
    if chunk <= 0:
        raise ValueError(
            f"flatten: {symbol} max market quantity {max_qty} is below one step {step}"
        )
    count = int((size / chunk).to_integral_value(rounding=ROUND_FLOOR))
    rest = size - chunk * count
    if count + (rest > 0) > MAX_CHUNKS:
        raise ValueError(f"flatten: {symbol} {size} needs more than {MAX_CHUNKS} chunks of {chunk}")
    return [chunk] * count + ([rest] if rest > 0 else [])


def flatten_orders(
    positions: Mapping[str, Decimal],
    episode: str,
    round_no: int,
    step_sizes: Mapping[str, Decimal],
    max_market_qty: Mapping[str, Decimal],
) -> list[CloseOrder]:
    """Return the reduce-only MARKET closes of every non-zero position, sorted by symbol.

    `positions` maps symbol to signed quantity (negative = short). Raises ValueError for an
    episode outside `[A-Za-z0-9]+`, a round outside 0..999, a maxQty below one step or more
    than a million chunks.
    """
    if not _EPISODE.fullmatch(episode):
        raise ValueError(f"flatten: episode={episode!r} is not 1+ of [A-Za-z0-9]")
    if not 0 <= round_no <= MAX_ATTEMPT:
        raise ValueError(f"flatten: round_no={round_no} is outside 0..{MAX_ATTEMPT}")
    orders: list[CloseOrder] = []
    for symbol in sorted(positions):
        qty = positions[symbol]
        if qty == 0:
            continue
        side = "SELL" if qty > 0 else "BUY"
        chunks = _chunks(symbol, abs(qty), max_market_qty.get(symbol), step_sizes.get(symbol))
        for index, size in enumerate(chunks):
            cid = client_order_id(f"{episode}_{symbol}", f"flat{index}", round_no)
            orders.append(CloseOrder(symbol, side, size, cid))
    return orders
