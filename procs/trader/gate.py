"""The checks made right before every entry is sent, in one place: the halt flag (the file is the
truth) and the guard's entry lease (Redis `Keys.guard_lease`). The decision is
shared/core/lease.entry_gate; this module reads its inputs, logs `entry_blocked` and counts it.

A decision can send several entries, and each takes round trips (intent, leverage, plan) before
its order goes out: the halt flag or the lease may change meanwhile, so neither is read once per
decision (issue 13, holes 1 and 11).
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from shared import log
from shared.cache import Cache, CacheUnavailableError
from shared.core import lease as le
from shared.schemas import guard as g
from shared.store.halt import halt_path, load_halt


class EntryGate:
    """Answer "may this entry be sent now?"; counts the refusals in `stats["entries_blocked"]`."""

    def __init__(
        self, run_dir: Path, cache: Cache, logger: log.EventLogger, stats: dict[str, int]
    ) -> None:
        self.path, self.cache, self.log, self.stats = halt_path(run_dir), cache, logger, stats
        self.stats.setdefault("entries_blocked", 0)

    async def check(self, symbol: str, client_id: str) -> le.Gate:
        """Read the halt flag and the guard's lease now and return the gate's answer; a refusal
        is logged (`entry_blocked`) and counted. Redis has its deadline (Cache); an unreadable
        lease refuses."""
        halt = load_halt(self.path)
        lease: g.GuardLease | None = None
        error = ""
        try:
            raw = await self.cache.read_guard_lease()
            lease = g.decode_lease(raw) if raw is not None else None
        except CacheUnavailableError as e:
            error = str(e)[:200]
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            error = f"malformed ({str(e)[:200]})"
        gate = le.entry_gate(halt, lease, error, time.time_ns() // 1_000_000)
        if not gate.is_allowed:
            self.stats["entries_blocked"] += 1
            self.log.warning(
                "entry_blocked",
                symbol=symbol,
                client_id=client_id,
                reason=gate.reason,
                detail=gate.detail,
            )
        return gate
