"""The guard's exit execution: marks in, trailing stops and reduce-only closes out.

`ExitRunner` keeps the latest mark per symbol (from any source: ZeroMQ, shared memory, REST) and
the counter-trend input, judges each open position of the shared `Book` against the exit rules
(shared/core/exits: update_track, evaluate_exit), sends the close a rule decides
(procs/guard/protect.close_now) and has the `StopKeeper` move a resting stop that tightened
enough to be worth a move (StopKeeper.is_move_due: ticks and interval, `[guard]`).
`reconcile` is the guard's full reconcile: the StopKeeper's, then an immediate close of each
position whose stop would trigger at once (-2021).

Isolation: `evaluate`, `execute_exit` and `reconcile` catch any exception of one symbol's
handling (not only ExchangeError: a NaN level raises InvalidOperation, an entry of 0 ValueError)
and report it through `SymbolFaults` (procs/guard/faults.py: `symbol_error` logged, alerted,
counted); the caller's loop goes on with the other symbols. A full reconcile that fails as a
whole is reported as symbol `all` and counted as a reconcile error (no entry lease this round).

State on disk (issue 13, hole 12): a track that changed (a stop trailed, a partial taken) is
written to the positions file at once (`StopKeeper.memory`, procs/guard/positionfile.py), so a
guard restarted after a kill -9 does not take the same partial again.

Every exchange mutation runs under the lock the guard's parts share (procs/guard/state.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal

import numpy as np

from procs.guard import protect
from procs.guard.book import Book, closing_side
from procs.guard.stops import StopKeeper
from shared import log
from shared.cache import Cache, CacheUnavailableError
from shared.config import Config
from shared.core import exits as ex
from shared.core.ids import client_order_id
from shared.exchange.errors import ExchangeError
from shared.exchange.rest import ExchangeClient
from shared.schemas import binance as b

BAD_MARK_LOG_INTERVAL_S = 30.0  # a repeated bad mark is logged at most this often


class ExitRunner:
    """Judge the open positions against their marks and send the exits the rules decide."""

    def __init__(
        self,
        *,
        cfg: Config,
        client: ExchangeClient,
        specs: dict[str, b.SymbolSpec],
        book: Book,
        keeper: StopKeeper,
        lock: asyncio.Lock,
        logger: log.EventLogger,
        cache: Cache | None,
        stats: dict[str, int],
        progress: dict[str, int],
    ) -> None:
        self.cfg, self.client, self.specs, self.book, self.keeper = cfg, client, specs, book, keeper
        self.lock, self.log, self.cache = lock, logger, cache
        self.stats, self.progress = stats, progress
        self.marks: dict[str, tuple[Decimal, int]] = {}  # symbol -> (price, event time ms)
        self.mark_fresh_mono_ms: int | None = None  # last time any source brought a newer mark
        self.trends: dict[str, float | None] = {}
        self._bad_mark_throttle = log.Throttle(BAD_MARK_LOG_INTERVAL_S)
        self.faults = keeper.faults  # one symbol's failure: logged, alerted, counted

    def observe_mark(self, symbol: str, price: Decimal, event_ms: int) -> bool:
        """Record a mark from any source; return True when it is newer than the last one. A
        price that is not finite and positive is logged (rate-limited) and ignored: no exit
        rule may act on it."""
        if not b.is_price(price):
            should_log, suppressed = self._bad_mark_throttle.allow(time.monotonic())
            if should_log:
                self.log.warning(
                    "bad_mark", symbol=symbol[:40], price=str(price)[:40], suppressed=suppressed
                )
            return False
        last = self.marks.get(symbol)
        if last is not None and event_ms <= last[1]:
            return False
        self.marks[symbol] = (price, event_ms)
        self.mark_fresh_mono_ms = time.monotonic_ns() // 1_000_000
        self.progress["mark"] = time.monotonic_ns()
        return True

    async def on_mark(self, symbol: str, price: Decimal, event_ms: int) -> None:
        """Evaluate the position of `symbol` against a new mark; act on a decision."""
        if not self.observe_mark(symbol, price, event_ms) or symbol not in self.book.holdings:
            return
        await self.evaluate(symbol)

    async def evaluate(self, symbol: str) -> None:
        """Move the trailing stop and apply the first exit rule that fires, if any. Any
        exception is this symbol's alone: reported (SymbolFaults), the caller goes on."""
        try:
            await self._evaluate(symbol)
        except Exception as e:  # loop top of one symbol: report, the other symbols go on
            await self.faults.report(symbol, "evaluate", e)

    async def _evaluate(self, symbol: str) -> None:
        book = self.book
        holding, mark = book.holdings.get(symbol), self.marks.get(symbol)
        if holding is None or mark is None or book.is_flattening or symbol not in book.plans:
            return
        if mark[1] < holding.opened_ms:
            return  # a price from before the position existed says nothing about it
        spec = self.specs[symbol]
        track = ex.update_track(
            book.tracks[symbol], holding, mark[0], self.cfg.exits, spec.tick_size
        )
        book.tracks[symbol] = track
        self.keeper.memory.sync(book, time.time_ns() // 1_000_000)  # a trail that moved the stop
        decision = ex.evaluate_exit(
            holding,
            book.plans[symbol],
            track,
            mark[0],
            mark[1],
            self.trends.get(symbol),
            self.cfg.exits,
            spec.market_step_size,
        )
        if decision is not None:
            await self.execute_exit(symbol, decision)
        elif not self.lock.locked() and self.keeper.is_move_due(symbol, track.stop_price):
            await self.reconcile(symbol)  # the stop tightened enough: move the resting one

    async def execute_exit(self, symbol: str, decision: ex.Exit) -> None:
        """Send the reduce-only close a rule decided; then reconcile the symbol. Any exception
        is this symbol's alone: reported (SymbolFaults), the caller goes on."""
        try:
            await self._execute_exit(symbol, decision)
        except Exception as e:  # loop top of one symbol: report, the other symbols go on
            await self.faults.report(symbol, "execute_exit", e)

    async def _execute_exit(self, symbol: str, decision: ex.Exit) -> None:
        book = self.book
        async with self.lock:
            holding = book.holdings.get(symbol)
            if holding is None:
                return
            attempt = book.exits_sent.get(symbol, 0)
            purpose = "exit" if decision.is_full else "part"
            cid = client_order_id(book.signals[symbol], purpose, min(attempt, 999))
            self.log.info(
                "exit_decided",
                symbol=symbol,
                reason=decision.reason,
                qty=decision.quantity,
                full=decision.is_full,
                detail=decision.detail,
                client_id=cid,
            )
            try:
                order = await protect.close_now(
                    self.client, symbol, closing_side(holding.quantity), decision.quantity, cid
                )
            except ExchangeError as e:
                self.stats["errors"] += 1
                self.log.warning(
                    "exit_failed", symbol=symbol, reason=decision.reason, error=str(e)[:300]
                )
                return
            finally:
                book.exits_sent[symbol] = attempt + 1
            self.stats["exits"] += 1
            self.progress["order"] = time.monotonic_ns()
            if decision.is_full and self.cache is not None:  # for the trader's trade record
                note = f"{book.signals[symbol]} {decision.reason}".encode()
                with contextlib.suppress(CacheUnavailableError):
                    await self.cache.set_field(self.cache.keys.exit_reasons(), symbol, note)
            if order is not None and not decision.is_full:
                book.tracks[symbol] = ex.apply_exit(book.tracks[symbol], decision)
            # Before anything else can fail: a restarted guard must know the partial is taken.
            self.keeper.memory.sync(book, time.time_ns() // 1_000_000)
            self.log.info(
                "exit_sent",
                symbol=symbol,
                reason=decision.reason,
                status=order.status if order else "nothing_to_reduce",
                avg_price=order.avg_price if order else "",
            )
        await self.reconcile(symbol)

    async def reconcile(
        self, symbol: str | None = None, margins: dict[str, Decimal] | None = None
    ) -> None:
        """Reconcile through the StopKeeper (one symbol or all); then close at once each position
        whose stop would trigger at once: the mark is already through it (-2021). The
        StopKeeper isolates each symbol of a full reconcile; what fails here is reported for
        `symbol` (or `all`, then also counted as a reconcile error), never raised."""
        try:
            trigger_now = await self.keeper.reconcile(symbol, margins)
        except Exception as e:  # loop top: report, the next reconcile retries
            if symbol is None:
                self.stats["errors"] += 1  # no entry lease after a reconcile that failed
            await self.faults.report(symbol or "all", "reconcile", e)
            return
        for s in trigger_now:
            holding = self.book.holdings.get(s)
            if holding is not None:
                await self.execute_exit(
                    s,
                    ex.Exit(
                        reason="stop_loss",
                        quantity=abs(holding.quantity),
                        is_full=True,
                        detail="the stop would trigger at once (-2021)",
                    ),
                )

    def update_trends(self, closes_by_symbol: dict[str, np.ndarray]) -> None:
        """Recompute the counter-trend input from the latest kline windows."""
        e = self.cfg.exits
        for symbol, closes in closes_by_symbol.items():
            self.trends[symbol] = ex.trend_strength(
                closes, e.counter_trend_fast_bars, e.counter_trend_slow_bars
            )
