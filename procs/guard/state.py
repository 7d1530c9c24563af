"""The position-guard's parts, wired: one class per job, sharing explicit collaborators.

- `Book` (procs/guard/book.py): the record of the open positions the parts share, kept on disk
  per position by `PositionFile` (procs/guard/positionfile.py) and restored after a restart.
- `StopKeeper` (procs/guard/stops.py): reconciles the Book with exchange truth (positions,
  protective stops, plans; adopts a position it did not open) and keeps a stop resting per
  position, also at once from a fill (`protect_fill`).
- `ExitRunner` (procs/guard/exits.py): marks and trends in, trailing stops and reduce-only closes
  out; its `reconcile` is the StopKeeper's plus the immediate close of a stop that would trigger
  at once (-2021).
- `Safety` (procs/guard/safety.py): the kill switch, the silence policy (dead-man's switch), the
  halt flag and the flatten; it reconciles through the ExitRunner after a flatten.

`Guard` builds them and holds what procs/guard/main.py reaches for. Every decision comes from
shared/core and procs/guard/logic; the parts perform it through procs/guard/protect.py and log it
with its reason.

Serialisation: every exchange mutation of every part runs under the one `lock` built here, so a
reconcile, an exit and a flatten never interleave, and a SIGTERM waits for the one in flight
(rule 3).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from procs.guard.book import Book
from procs.guard.equityfile import equity_path
from procs.guard.exits import ExitRunner
from procs.guard.positionfile import PositionFile, positions_path
from procs.guard.safety import Safety
from procs.guard.stops import StopKeeper
from shared import log
from shared.cache import Cache
from shared.config import Config
from shared.exchange.rest import ExchangeClient
from shared.schemas import binance as b
from shared.store import halt as haltfile
from shared.store.alerts import Alerter


class Guard:
    """The guard's parts and what they share; main.py calls the parts' handlers."""

    def __init__(
        self,
        cfg: Config,
        client: ExchangeClient,
        specs: dict[str, b.SymbolSpec],
        run_dir: Path,
        logger: log.EventLogger,
        alerter: Alerter,
        cache: Cache | None,
        progress: dict[str, int],
    ) -> None:
        self.client, self.alerter, self.progress = client, alerter, progress
        self.lock = asyncio.Lock()  # the one lock of every exchange mutation
        self.book = Book()
        self.stats = {
            "reconciles": 0,
            "stops_placed": 0,
            "exits": 0,
            "flattens": 0,
            "adopted": 0,
            "errors": 0,
        }
        self.keeper = StopKeeper(
            cfg=cfg,
            client=client,
            specs=specs,
            book=self.book,
            memory=PositionFile(positions_path(run_dir), logger),
            lock=self.lock,
            logger=logger,
            alerter=alerter,
            cache=cache,
            stats=self.stats,
            progress=progress,
        )
        self.exits = ExitRunner(
            cfg=cfg,
            client=client,
            specs=specs,
            book=self.book,
            keeper=self.keeper,
            lock=self.lock,
            logger=logger,
            cache=cache,
            stats=self.stats,
            progress=progress,
        )
        self.safety = Safety(
            cfg=cfg,
            client=client,
            specs=specs,
            book=self.book,
            lock=self.lock,
            logger=logger,
            alerter=alerter,
            cache=cache,
            stats=self.stats,
            halt_path=haltfile.halt_path(run_dir),
            equity_path=equity_path(run_dir),
            progress=progress,
            reconcile=self.exits.reconcile,
        )

    async def reconcile(
        self, symbol: str | None = None, margins: dict[str, Decimal] | None = None
    ) -> None:
        """Reconcile one symbol or all with the exchange (ExitRunner.reconcile)."""
        await self.exits.reconcile(symbol, margins)

    async def protect_fill(
        self, symbol: str, amount: Decimal, entry_price: Decimal, event_ms: int
    ) -> None:
        """Protect a position at once from its user-data event (StopKeeper.protect_fill); a stop
        that would trigger at once sends the symbol through a full reconcile, which closes it.
        Any exception is this symbol's alone: reported (SymbolFaults); the REST reconcile the
        event also queues retries it."""
        try:
            trigger_now = await self.keeper.protect_fill(symbol, amount, entry_price, event_ms)
        except Exception as e:  # loop top of one symbol: report, the other symbols go on
            await self.keeper.faults.report(symbol, "protect", e)
            return
        if trigger_now:
            await self.exits.reconcile(symbol)  # exchange truth first, then the close (-2021)
