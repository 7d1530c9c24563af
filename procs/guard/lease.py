"""The guard's entry lease (shared/core/lease.py): granted after each full reconcile that answered
and found a resting stop closing every position, revoked otherwise and when the guard stops.

The lease is Redis key `Keys.guard_lease` with a PX TTL of `guard.lease_ttl_s`: a guard that
dies, hangs, is backed off or cannot reach the exchange stops renewing it and it runs out by
itself, so the trader (which checks it right before every entry) sends nothing that no one would
protect. Redis is not a dependency of the guard (rule 4): when it does not answer, the guard
protects as before; only entries wait.
"""

from __future__ import annotations

import os
import time

from procs.guard.book import Book
from shared import log
from shared.cache import Cache, CacheUnavailableError
from shared.core import lease as le
from shared.schemas import guard as g

WARNING_INTERVAL_S = 60.0  # a repeated Redis failure is logged at most this often


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class LeaseKeeper:
    """Grant, renew and revoke the guard's lease; counts in `stats` (lease_renewals,
    lease_revocations)."""

    def __init__(
        self, cache: Cache, ttl_s: float, logger: log.EventLogger, stats: dict[str, int]
    ) -> None:
        self.cache, self.ttl_ms, self.log, self.stats = cache, round(ttl_s * 1000), logger, stats
        self.stats.setdefault("lease_renewals", 0)
        self.stats.setdefault("lease_revocations", 0)
        self.is_held = False  # granted and not revoked since (as far as this process knows)
        self.is_stopping = False  # the guard is stopping: nothing is renewed any more
        self._throttle = log.Throttle(WARNING_INTERVAL_S)

    async def after_reconcile(self, book: Book, is_reconciled: bool) -> None:
        """Renew the lease when the full reconcile that just ended answered and every position
        in `book` has its resting stop; otherwise revoke it at once."""
        if self.is_stopping:
            return
        positions = {s: h.quantity for s, h in book.holdings.items()}
        resting = [r for stops in book.resting.values() for r in stops]
        missing = le.unprotected_symbols(positions, resting)
        refusal = le.lease_refusal(is_reconciled, missing)
        if refusal:
            await self.revoke(refusal, ",".join(missing[:10]) or None)
            return
        lease = le.new_lease(os.getpid(), _now_ms(), self.ttl_ms, len(positions))
        try:
            await self.cache.write_guard_lease(g.encode(lease), self.ttl_ms)
        except CacheUnavailableError as e:  # the last lease runs out by its TTL
            self.is_held = False
            self._warn("guard_lease_unrenewed", e)
            return
        self.stats["lease_renewals"] += 1
        if not self.is_held:
            self.is_held = True
            self.log.info("guard_lease_granted", positions=len(positions), ttl_ms=self.ttl_ms)

    async def revoke(self, reason: str, symbols: str | None = None) -> None:
        """Delete the lease now (entries stop at once, not when the TTL ends); logged when it was
        held. `reason`: reconcile_failed, unprotected_positions, guard_stopping."""
        was_held, self.is_held = self.is_held, False
        if reason == "guard_stopping":
            self.is_stopping = True
        try:
            await self.cache.delete_guard_lease()
        except CacheUnavailableError as e:  # it runs out by its TTL
            self._warn("guard_lease_unrevoked", e)
        if was_held:
            self.stats["lease_revocations"] += 1
            self.log.warning("guard_lease_revoked", reason=reason, symbols=symbols)

    def _warn(self, event: str, error: CacheUnavailableError) -> None:
        should_log, suppressed = self._throttle.allow(time.monotonic())
        if should_log:
            self.log.warning(event, error=str(error)[:200], suppressed=suppressed)
