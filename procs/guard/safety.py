"""The guard's safety policy: the kill switch, the silence policy (dead-man's switch), the halt
flag and the flatten.

`Safety` owns the halt flag (`<run.dir>/guard/halt.json`, mirrored in Redis), the equity watch
and the REST-mode flag. Decisions come from procs/guard/logic (risk.kill_switch_trip,
silence.silence_decision); the flatten itself is procs/guard/protect.flatten, run under the lock
the guard's parts share (procs/guard/state.py), so no exit or reconcile interleaves. While it runs,
`Book.is_flattening` holds the exit rules back; after it, the `reconcile` callable it is given
(the guard's full reconcile, `ExitRunner.reconcile`) reads exchange truth again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

from procs.guard import protect
from procs.guard.book import Book
from procs.guard.logic.risk import EquityWatch, kill_switch_trip, watch_equity
from procs.guard.logic.silence import SilenceDecision
from shared import log
from shared.cache import Cache, CacheUnavailableError
from shared.config import Config
from shared.exchange.rest import ExchangeClient
from shared.schemas import binance as b
from shared.schemas import guard as g
from shared.store import halt as haltfile
from shared.store.alerts import Alerter


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Safety:
    """Kill switch, silence policy, halt flag and flatten of the guard."""

    def __init__(
        self,
        *,
        cfg: Config,
        client: ExchangeClient,
        specs: dict[str, b.SymbolSpec],
        book: Book,
        lock: asyncio.Lock,
        logger: log.EventLogger,
        alerter: Alerter,
        cache: Cache | None,
        stats: dict[str, int],
        halt_path: Path,
        reconcile: Callable[[], Awaitable[None]],
    ) -> None:
        self.cfg, self.client, self.specs, self.book = cfg, client, specs, book
        self.lock, self.log, self.alerter, self.cache = lock, logger, alerter, cache
        self.stats, self.halt_path, self.reconcile = stats, halt_path, reconcile
        self.halt: g.HaltState = haltfile.load_halt(halt_path)
        self.equity: EquityWatch | None = None
        self.is_rest_mode = False

    async def check_equity(self, equity: Decimal) -> None:
        """Track peak and daily equity; trip the kill switch (flatten, halt) when a limit is hit."""
        self.equity = watch_equity(self.equity, equity, _now_ms())
        trip = kill_switch_trip(self.equity, equity, self.cfg.kill_switch)
        if trip is not None and not (self.halt.is_halted and self.halt.reason == trip[0]):
            reason, detail = trip
            await self.set_halt(reason)
            await self.alerter.send(reason, detail)
            await self.flatten(reason)

    async def set_halt(self, reason: str) -> None:
        """Set (reason) or clear ("") the halt flag: file first, then the Redis mirror."""
        state = haltfile.halted(reason, _now_ms()) if reason else haltfile.armed()
        if state.is_halted == self.halt.is_halted and state.reason == self.halt.reason:
            return
        haltfile.save_halt(self.halt_path, state)
        self.halt = state
        self.log.warning("halt_set" if reason else "halt_cleared", reason=reason or None)
        await self.mirror_halt()

    async def mirror_halt(self) -> None:
        """Write the halt flag to its Redis mirror; an unavailable Redis is skipped."""
        if self.cache is None:
            return
        try:
            await self.cache.set_value(self.cache.keys.guard_halt(), g.encode(self.halt))
        except CacheUnavailableError:
            pass  # the file is the truth; the mirror is rewritten on the next change or start

    async def apply_silence(self, decision: SilenceDecision) -> None:
        """Apply the silence policy: REST mode, entry halt, dead-man's switch."""
        if decision.use_rest != self.is_rest_mode:
            self.is_rest_mode = decision.use_rest
            self.log.warning(
                "rest_mode_entered" if decision.use_rest else "rest_mode_left",
                detail=decision.detail,
            )
        self.halt = haltfile.load_halt(self.halt_path)  # `slt flatten` / `slt rearm` write it
        if self.halt.needs_operator:
            pass
        elif decision.halt_entries and not self.halt.is_halted:
            await self.set_halt("trader_silent")
        elif not decision.halt_entries and self.halt.reason == "trader_silent":
            await self.set_halt("")
        if decision.flatten_reason and not self.book.is_flattening and self.book.holdings:
            await self.set_halt(decision.flatten_reason)
            await self.alerter.send(
                decision.flatten_reason, f"dead-man's switch: {decision.detail}"
            )
            await self.flatten(decision.flatten_reason)

    async def flatten(self, reason: str) -> bool:
        """Flatten every position (procs/guard/protect.flatten) under the lock, then reconcile;
        return True when flat."""
        self.book.is_flattening = True
        self.stats["flattens"] += 1
        episode = f"F{_now_ms()}"
        self.log.warning(
            "flatten_triggered", reason=reason, episode=episode, positions=len(self.book.holdings)
        )
        try:
            async with self.lock:
                is_flat = await protect.flatten(
                    self.client,
                    self.specs,
                    episode,
                    self.cfg.guard.flatten_round_s,
                    self.cfg.guard.flatten_max_rounds,
                    self.log,
                )
        finally:
            self.book.is_flattening = False
        if not is_flat:
            await self.alerter.send(
                "flatten_incomplete", f"positions remain after {reason}; stops stay"
            )
        await self.reconcile()
        return is_flat
