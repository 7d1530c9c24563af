"""The guard's stop keeping: exchange truth in, a resting protective stop per position out.

`StopKeeper` reads the positions and resting algo orders over REST, records each position in the
shared `Book` with its Plan (the trader's ExitPlan from Redis when bound to the position's opening
fill, its levels derived from that fill and checked (procs/guard/logic/plans.py, issue 13, hole 2),
deleted when the position closes; else the default plan: adopted, then alerted), its Track and its
signal id, and makes the resting stops
match (shared/core/reconcile.plan_stops, performed by procs/guard/protect.py). A stop that would
trigger at once (-2021) is not closed here: `reconcile` and `protect_fill` return those symbols
and `ExitRunner.reconcile` (procs/guard/exits.py) closes them.

The stop that should rest is the Track's carried stop, followed only on a meaningful change
(shared/core/exits.stop_to_rest: `guard.stop_move_min_ticks` tighter, at most every
`guard.stop_move_min_interval_s` per symbol); a move goes through a bridge, so a stop covering
the whole position rests at every instant, also on Binance, which refuses a second closePosition
stop in one direction (-4130).

A REST snapshot is believed per symbol only as shared/core/reconcile.believe_snapshot says (issue
13, hole 9): not when its read started before the symbol's last user-data event (`note_event`),
and a flat symbol's stops are cancelled and its position forgotten only on the second flat read in
a row; until then the symbol stays as it was and is listed in `unsettled`, which the guard reads
again soon.

Restart and flip (issue 13, hole 12): each position's guard state is one record in
run/guard/positions.json (procs/guard/positionfile.py), written after each reconcile and fill
that changed it. A position the first reconcile finds is restored from its record when it is the
same position (procs/guard/logic/memory.restore_decision: same side, entry within a tick):
plan, trail, partial take-profit taken, opening time and ids as they were. A flip seen by a
reconcile is a new position: the trader's plan bound to its opening fill, else the default.

Every exchange mutation runs under the lock the guard's parts share (procs/guard/state.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from decimal import Decimal

import msgspec

from procs.guard import protect
from procs.guard.book import Book, closing_side
from procs.guard.faults import SymbolFaults
from procs.guard.logic import memory as mem
from procs.guard.logic import plans as pl
from procs.guard.positionfile import PositionFile
from shared import log
from shared.cache import Cache, CacheUnavailableError
from shared.config import Config
from shared.core import exits as ex
from shared.core.ids import is_ours
from shared.core.reconcile import (
    FlatRun,
    PlaceBridge,
    PlaceStop,
    RestingStop,
    StopPlan,
    WantedStop,
    believe_snapshot,
    covers,
    is_protective,
    plan_stops,
    stop_signal_of,
)
from shared.exchange.errors import ExchangeError
from shared.exchange.rest import ExchangeClient
from shared.schemas import binance as b
from shared.schemas import guard as g
from shared.store.alerts import Alerter

# A trader's plan is bound through the symbol's fills (userTrades: the last 7 days by default,
# weight 5 whatever the limit); an older plan can never be bound, so it is deleted.
PLAN_MAX_AGE_MS = 7 * 24 * 3_600_000
PLAN_FILLS_LIMIT = 200


class StopKeeper:
    """Reconcile the Book with the exchange and keep a protective stop resting per position."""

    def __init__(
        self,
        *,
        cfg: Config,
        client: ExchangeClient,
        specs: dict[str, b.SymbolSpec],
        book: Book,
        memory: PositionFile,
        lock: asyncio.Lock,
        logger: log.EventLogger,
        alerter: Alerter,
        cache: Cache | None,
        stats: dict[str, int],
        progress: dict[str, int],
    ) -> None:
        self.cfg, self.client, self.specs, self.book = cfg, client, specs, book
        self.memory = memory  # each position's guard state on disk, restored at start
        self.lock, self.log, self.alerter, self.cache = lock, logger, alerter, cache
        self.stats, self.progress = stats, progress
        self.moved_ms: dict[str, int] = {}  # symbol -> monotonic ms of its last stop placed
        self.last_event_ns: dict[str, int] = {}  # symbol -> monotonic ns of its last user event
        self.flat_runs: dict[str, FlatRun] = {}  # symbol -> its believed flat reads in a row
        self.unsettled: set[str] = set()  # symbols the last snapshot did not settle: read again
        self.faults = SymbolFaults(logger, alerter, stats)  # one symbol's failure, isolated

    def note_event(self, symbol: str) -> None:
        """Record that a user-data event of `symbol` arrived now: REST reads started before it
        are not believed for that symbol."""
        self.last_event_ns[symbol] = time.monotonic_ns()

    def _resting_trigger(self, symbol: str, side: str) -> Decimal | None:
        """Return the trigger of our closePosition stop resting on `side` (the tightest, should
        there be several), or None."""
        triggers = [
            r.trigger_price
            for r in self.book.resting.get(symbol, [])
            if r.is_close_position and r.side == side and is_protective(r)
        ]
        if not triggers:
            return None
        return max(triggers) if side == "SELL" else min(triggers)

    def stop_to_rest(self, symbol: str, carried: Decimal) -> Decimal:
        """Return the trigger the resting stop of `symbol` should have now, given the Track's
        carried stop (shared/core/exits.stop_to_rest on the last seen resting stops)."""
        holding = self.book.holdings[symbol]
        g = self.cfg.guard
        return ex.stop_to_rest(
            self._resting_trigger(symbol, closing_side(holding.quantity)),
            carried,
            holding.quantity > 0,
            self.specs[symbol].tick_size,
            g.stop_move_min_ticks,
            self.moved_ms.get(symbol),
            time.monotonic_ns() // 1_000_000,
            round(g.stop_move_min_interval_s * 1000),
        )

    def is_move_due(self, symbol: str, carried: Decimal) -> bool:
        """Return whether the resting stop of `symbol` (known to rest) should move now."""
        resting = self.book.stops.get(symbol)
        if resting is None or symbol not in self.book.holdings:
            return False
        return self.stop_to_rest(symbol, carried) != resting

    async def reconcile(
        self, symbol: str | None = None, margins: dict[str, Decimal] | None = None
    ) -> list[str]:
        """Read exchange truth (one symbol or all), adopt and plan what is new, and make the
        resting stops match; return the symbols whose stop would trigger at once (-2021), for
        the caller to close. Exchange errors are logged; the next reconcile retries."""
        async with self.lock:
            # Progress = the loop got an answer, good or bad: an exchange outage is degraded mode
            # with alerts, not a reason for the watchdog to restart the guard (rule 5).
            try:
                trigger_now = await self._reconcile(symbol, margins or {})
            except ExchangeError as e:
                self.stats["errors"] += 1
                self.log.warning("reconcile_failed", symbol=symbol or "all", error=str(e)[:300])
                return []
            finally:
                self.progress["reconcile"] = time.monotonic_ns()
        self.stats["reconciles"] += 1
        return trigger_now

    async def protect_fill(
        self, symbol: str, amount: Decimal, entry_price: Decimal, event_ms: int
    ) -> list[str]:
        """A user-data position change: protect a new (or reversed) position at once from the
        event, before the REST reconcile that follows (one round trip to a resting stop instead
        of four). Safe against a stale local view: the stop's client id is deterministic, so a
        stop that already rests is refused as a duplicate, and the reconcile corrects the rest.
        Return the symbols whose stop would trigger at once (-2021): the caller reconciles them
        from exchange truth first, then closes them."""
        book = self.book
        known = book.holdings.get(symbol)
        if amount == 0 or symbol not in self.specs or entry_price <= 0:
            return []
        if known is not None and (known.quantity > 0) == (amount > 0) and symbol in book.stops:
            return []  # already protected; a closePosition stop covers any added quantity
        async with self.lock:
            holding = ex.Holding(
                symbol=symbol,
                quantity=amount,
                entry_price=entry_price,
                leverage=1,
                liquidation_price=Decimal(0),
                opened_ms=event_ms,
            )
            book.holdings[symbol] = holding
            resting = book.resting.get(symbol, [])
            book.plans.pop(symbol, None)
            plans = (await self._load_plans()).get(symbol, [])
            self._adopt(symbol, holding, await self._choose_plan(holding, plans), resting)
            wanted = {
                symbol: WantedStop(
                    symbol=symbol,
                    side=closing_side(amount),
                    trigger_price=self.stop_to_rest(symbol, book.tracks[symbol].stop_price),
                    signal_id=book.signals[symbol],
                )
            }
            stop_plan = plan_stops({symbol: amount}, wanted, resting)
            trigger_now = await self._apply(stop_plan, wanted, list(resting), [symbol])
            self.progress["order"] = time.monotonic_ns()
        return trigger_now

    async def _load_plans(self) -> dict[str, list[g.ExitPlan]]:
        """Return the trader's ExitPlans by symbol (several: one per entry client id). A plan
        that does not decode, or older than the userTrades window that could bind it, is
        deleted: it can never be used."""
        if self.cache is None:
            return {}
        key = self.cache.keys.exit_plans()
        try:
            raw = await self.cache.get_fields(key)
        except CacheUnavailableError:
            return {}
        plans: dict[str, list[g.ExitPlan]] = {}
        oldest_ms = time.time_ns() // 1_000_000 - PLAN_MAX_AGE_MS
        for client_id, value in raw.items():
            try:
                plan = g.decode_plan(value)
            except msgspec.DecodeError as e:
                self.log.warning("exit_plan_invalid", client_id=client_id, error=str(e)[:200])
                plan = None
            if plan is None or plan.created_ms < oldest_ms:
                with contextlib.suppress(CacheUnavailableError):
                    await self.cache.set_field(key, client_id, None)
                continue
            plans.setdefault(plan.symbol, []).append(plan)
        return plans

    async def _choose_plan(self, holding: ex.Holding, plans: list[g.ExitPlan]) -> pl.Chosen | None:
        """Return the trader's plan bound to the fill that opened `holding`, its levels derived
        from that fill and checked (procs/guard/logic/plans.py), or None: the default plan
        applies (`exit_plan_rejected` says why when there were plans)."""
        s = holding.symbol
        side = "BUY" if holding.quantity > 0 else "SELL"
        candidates = [p for p in plans if p.side == side]
        if not plans:
            return None
        try:
            fills, orders = [], []
            if candidates:
                fills = [
                    pl.Fill(t.order_id, t.quantity if t.side == "BUY" else -t.quantity)
                    for t in await self.client.user_trades(s, limit=PLAN_FILLS_LIMIT)
                ]
            for p in candidates:
                order = await self.client.fetch_order_by_client_id(s, p.client_id)
                if order is not None:
                    orders.append(pl.EntryOrder(p.client_id, order.order_id, order.side))
            chosen = pl.choose_plan(plans, holding, self.specs[s].tick_size, fills, orders)
        except ExchangeError as e:  # the binding cannot be checked: the default plan protects
            chosen = f"fills not readable: {str(e)[:200]}"
        if isinstance(chosen, str):
            self.log.warning("exit_plan_rejected", symbol=s, reason=chosen)
            return None
        return chosen

    async def _drop_plan(self, symbol: str) -> None:
        """Delete the trader's plan bound to `symbol`'s position, which has closed."""
        client_id = self.book.plan_ids.pop(symbol, None)
        if client_id is None or self.cache is None:
            return
        try:
            await self.cache.set_field(self.cache.keys.exit_plans(), client_id, None)
        except CacheUnavailableError as e:  # bound to a closed position's fill: never used again
            self.log.warning("exit_plan_not_removed", symbol=symbol, error=str(e)[:200])
            return
        self.log.info("exit_plan_removed", symbol=symbol, client_id=client_id)

    def _holding(self, p: b.Position, margin: Decimal) -> ex.Holding:
        known = self.book.holdings.get(p.symbol)
        same = known is not None and (known.quantity > 0) == (p.amount > 0)
        notional = abs(p.amount) * p.entry_price
        leverage = max(1, int(notional / margin)) if margin > 0 else 1
        return ex.Holding(
            symbol=p.symbol,
            quantity=p.amount,
            entry_price=p.entry_price,
            leverage=leverage,
            liquidation_price=p.liquidation_price,
            opened_ms=known.opened_ms if same and known else p.update_time_ms,
            isolated_margin=margin,
        )

    async def _reconcile(self, symbol: str | None, margins: dict[str, Decimal]) -> list[str]:
        book = self.book
        # Stops are algo orders; regular orders matter only to a flatten (which fetches them).
        read_ns = time.monotonic_ns()
        truth = await protect.fetch_truth(self.client, symbol, with_orders=False)
        belief = believe_snapshot(
            [symbol] if symbol else sorted(set(truth.positions) | set(book.holdings)),
            {s: p.amount for s, p in truth.positions.items()},
            read_ns,
            self.last_event_ns,
            self.flat_runs,
        )
        self.flat_runs = belief.flat_runs
        self.unsettled.difference_update(belief.settled)
        self.unsettled.update(belief.held_back)
        for s in belief.held_back:  # left as it was: its stops rest, its position is kept
            stale = read_ns <= self.last_event_ns.get(s, read_ns - 1)
            self.log.info(
                "snapshot_held_back",
                symbol=s,
                reason="read_before_event" if stale else "first_flat_read",
            )
        scope = list(belief.settled)
        # A flip is a new position: the trader's plan bound to its opening fill may apply.
        plans = (
            await self._load_plans()
            if any(
                s not in book.plans or (s in book.holdings and self._is_flip(s, p.amount))
                for s, p in truth.positions.items()
            )
            else {}
        )
        resting = protect.resting_stops(truth.algo_orders)
        failed: set[str] = set()  # symbols whose handling failed: reported, left as they are
        for s in scope:
            try:
                p = truth.positions.get(s)
                if p is None or s not in self.specs:
                    if s in book.holdings:
                        self.log.info("position_gone", symbol=s)
                    await self._drop_plan(s)
                    for d in (
                        book.holdings,
                        book.plans,
                        book.tracks,
                        book.signals,
                        book.exits_sent,
                    ):
                        d.pop(s, None)
                    if p is not None:
                        await self.alerter.send(
                            "unknown_symbol", f"position in {s}, a symbol without spec", s
                        )
                    continue
                known = book.holdings.get(s)
                holding = self._holding(
                    p,
                    margins.get(s, Decimal(0)) or (known.isolated_margin if known else Decimal(0)),
                )
                flipped = known is not None and (known.quantity > 0) != (p.amount > 0)
                book.holdings[s] = holding
                book.resting[s] = [r for r in resting if r.symbol == s]
                if s in book.plans and not flipped:
                    continue
                if not flipped and self._restore(s, holding, resting):
                    continue
                self._adopt(s, holding, await self._choose_plan(holding, plans.get(s, [])), resting)
            except Exception as e:  # loop top of one symbol: report, the others go on
                failed.add(s)
                await self.faults.report(s, "reconcile", e)
        if symbol is None and not failed:
            self.memory.forget_unclaimed()  # every position was decided: the rest are gone
        wanted: dict[str, WantedStop] = {}
        for s in [s for s in scope if s in book.holdings and s not in failed]:
            try:
                trigger = self.stop_to_rest(s, book.tracks[s].stop_price)
                if not b.is_price(trigger):
                    raise ValueError(f"stop trigger {trigger} is not finite and positive")
                wanted[s] = WantedStop(
                    symbol=s,
                    side=closing_side(book.holdings[s].quantity),
                    trigger_price=trigger,
                    signal_id=book.signals[s],
                )
            except Exception as e:  # loop top of one symbol: report, the others go on
                failed.add(s)
                await self.faults.report(s, "reconcile", e)
        scope = [s for s in scope if s not in failed]  # a failed symbol's stops stay as they are
        amounts = {s: truth.positions[s].amount for s in scope if s in truth.positions}
        stop_plan = plan_stops(amounts, wanted, [r for r in resting if r.symbol in scope])
        return await self._apply(
            stop_plan, wanted, [r for r in resting if r.symbol in scope], scope
        )

    async def _apply(
        self,
        stop_plan: StopPlan,
        wanted: dict[str, WantedStop],
        resting: list[RestingStop],
        scope: list[str],
    ) -> list[str]:
        """Perform a stop plan and record what rests now; return the symbols to close at once."""
        book = self.book
        outcome = await protect.apply_stop_plan(
            self.client, stop_plan, self.cfg.guard.stop_working_type, self.log
        )
        self.stats["stops_placed"] += len(outcome.placed)
        for s in scope:
            book.resting[s] = [
                r for r in resting if r.symbol == s and r.client_algo_id not in outcome.cancelled
            ]
        for bridge in outcome.bridged:
            book.resting.setdefault(bridge.symbol, []).append(bridge.as_resting())
        now_ms = time.monotonic_ns() // 1_000_000
        for steps in stop_plan.steps:  # a move tried counts, done or not: retries are paced too
            if any(isinstance(step, (PlaceStop, PlaceBridge)) for step in steps):
                self.moved_ms[steps[0].symbol] = now_ms
        for placed in outcome.placed:
            book.resting.setdefault(placed.symbol, []).append(
                RestingStop(
                    symbol=placed.symbol,
                    client_algo_id=placed.client_algo_id,
                    side=placed.side,
                    order_type="STOP_MARKET",
                    trigger_price=placed.trigger_price,
                    is_close_position=True,
                )
            )
        for s in scope:
            holding = book.holdings.get(s)
            trigger = (
                None
                if holding is None
                else self._resting_trigger(s, closing_side(holding.quantity))
            )
            if trigger is None:
                book.stops.pop(s, None)
            else:
                book.stops[s] = trigger
        for s in [s for s in book.stops if s not in book.holdings]:
            del book.stops[s]
        for s in [s for s in self.moved_ms if s not in book.holdings]:
            del self.moved_ms[s]
        self.memory.sync(book, time.time_ns() // 1_000_000)
        for s, error in outcome.failed.items():
            holding = book.holdings.get(s)
            if holding is not None and any(
                covers(r, s, holding.quantity) for r in book.resting.get(s, [])
            ):
                # A move that stopped half-way: the old stop or the bridge still covers it all.
                self.log.warning("stop_not_moved", symbol=s, error=error[:200])
                continue
            await self.alerter.send("stop_missing", f"no protective stop for {s}: {error[:200]}", s)
        return outcome.trigger_now

    def _is_flip(self, s: str, amount: Decimal) -> bool:
        """Return whether `amount` at the exchange is on the other side of the Book's position."""
        known = self.book.holdings.get(s)
        return known is not None and amount != 0 and (known.quantity > 0) != (amount > 0)

    def _restore(self, s: str, holding: ex.Holding, resting: list[RestingStop]) -> bool:
        """Restore the position's guard state from the record a previous guard saved, when it
        is the same position (procs/guard/logic/memory.restore_decision); return whether it
        was restored. A record that does not match is dropped with its reason."""
        record = self.memory.take(s)
        if record is None:
            return False
        decision = mem.restore_decision(
            record, holding.quantity, holding.entry_price, self.specs[s].tick_size
        )
        if not decision.is_kept:
            self.log.info(
                "position_record_dropped", symbol=s, reason=decision.reason, detail=decision.detail
            )
            return False
        book = self.book
        plan, track = mem.plan_and_track(record)
        holding = dataclasses.replace(holding, opened_ms=record.opened_at_ms)
        book.holdings[s] = holding
        book.plans[s] = plan
        book.tracks[s] = self._keep_tighter_resting(s, holding, track, resting)
        book.signals[s] = record.signal_id
        if record.plan_id:
            book.plan_ids[s] = record.plan_id
        else:
            book.plan_ids.pop(s, None)
        book.exits_sent[s] = record.exits_sent
        self.log.info(
            "position_restored",
            symbol=s,
            qty=holding.quantity,
            entry=holding.entry_price,
            stop=book.tracks[s].stop_price,
            take_profit=plan.take_profit_price,
            has_taken_profit=record.has_taken_profit,
            opened_ms=record.opened_at_ms,
        )
        return True

    def _keep_tighter_resting(
        self, s: str, holding: ex.Holding, track: ex.Track, resting: list[RestingStop]
    ) -> ex.Track:
        """Return `track` with its stop tightened to our resting stop where that is tighter:
        after a restart the resting stop may have trailed tighter than the plan, and a restart
        must never loosen protection."""
        is_long = holding.quantity > 0
        side = closing_side(holding.quantity)
        for r in resting:
            if (
                r.symbol == s
                and r.is_close_position
                and r.side == side
                and r.order_type == "STOP_MARKET"
                and is_ours(r.client_algo_id)
            ):
                tighter = (
                    r.trigger_price > track.stop_price
                    if is_long
                    else (r.trigger_price < track.stop_price)
                )
                if tighter:
                    track = dataclasses.replace(track, stop_price=r.trigger_price)
        return track

    def _adopt(
        self,
        s: str,
        holding: ex.Holding,
        chosen: pl.Chosen | None,
        resting: list[RestingStop],
    ) -> None:
        book = self.book
        spec = self.specs[s]
        if chosen is not None:  # bound to this position's opening fill, derived from it, checked
            book.plans[s] = chosen.plan
            book.signals[s] = chosen.exit_plan.signal_id
            book.plan_ids[s] = chosen.exit_plan.client_id
            self.log.info(
                "position_protected",
                symbol=s,
                qty=holding.quantity,
                entry=holding.entry_price,
                stop=chosen.plan.stop_price,
                take_profit=chosen.plan.take_profit_price,
                client_id=chosen.exit_plan.client_id,
                source="trader_plan",
            )
        else:
            book.plan_ids.pop(s, None)
            book.plans[s] = ex.default_plan(holding, self.cfg.exits, spec.tick_size)
            book.signals[s] = stop_signal_of(resting, s) or f"{s}_{holding.opened_ms}"
            self.stats["adopted"] += 1
            self.log.info(
                "position_adopted",
                symbol=s,
                qty=holding.quantity,
                entry=holding.entry_price,
                stop=book.plans[s].stop_price,
                take_profit=book.plans[s].take_profit_price,
            )
            task = asyncio.get_running_loop().create_task(
                self.alerter.send(
                    "position_adopted",
                    f"{s} {holding.quantity} @ {holding.entry_price} had no plan; "
                    f"default stop {book.plans[s].stop_price}",
                    s,
                )
            )
            task.add_done_callback(lambda _t: None)
        track = ex.new_track(holding, book.plans[s])
        book.tracks[s] = self._keep_tighter_resting(s, holding, track, resting)
        book.exits_sent[s] = 0
