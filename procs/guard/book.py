"""The guard's record of its open positions, shared by its parts (wired in procs/guard/state.py).

`StopKeeper` (procs/guard/stops.py) writes it from exchange truth: the Holding, its Plan, its Track,
the signal id its client order ids derive from, and the protective stops that rest. `ExitRunner`
(procs/guard/exits.py) reads it to judge marks, and records the exits it sends. `Safety`
(procs/guard/safety.py) reads how many positions are open and sets `is_flattening`, while which
the exit rules stand aside. Every exchange mutation made on the strength of it runs under the
guard's one lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from shared.core import exits as ex
from shared.core.reconcile import RestingStop


@dataclass
class Book:
    """Per open position (by symbol): what the exchange holds and how the guard protects it."""

    holdings: dict[str, ex.Holding] = field(default_factory=dict)  # exchange truth (REST, fills)
    plans: dict[str, ex.Plan] = field(default_factory=dict)  # trader's plan, or the default
    tracks: dict[str, ex.Track] = field(default_factory=dict)  # best mark, current stop
    signals: dict[str, str] = field(default_factory=dict)  # signal id of the client order ids
    # Entry client id of the trader's plan in use (its Redis field): deleted when the position
    # closes. Absent for a position on the default plan.
    plan_ids: dict[str, str] = field(default_factory=dict)
    exits_sent: dict[str, int] = field(default_factory=dict)  # exit orders sent for the position
    stops: dict[str, Decimal] = field(default_factory=dict)  # trigger of our resting stop
    resting: dict[str, list[RestingStop]] = field(default_factory=dict)  # stops resting (last seen)
    is_flattening: bool = False  # a flatten is running: no exit rule acts meanwhile


def closing_side(quantity: Decimal) -> str:
    """Return the side that reduces a signed position."""
    return "SELL" if quantity > 0 else "BUY"
