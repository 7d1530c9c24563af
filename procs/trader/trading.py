"""The trader's state and actions: one decision per closed minute, entries, real and virtual trades.

`Trader.decide(minute_ms)` reads the kline windows of every symbol from shared memory, computes the
features (shared/core/features.py, the code training uses), scores both directions with the
champion model, ranks the candidates (procs/trader/logic/signals.py) and enters the best within the
limits; the others at or above `trader.virtual_min_confidence` are followed as virtual positions
with the guard's exit rules (procs/trader/logic/virtual.py). While a minute's closes are still
arriving,
`Trader.score(minute_ms, symbols)` scores the symbols already closed (`MinuteScores`), so the
decision has only the last few left to score; the result is the one batch's, bit for bit.

An entry, in this order (money safety):
 1. the intent is recorded (PostgreSQL, or the outbox while it is down) with its client id;
 2. margin type and leverage are set for the symbol;
 3. the ExitPlan (stop and take-profit distances, and the entry's client id) is stored in Redis
    `Keys.exit_plans`, so the guard protects the fill with the trader's distances from the fill
    price. No plan stored, no entry: the intent is recorded as rejected (`exit_plan_unstored`).
    Sending it anyway would leave the position to the guard's default plan, levels the trader
    did not choose, and Redis refusing a write is rare and short (issue 13, hole 2);
 4. a MARKET order with the deterministic client id `slt-<signal>-entry-0` (the signal id is the
    symbol, the minute and the side: a restart recomputes it, and the recorded intent stops a
    second send), sent only if the entry gate (procs/trader/gate.py) allows it right then: not
    halted, and the guard's lease valid (the guard protects every position now). The gate is
    also asked before step 1, so a blocked entry usually leaves no trace but `entry_blocked`;
    one blocked at the send, or refused by the exchange, is recorded as rejected and its
    ExitPlan removed (a plan binds only to its own order's fill in any case);
 5. the fill is recorded as an open trade. The guard places the exchange stop from the fill.

Closes: the guard (or the exchange stop) closes real positions; `check_positions` sees a tracked
position gone from REST, reads the fills (userTrades) for the exit price, fees and realized PnL,
and records the closed trade with the guard's exit reason (`Keys.exit_reasons`; absent: the
exchange-resident stop or an outside close, "exchange_or_external").
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

from procs.trader.gate import EntryGate
from procs.trader.learning import ModelHolder
from procs.trader.logic import outcomes as oc
from procs.trader.logic import sizing
from procs.trader.logic import virtual as vt
from procs.trader.logic.signals import Candidate, candidates_from_probabilities, select_entries
from procs.trader.outbox import Recorder
from shared import log
from shared.cache import Cache, CacheUnavailableError
from shared.config import Config
from shared.core import exits as ex
from shared.core import features as fe
from shared.core import filters
from shared.core.ids import client_order_id
from shared.exchange.errors import ExchangeError, ExecutionUnknownError
from shared.exchange.rest import ExchangeClient
from shared.learn.model import Model
from shared.schemas import binance as b
from shared.schemas import guard as g
from shared.schemas import records as r
from shared.shm.rings import KlineReader
from shared.store.halt import halt_path, load_halt

SIDE_DIRECTION = {"BUY": 1, "SELL": -1}
VIRTUAL_NOTIONAL_USDT = Decimal(1000)
# An entry the exchange does not know is final this long after its intent past the recvWindow
# (no request signed before can be accepted any more); before that it may still be in flight.
NOT_FOUND_MARGIN_MS = 60_000
AWAY_FILLS = 1000  # newest fills per symbol read at start to rebuild trades done while away
AWAY_PREFIX = "away"  # trade id of a rebuilt trade: away_<symbol>_<first fill id>


class PlanUnstoredError(Exception):
    """The entry's ExitPlan could not be stored in Redis; the message says why. Nothing was
    sent."""


class EntryBlockedError(Exception):
    """The entry gate refused the send (halted, or no valid guard lease); the message is the
    reason. Nothing was sent."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def read_windows(
    reader: KlineReader, symbols: tuple[str, ...], minute_ms: int
) -> tuple[list[str], npt.NDArray[np.float64]]:
    """Return the symbols whose shm window ends with the bar opened at `minute_ms`, and those
    windows (n, WINDOW_BARS, 6), copied and validated (a torn or overwritten view is dropped).
    All symbols lined up in the segment (the usual case) are read as one block view."""
    block = reader.block(symbols, fe.WINDOW_BARS)
    if block is not None and (block.rows[:, -1, 0] == minute_ms).all():
        windows = block.rows[:, :, :6].copy()
        stale = set(block.stale())
        if not stale:
            return list(symbols), windows
        keep = [i for i, s in enumerate(symbols) if s not in stale]
        return [symbols[i] for i in keep], windows[keep]
    views = reader.views(symbols, fe.WINDOW_BARS)
    ready = [v for v in views if len(v.rows) == fe.WINDOW_BARS and int(v.rows[-1, 0]) == minute_ms]
    if not ready:
        return [], np.empty((0, fe.WINDOW_BARS, 6))
    windows = np.stack([v.rows[:, :6] for v in ready])  # a copy: safe after validation
    stale = set(reader.validate(ready))
    keep = [i for i, v in enumerate(ready) if v.symbol not in stale]
    return [ready[i].symbol for i in keep], windows[keep]


class MinuteScores:
    """One minute's scores (features, P(long), P(short), close per symbol) from one model,
    built in chunks while the minute's closes arrive, returned in the configured symbol order.

    A feature row depends on its own window only and a prediction on its own row, so chunks give
    exactly the arrays of one batch over the same symbols.
    """

    def __init__(self, symbols: tuple[str, ...]) -> None:
        self.order = {s: i for i, s in enumerate(symbols)}
        self.minute_ms = 0
        self.model: Model | None = None
        self.done: set[str] = set()
        self._chunks: list[tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []

    def add(self, reader: KlineReader, model: Model, minute_ms: int, symbols: Iterable[str]) -> int:
        """Score those of `symbols` not scored yet whose shm window ends with the bar of
        `minute_ms`; return how many. A new minute or another model starts afresh. Raises
        ShmError when the segment is unreadable."""
        if minute_ms != self.minute_ms or model is not self.model:
            self.minute_ms, self.model, self.done, self._chunks = minute_ms, model, set(), []
        todo = tuple(s for s in symbols if s not in self.done and s in self.order)
        if not todo:
            return 0
        ready, windows = read_windows(reader, todo, minute_ms)
        if not ready:
            return 0
        feats = fe.compute_features(windows)
        both = model.predict(np.vstack([model.model_input(feats, 1), model.model_input(feats, -1)]))
        scored = np.column_stack([both[: len(ready)], both[len(ready) :], windows[:, -1, 4]])
        self.done.update(ready)
        self._chunks.append((ready, feats, scored))
        return len(ready)

    def take(self) -> tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Return (symbols, features (n, F), scores (n, 3): P(long), P(short), close) in the
        configured order, and forget them."""
        chunks, self._chunks, self.done = self._chunks, [], set()
        if not chunks:
            return [], np.empty((0, len(fe.FEATURE_NAMES))), np.empty((0, 3))
        symbols = [s for c in chunks for s in c[0]]
        order = np.argsort([self.order[s] for s in symbols], kind="stable")
        feats = np.concatenate([c[1] for c in chunks])[order]
        scored = np.concatenate([c[2] for c in chunks])[order]
        return [symbols[i] for i in order], feats, scored


def _settled(intent: r.OrderIntent, status: str, detail: str) -> r.OrderIntent:
    """Return the intent with its fate recorded now."""
    return msgspec.structs.replace(intent, status=status, detail=detail, updated_ms=_now_ms())


def _best(candidates: list[Candidate]) -> str | None:
    top = max(candidates, key=lambda c: c.confidence, default=None)
    return f"{top.symbol}:{top.side}:{top.confidence:.3f}" if top else None


def signal_id(symbol: str, minute_ms: int, side: str) -> str:
    """Return the signal id of a decision: symbol, minute number and side (`BTCUSDT_29145000_B`).

    Deterministic, so a restarted trader recomputes the same client id for the same decision.
    """
    return f"{symbol}_{minute_ms // 60_000}_{side[0]}"


@dataclass(frozen=True, slots=True)
class OpenTrade:
    """A real position the trader opened and follows until it is closed."""

    signal_id: str
    symbol: str
    side: str
    quantity: Decimal
    entry_price: Decimal
    entry_ms: int
    leverage: int
    confidence: float
    model_version: int
    features: tuple[float, ...]


class Trader:
    """Decisions, entries and the trades they lead to; see the module docstring."""

    def __init__(
        self,
        cfg: Config,
        client: ExchangeClient,
        specs: dict[str, b.SymbolSpec],
        recorder: Recorder,
        cache: Cache,
        models: ModelHolder,
        logger: log.EventLogger,
    ) -> None:
        self.cfg, self.client, self.specs = cfg, client, specs
        self.recorder, self.cache, self.models = recorder, cache, models
        self.log = logger
        self.run_dir = Path(cfg.run.dir)
        # The guard's exit rules with the model's stop and take-profit distances: the plans of
        # entries and the virtual positions' exits.
        self.exits_cfg = replace(
            cfg.exits,
            stop_loss_pct=cfg.model.stop_loss_pct,
            take_profit_pct=cfg.model.take_profit_pct,
        )
        self.symbols = cfg.feed.symbols  # scored; entered only when listed (`specs`)
        unlisted = [s for s in self.symbols if s not in specs]
        if unlisted:
            logger.warning(
                "symbols_not_listed",
                symbols=",".join(unlisted[:10]),
                count=len(unlisted),
                note="scored, never entered",
            )
        self.klines: KlineReader | None = None
        self.open_trades: dict[str, OpenTrade] = {}
        # Entries whose outcome is not known yet, by client id, with their features: asked again
        # every position check until settled; their symbols are not entered meanwhile.
        self.unsettled: dict[str, tuple[r.OrderIntent, tuple[float, ...]]] = {}
        self.exchange_positions: set[str] = set()  # symbols with any position, last REST read
        self.not_found_final_ms = cfg.exchange.recv_window_ms + NOT_FOUND_MARGIN_MS
        self.virtuals: OrderedDict[str, vt.VirtualPosition] = OrderedDict()
        self.brackets: dict[str, b.SymbolBrackets] = {}
        self.prepared: dict[str, int] = {}  # symbol -> leverage set at the exchange
        self.closed_trades = 0  # closed real + virtual trades since start
        self.last_minute_ms = 0
        self.scores = MinuteScores(self.symbols)  # the minute being scored, before its decision
        self.progress: dict[str, int] = {}
        self.stats = {
            "decisions": 0,
            "entries": 0,
            "entry_failures": 0,
            "virtual_opened": 0,
            "virtual_closed": 0,
            "real_closed": 0,
            "skipped_halted": 0,
            "entries_blocked": 0,  # refused by the entry gate (halt flag, guard lease)
        }
        self.gate = EntryGate(self.run_dir, cache, logger, self.stats)
        self.last_latency_ms: float | None = None
        self.equity_usdt: Decimal | None = None  # margin balance, refreshed every position check
        self.win_counts = (0, 0)  # (wins, closed) of the newest 200 closed trades

    # ---- decisions ----------------------------------------------------------------------------

    async def decide(self, minute_ms: int, started_ns: int | None = None) -> None:
        """Score every symbol whose minute `minute_ms` closed and act on the best candidates."""
        model = self.models.current
        if model is None or self.klines is None or minute_ms <= self.last_minute_ms:
            return
        self.score(minute_ms, self.symbols)  # those not scored while the burst arrived
        self.last_minute_ms = minute_ms
        symbols, feats, scored = self.scores.take()
        if not symbols:
            return
        p_long, p_short, closes = scored[:, 0], scored[:, 1], scored[:, 2]
        candidates = [
            c
            for c in candidates_from_probabilities(symbols, p_long, p_short, closes)
            if c.symbol in self.specs
        ]
        score_ms = (time.monotonic_ns() - started_ns) / 1e6 if started_ns is not None else None
        halt = load_halt(halt_path(self.run_dir))
        t = self.cfg.trader
        min_conf = t.relaxed_min_confidence if t.relaxed_signal_mode else t.min_confidence
        max_open = t.max_open_positions if t.enabled else 0
        selection = select_entries(
            candidates, self.busy_symbols(), max_open, min_conf, halt.is_halted
        )
        index = {s: i for i, s in enumerate(symbols)}

        def row(symbol: str) -> tuple[float, ...]:
            return tuple(feats[index[symbol]].tolist())

        self.stats["decisions"] += 1
        self.progress["decision"] = time.monotonic_ns()
        if halt.is_halted and selection.skipped:
            self.stats["skipped_halted"] += 1
        for c in selection.taken:
            await self.enter(c, minute_ms, row(c.symbol), model.version)
            if started_ns is not None:
                self.last_latency_ms = (time.monotonic_ns() - started_ns) / 1e6
        for c, _reason in selection.skipped:
            if c.confidence >= t.virtual_min_confidence:
                self._open_virtual(c, minute_ms, row(c.symbol), model.version)
        self.log.info(
            "decision",
            minute_ms=minute_ms,
            symbols=len(symbols),
            taken=",".join(f"{c.symbol}:{c.side}" for c in selection.taken) or None,
            best=_best(candidates),
            halted=halt.is_halted,
            model_version=model.version,
            score_ms=round(score_ms, 2) if score_ms is not None else None,
        )

    def busy_symbols(self) -> set[str]:
        """Symbols never entered now: an open trade, any exchange position (hand-opened ones
        too), or an entry whose outcome is not settled."""
        pending = {intent.symbol for intent, _ in self.unsettled.values()}
        return set(self.open_trades) | self.exchange_positions | pending

    def score(self, minute_ms: int, symbols: Iterable[str]) -> int:
        """Score the symbols of `minute_ms` that closed and are not scored yet (MinuteScores);
        return how many. Raises ShmError when the segment is unreadable."""
        model = self.models.current
        if model is None or self.klines is None or minute_ms <= self.last_minute_ms:
            return 0
        return self.scores.add(self.klines, model, minute_ms, symbols)

    def _open_virtual(
        self, c: Candidate, minute_ms: int, row: tuple[float, ...], version: int
    ) -> None:
        """Follow an untaken signal with the guard's exit rules, at the minute's close, sized at
        a fixed notional (virtual PnL is a score, not money)."""
        sid = signal_id(c.symbol, minute_ms, c.side)
        if sid in self.virtuals:
            return
        spec = self.specs[c.symbol]
        price = Decimal(repr(c.price))
        qty = filters.floor_to_step(VIRTUAL_NOTIONAL_USDT / price, spec.market_step_size)
        if qty <= 0:
            return
        pos = vt.open_virtual(
            sid,
            c.symbol,
            c.side,
            qty,
            price,
            minute_ms + 60_000,
            c.confidence,
            version,
            row,
            self.exits_cfg,
            spec.tick_size,
            plan=self._plan(c.side, price, spec),
        )
        self.virtuals[sid] = pos
        while len(self.virtuals) > self.cfg.trader.max_virtual_positions:
            self.virtuals.popitem(last=False)
        self.stats["virtual_opened"] += 1

    def _plan(self, side: str, entry: Decimal, spec: b.SymbolSpec) -> ex.Plan:
        """Return the stop and take-profit of an entry: the model's label distances, rounded to
        the tick toward the entry (shared/core/exits.default_plan)."""
        qty = Decimal(1) if side == "BUY" else Decimal(-1)
        holding = ex.Holding(
            symbol=spec.symbol,
            quantity=qty,
            entry_price=entry,
            leverage=1,
            liquidation_price=Decimal(0),
            opened_ms=0,
        )
        return ex.default_plan(holding, self.exits_cfg, spec.tick_size)

    # ---- entries ------------------------------------------------------------------------------

    async def _bracket(self, symbol: str) -> b.SymbolBrackets:
        if symbol not in self.brackets:
            self.brackets[symbol] = await self.client.leverage_brackets(symbol)
        return self.brackets[symbol]

    async def _size(self, c: Candidate, price: Decimal) -> tuple[int, filters.OrderCheck]:
        t = self.cfg.trader
        if self.equity_usdt is None:
            await self.refresh_account()
        equity = self.equity_usdt or Decimal(0)
        open_margin = sum(
            (o.quantity * o.entry_price / o.leverage for o in self.open_trades.values()), Decimal(0)
        )
        tiers = (await self._bracket(c.symbol)).brackets
        rate = sizing.win_rate(*self.win_counts)
        leverage = sizing.leverage_for(
            rate,
            c.confidence,
            t.max_leverage,
            tiers[0].max_leverage,
            self.cfg.model.stop_loss_pct,
            float(tiers[0].maint_margin_rate),
        )
        notional = sizing.position_notional_usdt(
            equity,
            c.confidence,
            leverage,
            open_margin,
            t.base_margin_fraction,
            t.max_position_fraction,
            t.max_total_fraction,
        )
        tier = next(
            (x for x in tiers if x.notional_floor_usdt <= notional < x.notional_cap_usdt), tiers[-1]
        )
        if tier.max_leverage < leverage:  # a bigger position sits in a lower-leverage tier
            leverage = tier.max_leverage
            notional = min(notional, tier.notional_cap_usdt)
        return leverage, filters.entry_quantity(notional, price, self.specs[c.symbol])

    async def _prepare(self, symbol: str, leverage: int) -> None:
        if symbol not in self.prepared:
            await self.client.set_margin_type(symbol, self.cfg.trader.margin_type)
        if self.prepared.get(symbol) != leverage:
            await self.client.set_leverage(symbol, leverage)
            self.prepared[symbol] = leverage

    async def enter(
        self, c: Candidate, minute_ms: int, row: tuple[float, ...], version: int
    ) -> None:
        """Open one position (see the module docstring for the order of the steps)."""
        sid = signal_id(c.symbol, minute_ms, c.side)
        cid = client_order_id(sid, "entry", 0)
        if not (await self.gate.check(c.symbol, cid)).is_allowed:
            return  # nothing done yet; asked again right before the send
        if not await self._is_flat(c.symbol, cid):
            return
        spec = self.specs[c.symbol]
        price = Decimal(repr(c.price))
        try:
            leverage, check = await self._size(c, price)
        except ExchangeError as e:
            self.stats["entry_failures"] += 1
            self.log.warning("entry_skipped", symbol=c.symbol, reason="sizing", error=str(e)[:200])
            return
        if check.problems or check.quantity <= 0:
            self.log.info(
                "entry_skipped",
                symbol=c.symbol,
                reason="filters",
                detail="; ".join(check.problems) or "quantity 0",
            )
            return
        now = _now_ms()
        intent = r.OrderIntent(
            client_id=cid,
            signal_id=sid,
            symbol=c.symbol,
            side=c.side,
            quantity=check.quantity,
            leverage=leverage,
            confidence=c.confidence,
            model_version=version,
            status="intent",
            detail="",
            created_ms=now,
            updated_ms=now,
        )
        plan = self._plan(c.side, price, spec)
        # The intent record, the leverage and the ExitPlan are independent of each other; all
        # three are done (or the entry is abandoned) before the order is sent.
        steps = await asyncio.gather(
            self.recorder.record(intent),  # never lost: the outbox takes it during an outage
            self._prepare(c.symbol, leverage),
            self._publish_plan(c.symbol, sid, cid, c.side),
            return_exceptions=True,
        )
        failed = next((e for e in steps if isinstance(e, BaseException)), None)
        try:
            if failed is not None:
                raise failed
            order = await self._send_entry(c.symbol, c.side, check.quantity, cid)
        except EntryBlockedError as e:  # logged by the gate
            await self.recorder.record(_settled(intent, "rejected", f"entry_blocked: {e}"))
            await self._withdraw_plan(cid)
            return
        except PlanUnstoredError as e:  # no entry without its plan (module docstring, step 3)
            self.stats["entry_failures"] += 1
            self.log.warning(
                "exit_plan_unstored",
                symbol=c.symbol,
                client_id=cid,
                action="entry_not_sent",
                error=str(e)[:200],
            )
            await self.recorder.record(_settled(intent, "rejected", "exit_plan_unstored"))
            return
        except ExecutionUnknownError as e:  # sent, and even the look-up failed
            order, unknown = None, str(e)[:300]
        except ExchangeError as e:
            self.stats["entry_failures"] += 1
            self.log.warning("entry_failed", symbol=c.symbol, client_id=cid, error=str(e)[:300])
            await self.recorder.record(_settled(intent, "rejected", str(e)[:300]))
            await self._withdraw_plan(cid)
            return
        else:
            unknown = "not found at the exchange yet"
        outcome = oc.entry_outcome(order, now, _now_ms(), self.not_found_final_ms)
        if outcome == "unknown":
            await self._keep_unknown(intent, row, order.status if order else unknown)
            return
        if outcome == "rejected" or order is None:
            status = order.status if order else "not found at the exchange"
            await self.recorder.record(_settled(intent, "rejected", status))
            self.log.warning("entry_not_filled", symbol=c.symbol, client_id=cid, status=status)
            return
        await self._record_fill(intent, order, row, "")
        self.log.info(
            "order_filled",
            symbol=c.symbol,
            side=c.side,
            qty=order.executed_qty,
            price=order.avg_price,
            leverage=leverage,
            confidence=round(c.confidence, 4),
            client_id=cid,
            stop=plan.stop_price,
            take_profit=plan.take_profit_price,
        )

    async def _is_flat(self, symbol: str, cid: str) -> bool:
        """True when the exchange shows no position in `symbol` now (nor an unsettled entry of
        ours): a position opened by hand or by an entry whose record was lost is never added to."""
        pending = [i.client_id for i, _ in self.unsettled.values() if i.symbol == symbol]
        if pending:
            self.log.info(
                "entry_skipped", symbol=symbol, reason="unsettled_entry", pending=pending[0]
            )
            return False
        try:
            amount = sum((p.amount for p in await self.client.position_risk(symbol)), Decimal(0))
        except ExchangeError as e:
            self.stats["entry_failures"] += 1
            self.log.warning(
                "entry_skipped", symbol=symbol, reason="position_unknown", error=str(e)[:200]
            )
            return False
        if amount != 0:
            self.exchange_positions.add(symbol)
            self.log.warning(
                "entry_skipped", symbol=symbol, reason="position_open", amount=amount, client_id=cid
            )
            return False
        return True

    async def _keep_unknown(self, intent: r.OrderIntent, row: tuple[float, ...], why: str) -> None:
        """Record an entry whose outcome is not known as `unknown`; asked again until settled."""
        self.unsettled[intent.client_id] = (intent, row)
        await self.recorder.record(_settled(intent, "unknown", why[:300]))
        self.log.warning(
            "entry_unknown", symbol=intent.symbol, client_id=intent.client_id, detail=why[:300]
        )

    async def _record_fill(
        self, intent: r.OrderIntent, order: b.Order, row: tuple[float, ...], detail: str
    ) -> OpenTrade:
        """Record a filled entry (intent filled, the open trade, its position entry) and follow
        it as an open trade; return it."""
        self.progress["order"] = time.monotonic_ns()
        self.stats["entries"] += 1
        trade = OpenTrade(
            intent.signal_id,
            intent.symbol,
            intent.side,
            order.executed_qty,
            order.avg_price,
            order.update_time_ms,
            intent.leverage,
            intent.confidence,
            intent.model_version,
            row,
        )
        self.open_trades[intent.symbol] = trade
        await self.recorder.record(_settled(intent, "filled", detail))
        await self.recorder.record(self._trade_record(trade))
        await self.recorder.record(
            r.PositionEntry(
                symbol=intent.symbol, signal_id=intent.signal_id, entry_ms=order.update_time_ms
            )
        )
        return trade

    async def settle_unknown(self) -> None:
        """Ask the exchange again about each entry whose outcome is unknown: a fill becomes an
        open trade (closed by the next position check if the position is already gone), a
        final refusal or an order still unknown past its recvWindow is rejected; anything else
        stays unknown for the next call."""
        for cid, (intent, row) in list(self.unsettled.items()):
            try:
                order = await self.client.fetch_order_by_client_id(intent.symbol, cid)
            except ExchangeError as e:
                self.log.info("entry_still_unknown", client_id=cid, error=str(e)[:200])
                continue
            outcome = oc.entry_outcome(order, intent.created_ms, _now_ms(), self.not_found_final_ms)
            if outcome == "unknown":
                continue
            del self.unsettled[cid]
            if outcome == "filled" and order is not None:
                await self._record_fill(intent, order, row, "settled after an unknown outcome")
                self.log.warning(
                    "entry_settled",
                    symbol=intent.symbol,
                    client_id=cid,
                    outcome=outcome,
                    qty=order.executed_qty,
                    price=order.avg_price,
                )
                continue
            status = order.status if order else "not found at the exchange"
            await self.recorder.record(_settled(intent, "rejected", f"settled: {status}"))
            self.log.warning(
                "entry_settled", symbol=intent.symbol, client_id=cid, outcome=outcome, status=status
            )

    async def _publish_plan(self, symbol: str, sid: str, cid: str, side: str) -> None:
        """Store the ExitPlan of the entry `cid` (Redis hash field = its client id): the model's
        stop and take-profit distances, from which the guard derives the levels at the fill
        price. Raises PlanUnstoredError when Redis does not take it."""
        exit_plan = g.ExitPlan(
            symbol=symbol,
            client_id=cid,
            signal_id=sid,
            side=side,
            stop_loss_pct=Decimal(str(self.exits_cfg.stop_loss_pct)),
            take_profit_pct=Decimal(str(self.exits_cfg.take_profit_pct)),
            created_ms=_now_ms(),
        )
        try:
            await self.cache.set_field(self.cache.keys.exit_plans(), cid, g.encode(exit_plan))
        except CacheUnavailableError as e:
            raise PlanUnstoredError(str(e)) from e

    async def _withdraw_plan(self, cid: str) -> None:
        """Remove the ExitPlan of an entry that was not sent or not filled (tidiness: it could
        bind to no other order's fill)."""
        try:
            await self.cache.set_field(self.cache.keys.exit_plans(), cid, None)
        except CacheUnavailableError as e:
            self.log.warning("exit_plan_not_removed", client_id=cid, error=str(e)[:200])

    async def _send_entry(self, symbol: str, side: str, qty: Decimal, cid: str) -> b.Order | None:
        """Send an entry order if the entry gate allows it now; raises EntryBlockedError when it
        does not, ExchangeError when the exchange refuses. Every entry goes out through here."""
        gate = await self.gate.check(symbol, cid)  # right before the send (issue 13, 1 and 11)
        if not gate.is_allowed:
            raise EntryBlockedError(gate.reason)
        # No look-up before the send: a minute is decided once per process (the bus delivers its
        # closes once), and a restarted trader settles the intents it recorded (_settle_intents).
        # An outcome the look-up cannot tell either raises ExecutionUnknownError.
        try:
            return await self.client.new_order(symbol, side, "MARKET", qty, cid)
        except ExecutionUnknownError as sent:
            try:
                return await self.client.fetch_order_by_client_id(symbol, cid)
            except ExchangeError as e:
                raise ExecutionUnknownError(f"{sent}; look-up: {e}") from e

    def _trade_record(self, t: OpenTrade) -> r.TradeRecord:
        return r.TradeRecord(
            trade_id=t.signal_id,
            is_virtual=False,
            symbol=t.symbol,
            side=t.side,
            quantity=t.quantity,
            entry_price=t.entry_price,
            entry_ms=t.entry_ms,
            confidence=t.confidence,
            model_version=t.model_version,
            feature_schema=fe.FEATURE_SCHEMA,
            features=t.features,
        )

    # ---- closes -------------------------------------------------------------------------------

    async def refresh_account(self) -> None:
        """Refresh equity, the win statistics and the positions; record the trades whose position
        the exchange no longer shows (closed by the guard or the exchange stop)."""
        known = dict(self.open_trades)  # a trade entered while the call is out is not judged
        account = await self.client.account()
        self.equity_usdt = account.margin_balance_usdt
        self.win_counts = await self.recorder.win_stats(200)
        positions = {p.symbol: p.amount for p in account.positions}
        self.exchange_positions = {s for s, amount in positions.items() if amount != 0}
        for symbol, trade in known.items():
            if positions.get(symbol, Decimal(0)) != 0 or self.open_trades.get(symbol) is not trade:
                continue
            await self._record_close(trade)
            self.open_trades.pop(symbol, None)

    async def _funding(self, symbol: str, start_ms: int, end_ms: int) -> Decimal:
        """Return the funding the position received (+) or paid (-) while it was open (income
        FUNDING_FEE rows of the symbol; one position per symbol, so all of them are its)."""
        try:
            rows = await self.client.income(symbol, "FUNDING_FEE", start_ms, end_ms, 1000)
        except ExchangeError as e:  # the trade is recorded anyway; the daily audit shows the gap
            self.log.warning("funding_unknown", symbol=symbol, error=str(e)[:200])
            return Decimal(0)
        return sum((row.amount for row in rows), Decimal(0))

    async def _exit_reason(self, trade: OpenTrade) -> str:
        try:
            raw = await self.cache.get_fields(self.cache.keys.exit_reasons())
        except CacheUnavailableError:
            return "unknown"
        note = raw.get(trade.symbol, b"").decode(errors="replace")
        sid, _, reason = note.partition(" ")
        return reason if sid == trade.signal_id and reason else "exchange_or_external"

    async def _record_close(self, trade: OpenTrade) -> None:
        fills = await self.client.user_trades(trade.symbol, start_ms=trade.entry_ms - 1000)
        closing = "SELL" if trade.side == "BUY" else "BUY"
        exits_ = [f for f in fills if f.side == closing and f.time_ms >= trade.entry_ms]
        qty = sum((f.quantity for f in exits_), Decimal(0))
        if qty > 0:
            vwap = sum((f.price * f.quantity for f in exits_), Decimal(0)) / qty
            price = vwap.quantize(self.specs[trade.symbol].tick_size / 100)
            exit_ms = max(f.time_ms for f in exits_)
        else:
            price, exit_ms = trade.entry_price, _now_ms()
        fees = sum((f.commission for f in fills if f.time_ms >= trade.entry_ms), Decimal(0))
        gross = sum((f.realized_pnl for f in exits_), Decimal(0))
        funding = await self._funding(trade.symbol, trade.entry_ms, exit_ms)
        net = gross - fees + funding
        reason = await self._exit_reason(trade)
        rec = msgspec.structs.replace(
            self._trade_record(trade),
            exit_price=price,
            exit_ms=exit_ms,
            exit_reason=reason,
            gross_pnl_usdt=gross,
            fees_usdt=fees,
            funding_usdt=funding,
            net_pnl_usdt=net,
            is_win=net > 0,
        )
        await self.recorder.record(rec)
        self.closed_trades += 1
        self.stats["real_closed"] += 1
        self.log.info(
            "trade_closed",
            symbol=trade.symbol,
            side=trade.side,
            reason=reason,
            entry=trade.entry_price,
            exit=price,
            net_pnl=net,
            signal_id=trade.signal_id,
        )

    # ---- virtual positions --------------------------------------------------------------------

    async def step_virtuals(self) -> None:
        """Apply the latest shm marks to every virtual position; record the closed ones."""
        if self.klines is None or not self.virtuals:
            return
        fee = Decimal(repr(self.cfg.trader.taker_fee_rate))
        for sid, pos in list(self.virtuals.items()):
            mark = self.klines.mark(pos.symbol)
            if mark is None or mark.price <= 0:
                continue
            spec = self.specs[pos.symbol]
            # The mark's own time (the exchange's clock; the paper exchange's may run faster).
            kept, closed = vt.step_virtual(
                pos,
                Decimal(repr(mark.price)),
                mark.time_ms,
                None,
                self.exits_cfg,
                spec.tick_size,
                spec.market_step_size,
                fee,
            )
            if kept is not None:
                self.virtuals[sid] = kept
                continue
            del self.virtuals[sid]
            if closed is not None:
                await self.recorder.record(closed_record(closed))
                self.closed_trades += 1
                self.stats["virtual_closed"] += 1
                self.log.info(
                    "virtual_closed",
                    symbol=closed.symbol,
                    side=closed.side,
                    reason=closed.reason,
                    net_pnl=closed.net_pnl_usdt,
                    signal_id=closed.signal_id,
                )

    # ---- start --------------------------------------------------------------------------------

    async def _settle_intents(self, positions: dict[str, b.Position]) -> None:
        """Ask the exchange what became of each entry not settled before a restart (recorded as
        intent, sent or unknown): a fill is recorded as a trade (adopted if its position is still
        open, else closed by reconcile from its fills); a refusal, or an order the exchange does
        not know once its recvWindow has passed, is rejected; any other stays unknown and is
        asked again every position check (settle_unknown). Never re-sent."""
        for intent in await self.recorder.db.unsettled_intents():
            try:
                order = await self.client.fetch_order_by_client_id(intent.symbol, intent.client_id)
            except ExchangeError as e:
                order, why = None, f"look-up failed at restart: {e}"
            else:
                why = "not found at the exchange yet"
            outcome = oc.entry_outcome(order, intent.created_ms, _now_ms(), self.not_found_final_ms)
            if outcome == "unknown":
                await self._keep_unknown(intent, (), order.status if order else why)
                continue
            if outcome == "rejected" or order is None:
                status = order.status if order else "not found at the exchange"
                await self.recorder.record(
                    _settled(intent, "rejected", f"settled at restart: {status}")
                )
                continue
            await self.recorder.record(_settled(intent, "filled", "settled at restart"))
            trade = await self.recorder.db.load_trade(intent.signal_id)
            if trade is None:
                self.log.info(
                    "entry_adopted",
                    symbol=intent.symbol,
                    client_id=intent.client_id,
                    is_open=intent.symbol in positions,
                )
                await self.recorder.record(
                    r.TradeRecord(
                        trade_id=intent.signal_id,
                        is_virtual=False,
                        symbol=intent.symbol,
                        side=intent.side,
                        quantity=order.executed_qty,
                        entry_price=order.avg_price,
                        entry_ms=order.update_time_ms,
                        confidence=intent.confidence,
                        model_version=intent.model_version,
                        feature_schema=fe.FEATURE_SCHEMA,
                        features=(),
                    )
                )

    async def _rebuild_away_trades(self, positions: dict[str, b.Position]) -> int:
        """Record the round trips in each listed symbol's newest fills (userTrades) that no
        trade record covers: positions opened and closed while the trader was away, by an
        entry whose record was lost or by hand. Idempotent (the trade id is derived from the
        opening fill). Return how many were recorded."""
        rebuilt = 0
        for symbol in self.specs:
            fills = await self.client.user_trades(symbol, limit=AWAY_FILLS)
            held = positions[symbol].amount if symbol in positions else Decimal(0)
            for trip in oc.round_trips(fills, held):
                known = await self.recorder.db.real_trades_between(
                    symbol, trip.opened_ms - 2_000, trip.closed_ms
                )
                trade_id = f"{AWAY_PREFIX}_{symbol}_{trip.first_trade_id}"
                if any(t.trade_id != trade_id for t in known):
                    continue  # the trader's own trade (entered at that fill), already recorded
                if any(t.is_closed for t in known):
                    continue  # rebuilt by an earlier start
                await self._record_away(trip, trade_id)
                rebuilt += 1
        return rebuilt

    async def _record_away(self, trip: oc.RoundTrip, trade_id: str) -> None:
        funding = await self._funding(trip.symbol, trip.opened_ms, trip.closed_ms)
        net = trip.gross_pnl_usdt - trip.fees_usdt + funding
        tick = self.specs[trip.symbol].tick_size / 100
        await self.recorder.record(
            r.TradeRecord(
                trade_id=trade_id,
                is_virtual=False,
                symbol=trip.symbol,
                side=trip.side,
                quantity=trip.quantity,
                entry_price=trip.entry_price.quantize(tick),
                entry_ms=trip.opened_ms,
                exit_price=trip.exit_price.quantize(tick),
                exit_ms=trip.closed_ms,
                exit_reason="while_trader_away",
                gross_pnl_usdt=trip.gross_pnl_usdt,
                fees_usdt=trip.fees_usdt,
                funding_usdt=funding,
                net_pnl_usdt=net,
                is_win=net > 0,
                confidence=0.0,
                model_version=0,
                feature_schema=fe.FEATURE_SCHEMA,
                features=(),
            )
        )
        self.closed_trades += 1
        self.log.warning(
            "trade_rebuilt",
            symbol=trip.symbol,
            side=trip.side,
            qty=trip.quantity,
            entry=trip.entry_price,
            exit=trip.exit_price,
            net_pnl=net,
            trade_id=trade_id,
        )

    async def reconcile(self) -> None:
        """Adopt the open trades recorded before a restart whose positions are still open at the
        exchange; record as closed those that closed while the trader was away (rule 18)."""
        positions = {p.symbol: p for p in await self.client.position_risk() if p.amount != 0}
        await self._settle_intents(positions)
        for rec in await self.recorder.open_trades():
            trade = OpenTrade(
                rec.trade_id,
                rec.symbol,
                rec.side,
                rec.quantity,
                rec.entry_price,
                rec.entry_ms,
                1,
                rec.confidence,
                rec.model_version,
                tuple(rec.features),
            )
            if rec.symbol in positions:
                self.open_trades[rec.symbol] = trade
            else:
                await self._record_close(trade)
        self.exchange_positions = set(positions)
        rebuilt = await self._rebuild_away_trades(positions)
        self.log.info(
            "trader_reconciled",
            open_trades=len(self.open_trades),
            exchange_positions=len(positions),
            unknown_entries=len(self.unsettled),
            rebuilt_trades=rebuilt,
        )


def closed_record(c: vt.ClosedTrade) -> r.TradeRecord:
    """Return the PostgreSQL row of a closed (real or virtual) trade."""
    return r.TradeRecord(
        trade_id=c.signal_id,
        is_virtual=c.is_virtual,
        symbol=c.symbol,
        side=c.side,
        quantity=c.quantity,
        entry_price=c.entry_price,
        entry_ms=c.opened_ms,
        exit_price=c.exit_price,
        exit_ms=c.closed_ms,
        exit_reason=c.reason,
        gross_pnl_usdt=c.gross_pnl_usdt,
        fees_usdt=c.fees_usdt,
        funding_usdt=Decimal(0),
        net_pnl_usdt=c.net_pnl_usdt,
        is_win=c.is_win,
        confidence=c.confidence,
        model_version=c.model_version,
        feature_schema=fe.FEATURE_SCHEMA,
        features=tuple(c.features),
    )
