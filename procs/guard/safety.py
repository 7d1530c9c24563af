"""The guard's safety policy: the kill switch, the silence policy (dead-man's switch), the halt
flag and the flatten.

`Safety` owns the halt flag (`<run.dir>/guard/halt.json`, mirrored in Redis), the equity watch
(`<run.dir>/guard/equity.json`, procs/guard/equityfile.py) and the REST-mode flag. Decisions come
from procs/guard/logic (risk: the watch, transfers netted, the trip; silence.silence_decision);
the flatten itself is procs/guard/protect.flatten, run under the lock the guard's parts share
(procs/guard/state.py), so no exit or reconcile interleaves. While it runs, `Book.is_flattening`
holds the exit rules back; after it, the `reconcile` callable it is given (the guard's full
reconcile, `ExitRunner.reconcile`) reads exchange truth again.

Durability: the equity watch is saved whenever it changes. A flatten is an episode recorded in
the halt record in the same atomic write as its halt (`flatten_episode`), its round after every
round (which is also the guard's `reconcile` progress, so the watchdog never takes a flattening
guard for a stuck one), and cleared when it ends. A guard that finds an episode it is not running
(it was killed or stopped mid-flatten) resumes it at its next check, with a new episode id.

Transfers: the income history (`GET /fapi/v1/income`, incomeType TRANSFER, weight 30) is read
only when a transfer may have happened and matters: at start, after an ACCOUNT_UPDATE whose
reason moves money (`note_account_update`), before a trip is acted on, and once an hour; and never
when the wallet balance has not changed since the last read (its exchange time says so).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import msgspec

from procs.guard import protect
from procs.guard.book import Book
from procs.guard.equityfile import EquityFileError, load_watch, save_watch
from procs.guard.logic.risk import (
    TRANSFER_REASONS,
    EquityWatch,
    Transfer,
    kill_switch_trip,
    needs_reset,
    net_transfers,
    reset_watch,
    watch_equity,
)
from procs.guard.logic.silence import SilenceDecision
from shared import log
from shared.cache import Cache, CacheUnavailableError
from shared.config import Config
from shared.exchange.errors import ExchangeError
from shared.exchange.rest import ExchangeClient
from shared.schemas import binance as b
from shared.schemas import guard as g
from shared.store import halt as haltfile
from shared.store.alerts import Alerter

TRANSFER_SWEEP_S = 3600.0  # transfers are read at least this often (a missed event)
INCOME_WINDOW_MS = 7 * 86_400_000  # Binance answers at most 7 days per income query
INCOME_HISTORY_MS = 90 * 86_400_000  # and keeps 3 months
INCOME_LIMIT = 1000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def balance_time_ms(account: b.Account, now_ms: int) -> int:
    """Return the exchange time of the account's wallet balance (its newest asset update), or
    `now_ms` when the exchange gives none."""
    return max((a.update_time_ms for a in account.assets), default=0) or now_ms


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
        equity_path: Path,
        progress: dict[str, int],
        reconcile: Callable[[], Awaitable[None]],
    ) -> None:
        self.cfg, self.client, self.specs, self.book = cfg, client, specs, book
        self.lock, self.log, self.alerter, self.cache = lock, logger, alerter, cache
        self.stats, self.halt_path, self.reconcile = stats, halt_path, reconcile
        self.equity_path, self.progress = equity_path, progress
        self.halt: g.HaltState = haltfile.load_halt(halt_path)
        self.equity_error = ""
        try:
            self.equity: EquityWatch | None = load_watch(equity_path)
        except EquityFileError as e:
            self.equity, self.equity_error = None, str(e)
        self.is_transfer_due = True  # a restart may have missed transfer events
        self.transfers_read_s = time.monotonic()
        self.is_rest_mode = False

    # -- kill switch ----------------------------------------------------------------------------

    def note_account_update(self, reason: str) -> None:
        """Remember that an ACCOUNT_UPDATE with `reason` may have moved money in or out."""
        if reason in TRANSFER_REASONS:
            self.is_transfer_due = True

    async def check_equity(self, account: b.Account) -> None:
        """Track peak and daily equity, net of transfers; apply an operator's reset; trip the
        kill switch (halt, flatten) when a limit is hit."""
        equity, now_ms = account.margin_balance_usdt, _now_ms()
        balance_ms = balance_time_ms(account, now_ms)
        self.halt = haltfile.load_halt(self.halt_path)  # `slt rearm` writes it
        watch = await self._current_watch(equity, now_ms, balance_ms)
        if self.is_transfer_due or time.monotonic() - self.transfers_read_s > TRANSFER_SWEEP_S:
            watch = await self._net_transfers(watch, balance_ms)
        watch = watch_equity(watch, equity, now_ms, balance_ms)
        trip = kill_switch_trip(watch, equity, self.cfg.kill_switch)
        if trip is not None and not (self.halt.is_halted and self.halt.reason == trip[0]):
            # A withdrawal is not a loss: read the transfers before acting on a trip.
            watch = await self._net_transfers(watch, balance_ms)
            trip = kill_switch_trip(watch, equity, self.cfg.kill_switch)
        self._keep_watch(watch)
        if self.book.is_flattening:
            return  # a flatten is running; the next check judges the equity it leaves
        if trip is not None and not (self.halt.is_halted and self.halt.reason == trip[0]):
            reason, detail = trip
            await self.flatten(reason, detail)

    async def _current_watch(self, equity: Decimal, now_ms: int, balance_ms: int) -> EquityWatch:
        watch = self.equity
        if self.equity_error:  # the peak is lost: halt until the operator re-arms
            self.log.error("equity_file_unreadable", error=self.equity_error[:300])
            await self.alerter.send(
                "equity_file_unreadable",
                f"{self.equity_error[:200]}; the kill switch restarts from equity {equity}; "
                "entries halted until slt rearm",
            )
            self.equity_error = ""
            if not self.halt.needs_operator:
                await self._write_halt(haltfile.halted("equity_file_unreadable", now_ms))
        if watch is None:
            watch = watch_equity(None, equity, now_ms, balance_ms)
            watch = reset_watch(watch, equity, now_ms, balance_ms, self.halt.equity_reset_ms)
            self.log.info("equity_watch_started", peak=equity, day_start=equity)
            self.is_transfer_due = False  # every transfer so far is in this equity
        elif needs_reset(watch, self.halt.equity_reset_ms):
            new = reset_watch(watch, equity, now_ms, balance_ms, self.halt.equity_reset_ms)
            self.log.warning(
                "equity_watch_reset",
                by="slt rearm",
                peak_was=watch.peak_equity,
                day_start_was=watch.day_start_equity,
                peak=new.peak_equity,
                day_start=new.day_start_equity,
            )
            watch = new
        return watch

    async def _net_transfers(self, watch: EquityWatch, through_ms: int) -> EquityWatch:
        """Read the TRANSFER income rows the watch has not netted, up to the balance time
        `through_ms`, and net them; on an exchange error keep the watch (retried next check)."""
        start_ms = max(watch.transfers_through_ms + 1, through_ms - INCOME_HISTORY_MS)
        rows: dict[int, b.Income] = {}
        try:
            while start_ms <= through_ms:
                end_ms = min(through_ms, start_ms + INCOME_WINDOW_MS - 1)
                page = await self.client.income(
                    income_type="TRANSFER", start_ms=start_ms, end_ms=end_ms, limit=INCOME_LIMIT
                )
                rows.update((r.transaction_id, r) for r in page)
                full = len(page) >= INCOME_LIMIT and page[-1].time_ms > start_ms
                start_ms = page[-1].time_ms if full else end_ms + 1
        except ExchangeError as e:
            self.log.warning("transfers_unavailable", error=str(e)[:300])
            return watch
        self.is_transfer_due, self.transfers_read_s = False, time.monotonic()
        transfers = [
            Transfer(r.amount, r.time_ms)
            for r in rows.values()
            if r.income_type == "TRANSFER" and r.asset == "USDT"
        ]
        new = net_transfers(watch, transfers, through_ms)
        for t in transfers:
            if watch.transfers_through_ms < t.time_ms <= through_ms:
                self.log.info("transfer_netted", amount=t.amount_usdt, time_ms=t.time_ms)
        if new.peak_equity != watch.peak_equity or new.day_start_equity != watch.day_start_equity:
            self.log.info(
                "equity_watch_netted",
                peak_was=watch.peak_equity,
                peak=new.peak_equity,
                day_start=new.day_start_equity,
            )
        return new

    def _keep_watch(self, watch: EquityWatch) -> None:
        if watch != self.equity:
            save_watch(self.equity_path, watch)  # durable before anything acts on it
            self.equity = watch

    # -- halt flag ------------------------------------------------------------------------------

    async def set_halt(self, reason: str) -> None:
        """Set (reason) or clear ("") the halt flag: file first, then the Redis mirror."""
        state = haltfile.halted(reason, _now_ms()) if reason else haltfile.armed()
        if state.is_halted == self.halt.is_halted and state.reason == self.halt.reason:
            return
        await self._write_halt(state)

    async def _write_halt(self, state: g.HaltState) -> None:
        """Write `state`, keeping an operator's equity reset the guard may not have applied
        (`slt rearm` may have written one since the last read)."""
        on_disk = haltfile.load_halt(self.halt_path).equity_reset_ms
        reset_ms = max(state.equity_reset_ms, self.halt.equity_reset_ms, on_disk)
        state = msgspec.structs.replace(state, equity_reset_ms=reset_ms)
        is_change = (state.is_halted, state.reason) != (self.halt.is_halted, self.halt.reason)
        haltfile.save_halt(self.halt_path, state)
        self.halt = state
        if is_change:
            self.log.warning(
                "halt_set" if state.is_halted else "halt_cleared", reason=state.reason or None
            )
        await self.mirror_halt()

    async def mirror_halt(self) -> None:
        """Write the halt flag to its Redis mirror; an unavailable Redis is skipped."""
        if self.cache is None:
            return
        try:
            await self.cache.set_value(self.cache.keys.guard_halt(), g.encode(self.halt))
        except CacheUnavailableError:
            pass  # the file is the truth; the mirror is rewritten on the next change or start

    # -- silence --------------------------------------------------------------------------------

    async def apply_silence(self, decision: SilenceDecision) -> None:
        """Resume an interrupted flatten; apply the silence policy: REST mode, entry halt,
        dead-man's switch."""
        if decision.use_rest != self.is_rest_mode:
            self.is_rest_mode = decision.use_rest
            self.log.warning(
                "rest_mode_entered" if decision.use_rest else "rest_mode_left",
                detail=decision.detail,
            )
        self.halt = haltfile.load_halt(self.halt_path)  # `slt flatten` / `slt rearm` write it
        if self.halt.flatten_episode and not self.book.is_flattening:
            await self.resume_flatten()
            return
        if self.halt.needs_operator:
            pass
        elif decision.halt_entries and not self.halt.is_halted:
            await self.set_halt("trader_silent")
        elif not decision.halt_entries and self.halt.reason == "trader_silent":
            await self.set_halt("")
        if decision.flatten_reason and not self.book.is_flattening and self.book.holdings:
            await self.flatten(decision.flatten_reason, f"dead-man's switch: {decision.detail}")

    # -- flatten --------------------------------------------------------------------------------

    async def flatten(self, reason: str, detail: str) -> bool:
        """Halt for `reason` and flatten every position as a new episode (see `_run_flatten`)."""
        episode = f"F{_now_ms()}"
        self.book.is_flattening = True  # before the record: no resume of our own episode
        try:
            halt = haltfile.halted(reason, _now_ms())
            await self._write_halt(msgspec.structs.replace(halt, flatten_episode=episode))
            await self.alerter.send(reason, detail)
        except BaseException:
            self.book.is_flattening = False
            raise
        return await self._run_flatten(reason, episode)

    async def resume_flatten(self) -> bool:
        """Resume the flatten episode the halt record shows unfinished (its guard died or was
        stopped), as a new episode under the same halt."""
        old, episode = self.halt.flatten_episode, f"F{_now_ms()}"
        self.book.is_flattening = True
        try:
            self.log.warning(
                "flatten_resumed",
                reason=self.halt.reason or None,
                episode=episode,
                resumed_episode=old,
                rounds_done=self.halt.flatten_round + 1,
            )
            state = msgspec.structs.replace(self.halt, flatten_episode=episode, flatten_round=0)
            await self._write_halt(state)
        except BaseException:
            self.book.is_flattening = False
            raise
        return await self._run_flatten(self.halt.reason, episode)

    def _round_done(self, episode: str, round_no: int) -> None:
        """One flatten round ended: report progress (the watchdog's guard progress is
        `reconcile`), and record the round if the record still shows this episode."""
        self.progress["reconcile"] = time.monotonic_ns()
        halt = haltfile.load_halt(self.halt_path)
        if halt.flatten_episode == episode:
            self.halt = msgspec.structs.replace(halt, flatten_round=round_no)
            haltfile.save_halt(self.halt_path, self.halt)

    async def _run_flatten(self, reason: str, episode: str) -> bool:
        """Flatten (procs/guard/protect.flatten) under the lock, then end the episode in the
        record and reconcile; return True when flat. `book.is_flattening` is set on entry."""
        self.stats["flattens"] += 1
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
                    on_round=lambda round_no: self._round_done(episode, round_no),
                )
            halt = haltfile.load_halt(self.halt_path)
            if halt.flatten_episode == episode:  # not re-armed or re-flattened meanwhile
                await self._write_halt(msgspec.structs.replace(halt, flatten_episode=""))
        finally:
            self.book.is_flattening = False
        self.progress["reconcile"] = time.monotonic_ns()
        if not is_flat:
            await self.alerter.send(
                "flatten_incomplete", f"positions remain after {reason}; stops stay"
            )
        await self.reconcile()
        return is_flat
