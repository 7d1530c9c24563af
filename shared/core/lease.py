"""The guard's entry lease (DESIGN-RULES 1, 4, 12): no entry is sent unless the guard
demonstrably protects every position now.

The guard grants the lease after each full reconcile that answered and found a resting stop
closing every position (`lease_refusal` returns ""), and revokes it otherwise; the lease lives in
Redis with a PX TTL, so a guard that is stopped, crashed, hung, backed off or stuck behind its
open circuit breaker stops renewing it and the lease runs out by itself. The trader asks
`entry_gate` right before every entry it sends, with the halt flag and the lease it just read:

    halt flag set (or unreadable)                -> deny "halted"
    Redis did not answer, or a malformed lease   -> deny "guard_lease_unreadable"
    no lease (never granted, revoked, TTL ended) -> deny "guard_lease_missing"
    a lease whose expires_ms <= now_ms           -> deny "guard_lease_expired"
    otherwise                                    -> allow

Pure: every input is an argument, `now_ms` included (UTC ms, the lease's own clock).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from shared.core.reconcile import STOP_TYPE, RestingStop
from shared.schemas import guard as g

DENY_HALTED = "halted"
DENY_UNREADABLE = "guard_lease_unreadable"
DENY_MISSING = "guard_lease_missing"
DENY_EXPIRED = "guard_lease_expired"
REFUSE_RECONCILE_FAILED = "reconcile_failed"
REFUSE_UNPROTECTED = "unprotected_positions"


@dataclass(frozen=True, slots=True)
class Gate:
    """Whether an entry may be sent now, and if not, why (`reason` is a log field)."""

    is_allowed: bool
    reason: str = ""  # one of the DENY_ names; "" when allowed
    detail: str = ""  # one sentence for the log


ALLOW = Gate(is_allowed=True)


def unprotected_symbols(
    positions: Mapping[str, Decimal], resting: Iterable[RestingStop]
) -> list[str]:
    """Return, sorted, the symbols with a non-zero position and no resting closePosition
    STOP_MARKET on the side that closes it (the exchange-resident stop of rule 1). A reduce-only
    bridge that covers a stop while it moves does not count: a full reconcile finishes the move,
    and the lease waits for it."""
    covered = {
        (r.symbol, r.side) for r in resting if r.is_close_position and r.order_type == STOP_TYPE
    }
    return sorted(
        s
        for s, amount in positions.items()
        if amount != 0 and (s, "SELL" if amount > 0 else "BUY") not in covered
    )


def lease_refusal(is_reconciled: bool, unprotected: list[str]) -> str:
    """Return why the guard must not grant (and must revoke) the lease, or "" to grant it:
    the full reconcile did not answer, or a position has no resting stop."""
    if not is_reconciled:
        return REFUSE_RECONCILE_FAILED
    if unprotected:
        return REFUSE_UNPROTECTED
    return ""


def new_lease(pid: int, now_ms: int, ttl_ms: int, positions: int) -> g.GuardLease:
    """Return the lease a guard grants at now_ms (UTC ms) for ttl_ms."""
    return g.GuardLease(pid=pid, renewed_ms=now_ms, expires_ms=now_ms + ttl_ms, positions=positions)


def entry_gate(halt: g.HaltState, lease: g.GuardLease | None, read_error: str, now_ms: int) -> Gate:
    """Return whether an entry may be sent at now_ms (UTC ms); `read_error` is why the lease
    could not be read ("" when it was: `lease` is then the lease, or None when absent). See the
    module docstring."""
    if halt.is_halted:
        return Gate(False, DENY_HALTED, f"entries are halted: {halt.reason or 'no reason given'}")
    if read_error:
        return Gate(False, DENY_UNREADABLE, f"the guard's lease cannot be read: {read_error}")
    if lease is None:
        return Gate(False, DENY_MISSING, "no guard lease: the guard is not protecting now")
    if lease.expires_ms <= now_ms:
        return Gate(
            False,
            DENY_EXPIRED,
            f"the guard's lease expired {now_ms - lease.expires_ms} ms ago "
            f"(renewed at {lease.renewed_ms} by pid {lease.pid})",
        )
    return ALLOW
