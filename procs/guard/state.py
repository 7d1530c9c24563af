"""The position-guard's state and handlers: exchange truth in, protective actions out.

`Guard` keeps, per open position, the Holding (from REST), its Plan (the trader's ExitPlan from
Redis, or the default plan for a position it did not open: adopted, then alerted), its Track
(best mark, current stop) and the signal id its protective stop's client id derives from. Every
decision comes from shared/core (exits, reconcile, silence, risk, flatten); this class performs it
through procs/guard/protect.py and logs it with its reason. procs/guard/main.py wires it to its
sources
(user-data stream, ZeroMQ marks, shared memory, REST polling) and timers.

Serialisation: every exchange mutation runs under `lock`, so a reconcile, an exit and a flatten
never interleave, and a SIGTERM waits for the one in flight (rule 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from decimal import Decimal
from pathlib import Path

import msgspec
import numpy as np

from procs.guard import protect
from procs.guard.logic.risk import EquityWatch
from procs.guard.safety import Safety
from shared import log
from shared.cache import Cache, CacheUnavailableError
from shared.config import Config
from shared.core import exits as ex
from shared.core.ids import client_order_id, is_ours
from shared.core.reconcile import RestingStop, StopPlan, WantedStop, plan_stops, stop_signal_of
from shared.exchange.errors import ExchangeError
from shared.exchange.rest import ExchangeClient
from shared.schemas import binance as b
from shared.schemas import guard as g
from shared.store import halt as haltfile
from shared.store.alerts import Alerter

STOP_MOVE_INTERVAL_S = 1.0  # a trailing stop is moved at the exchange at most this often


def closing_side(quantity: Decimal) -> str:
    """Return the side that reduces a signed position."""
    return "SELL" if quantity > 0 else "BUY"


BAD_MARK_LOG_INTERVAL_S = 30.0  # a repeated bad mark is logged at most this often


class Guard(Safety):
    """State of the guard; the handlers are called by procs/guard/main.py."""

    def __init__(
        self,
        cfg: Config,
        client: ExchangeClient,
        specs: dict[str, b.SymbolSpec],
        run_dir: Path,
        logger: log.EventLogger,
        alerter: Alerter,
    ) -> None:
        self.cfg, self.client, self.specs, self.log, self.alerter = (
            cfg,
            client,
            specs,
            logger,
            alerter,
        )
        self.cache: Cache | None = None
        self.lock = asyncio.Lock()
        self.holdings: dict[str, ex.Holding] = {}
        self.plans: dict[str, ex.Plan] = {}
        self.tracks: dict[str, ex.Track] = {}
        self.signals: dict[str, str] = {}
        self.exits_sent: dict[str, int] = {}  # symbol -> exit orders sent for this position
        self.stops: dict[str, Decimal] = {}  # symbol -> trigger of our resting stop (exchange)
        self.stop_moved_s: dict[str, float] = {}
        self.resting: dict[
            str, list[RestingStop]
        ] = {}  # symbol -> stops resting (last seen)  # symbol -> monotonic time of the last move
        self.marks: dict[str, tuple[Decimal, int]] = {}  # symbol -> (price, event time ms)
        self.mark_fresh_mono_ms: int | None = None  # last time any source brought a newer mark
        self._bad_mark_throttle = log.Throttle(BAD_MARK_LOG_INTERVAL_S)
        self.trends: dict[str, float | None] = {}
        self.halt_path = haltfile.halt_path(run_dir)
        self.halt = haltfile.load_halt(self.halt_path)
        self.equity: EquityWatch | None = None
        self.is_flattening = False
        self.is_rest_mode = False
        self.progress: dict[str, int] = {}
        self.stats = {
            "reconciles": 0,
            "stops_placed": 0,
            "exits": 0,
            "flattens": 0,
            "adopted": 0,
            "errors": 0,
        }

    # ---- marks --------------------------------------------------------------------------------

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
        if not self.observe_mark(symbol, price, event_ms) or symbol not in self.holdings:
            return
        await self.evaluate(symbol)

    async def evaluate(self, symbol: str) -> None:
        """Move the trailing stop and apply the first exit rule that fires, if any."""
        holding, mark = self.holdings.get(symbol), self.marks.get(symbol)
        if holding is None or mark is None or self.is_flattening or symbol not in self.plans:
            return
        if mark[1] < holding.opened_ms:
            return  # a price from before the position existed says nothing about it
        spec = self.specs[symbol]
        track = ex.update_track(
            self.tracks[symbol], holding, mark[0], self.cfg.exits, spec.tick_size
        )
        self.tracks[symbol] = track
        decision = ex.evaluate_exit(
            holding,
            self.plans[symbol],
            track,
            mark[0],
            mark[1],
            self.trends.get(symbol),
            self.cfg.exits,
            spec.market_step_size,
        )
        if decision is not None:
            await self.execute_exit(symbol, decision)
        elif self.stops.get(symbol) not in (None, track.stop_price) and not self.lock.locked():
            now_s = time.monotonic()
            if now_s - self.stop_moved_s.get(symbol, 0.0) >= STOP_MOVE_INTERVAL_S:
                self.stop_moved_s[symbol] = now_s
                await self.reconcile(symbol)  # the stop tightened: move the resting one

    async def execute_exit(self, symbol: str, decision: ex.Exit) -> None:
        """Send the reduce-only close a rule decided; then reconcile the symbol."""
        async with self.lock:
            holding = self.holdings.get(symbol)
            if holding is None:
                return
            attempt = self.exits_sent.get(symbol, 0)
            purpose = "exit" if decision.is_full else "part"
            cid = client_order_id(self.signals[symbol], purpose, min(attempt, 999))
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
                self.exits_sent[symbol] = attempt + 1
            self.stats["exits"] += 1
            self.progress["order"] = time.monotonic_ns()
            if decision.is_full and self.cache is not None:  # for the trader's trade record
                note = f"{self.signals[symbol]} {decision.reason}".encode()
                with contextlib.suppress(CacheUnavailableError):
                    await self.cache.set_field(self.cache.keys.exit_reasons(), symbol, note)
            if order is not None and not decision.is_full:
                self.tracks[symbol] = ex.apply_exit(self.tracks[symbol], decision)
            self.log.info(
                "exit_sent",
                symbol=symbol,
                reason=decision.reason,
                status=order.status if order else "nothing_to_reduce",
                avg_price=order.avg_price if order else "",
            )
        await self.reconcile(symbol)

    # ---- exchange truth -----------------------------------------------------------------------

    async def _load_plans(self) -> dict[str, g.ExitPlan]:
        if self.cache is None:
            return {}
        try:
            raw = await self.cache.get_fields(self.cache.keys.exit_plans())
        except CacheUnavailableError:
            return {}
        plans = {}
        for symbol, value in raw.items():
            try:
                plans[symbol] = g.decode_plan(value)
            except msgspec.DecodeError as e:
                self.log.warning("exit_plan_invalid", symbol=symbol, error=str(e)[:200])
        return plans

    def _holding(self, p: b.Position, margin: Decimal) -> ex.Holding:
        known = self.holdings.get(p.symbol)
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

    async def reconcile(
        self, symbol: str | None = None, margins: dict[str, Decimal] | None = None
    ) -> None:
        """Read exchange truth (one symbol or all), adopt and plan what is new, and make the
        resting stops match. Exchange errors are logged; the next reconcile retries."""
        async with self.lock:
            # Progress = the loop got an answer, good or bad: an exchange outage is degraded mode
            # with alerts, not a reason for the watchdog to restart the guard (rule 5).
            try:
                trigger_now = await self._reconcile(symbol, margins or {})
            except ExchangeError as e:
                self.stats["errors"] += 1
                self.log.warning("reconcile_failed", symbol=symbol or "all", error=str(e)[:300])
                return
            finally:
                self.progress["reconcile"] = time.monotonic_ns()
        self.stats["reconciles"] += 1
        for s in trigger_now:  # the mark is already through the stop: close now (-2021)
            holding = self.holdings.get(s)
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

    async def _reconcile(self, symbol: str | None, margins: dict[str, Decimal]) -> list[str]:
        # Stops are algo orders; regular orders matter only to a flatten (which fetches them).
        truth = await protect.fetch_truth(self.client, symbol, with_orders=False)
        scope = [symbol] if symbol else sorted(set(truth.positions) | set(self.holdings))
        plans = (
            await self._load_plans() if any(s not in self.plans for s in truth.positions) else {}
        )
        resting = protect.resting_stops(truth.algo_orders)
        for s in scope:
            p = truth.positions.get(s)
            if p is None or s not in self.specs:
                if s in self.holdings:
                    self.log.info("position_gone", symbol=s)
                for d in (self.holdings, self.plans, self.tracks, self.signals, self.exits_sent):
                    d.pop(s, None)
                if p is not None:
                    await self.alerter.send(
                        "unknown_symbol", f"position in {s}, a symbol without spec", s
                    )
                continue
            known = self.holdings.get(s)
            holding = self._holding(
                p, margins.get(s, Decimal(0)) or (known.isolated_margin if known else Decimal(0))
            )
            flipped = known is not None and (known.quantity > 0) != (p.amount > 0)
            self.holdings[s] = holding
            if s in self.plans and not flipped:
                continue
            self._adopt(s, holding, plans.get(s), resting)
        wanted = {
            s: WantedStop(
                symbol=s,
                side=closing_side(self.holdings[s].quantity),
                trigger_price=self.tracks[s].stop_price,
                signal_id=self.signals[s],
            )
            for s in scope
            if s in self.holdings
        }
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
        outcome = await protect.apply_stop_plan(
            self.client, stop_plan, self.cfg.guard.stop_working_type, self.log
        )
        self.stats["stops_placed"] += len(outcome.placed)
        for s in scope:
            self.resting[s] = [
                r for r in resting if r.symbol == s and r.client_algo_id not in outcome.cancelled
            ]
        for r in resting:
            if r.symbol in wanted and r.trigger_price == wanted[r.symbol].trigger_price:
                self.stops[r.symbol] = r.trigger_price
        for placed in outcome.placed:
            self.stops[placed.symbol] = placed.trigger_price
            self.resting.setdefault(placed.symbol, []).append(
                RestingStop(
                    symbol=placed.symbol,
                    client_algo_id=placed.client_algo_id,
                    side=placed.side,
                    order_type="STOP_MARKET",
                    trigger_price=placed.trigger_price,
                    is_close_position=True,
                )
            )
        for s in [s for s in self.stops if s not in self.holdings]:
            del self.stops[s]
        for s, error in outcome.failed.items():
            await self.alerter.send("stop_missing", f"no protective stop for {s}: {error[:200]}", s)
        return outcome.trigger_now

    async def protect_fill(
        self, symbol: str, amount: Decimal, entry_price: Decimal, event_ms: int
    ) -> None:
        """A user-data position change: protect a new (or reversed) position at once from the
        event, before the REST reconcile that follows (one round trip to a resting stop instead
        of four). Safe against a stale local view: the stop's client id is deterministic, so a
        stop that already rests is refused as a duplicate, and the reconcile corrects the rest."""
        known = self.holdings.get(symbol)
        if amount == 0 or symbol not in self.specs or entry_price <= 0:
            return
        if known is not None and (known.quantity > 0) == (amount > 0) and symbol in self.stops:
            return  # already protected; a closePosition stop covers any added quantity
        async with self.lock:
            holding = ex.Holding(
                symbol=symbol,
                quantity=amount,
                entry_price=entry_price,
                leverage=1,
                liquidation_price=Decimal(0),
                opened_ms=event_ms,
            )
            self.holdings[symbol] = holding
            resting = self.resting.get(symbol, [])
            self.plans.pop(symbol, None)
            self._adopt(symbol, holding, (await self._load_plans()).get(symbol), resting)
            wanted = {
                symbol: WantedStop(
                    symbol=symbol,
                    side=closing_side(amount),
                    trigger_price=self.tracks[symbol].stop_price,
                    signal_id=self.signals[symbol],
                )
            }
            stop_plan = plan_stops({symbol: amount}, wanted, resting)
            trigger_now = await self._apply(stop_plan, wanted, list(resting), [symbol])
            self.progress["order"] = time.monotonic_ns()
        if trigger_now:
            await self.reconcile(symbol)  # exchange truth first, then the close at once (-2021)

    def _adopt(
        self,
        s: str,
        holding: ex.Holding,
        plan: g.ExitPlan | None,
        resting: list[RestingStop],
    ) -> None:
        spec = self.specs[s]
        is_long = holding.quantity > 0
        if plan is not None and (plan.side == "BUY") == is_long:
            self.plans[s] = ex.Plan(
                stop_price=plan.stop_price,
                take_profit_price=plan.take_profit_price,
                invalidation_price=plan.invalidation_price,
            )
            self.signals[s] = plan.signal_id
            self.log.info(
                "position_protected",
                symbol=s,
                qty=holding.quantity,
                entry=holding.entry_price,
                stop=plan.stop_price,
                source="trader_plan",
            )
        else:
            self.plans[s] = ex.default_plan(holding, self.cfg.exits, spec.tick_size)
            self.signals[s] = stop_signal_of(resting, s) or f"{s}_{holding.opened_ms}"
            self.stats["adopted"] += 1
            self.log.info(
                "position_adopted",
                symbol=s,
                qty=holding.quantity,
                entry=holding.entry_price,
                stop=self.plans[s].stop_price,
                take_profit=self.plans[s].take_profit_price,
            )
            task = asyncio.get_running_loop().create_task(
                self.alerter.send(
                    "position_adopted",
                    f"{s} {holding.quantity} @ {holding.entry_price} had no plan; "
                    f"default stop {self.plans[s].stop_price}",
                    s,
                )
            )
            task.add_done_callback(lambda _t: None)
        track = ex.new_track(holding, self.plans[s])
        # After a restart the resting stop may have trailed tighter than the plan: keep it, a
        # restart must never loosen protection.
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
        self.tracks[s] = track
        self.exits_sent[s] = 0

    def update_trends(self, closes_by_symbol: dict[str, np.ndarray]) -> None:
        """Recompute the counter-trend input from the latest kline windows."""
        e = self.cfg.exits
        for symbol, closes in closes_by_symbol.items():
            self.trends[symbol] = ex.trend_strength(
                closes, e.counter_trend_fast_bars, e.counter_trend_slow_bars
            )
