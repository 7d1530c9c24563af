"""The position-guard (supervisord program `guard`, `python -m procs.guard [--mode paper|live]`):
the error kernel. Every open position has a closePosition STOP_MARKET resting at the exchange and
is watched against the exit rules; silence flattens (the dead-man's switch).

Subscribes to: the account's user-data stream (its own connection), `mark.*` and `marks.*` on
the feed's ZeroMQ bus, the shared-memory marks, kline windows and heartbeat table; REST for
reconciliation, and for marks and positions while the feed is silent (`guard.feed_silent_after_s`)
or its marks are stale (`guard.marks_stale_after_s`: a stalled socket leaves the feed beating).
None of these is a start-up dependency: without Redis, ZeroMQ or the feed it runs on REST alone.
Publishes: the halt flag (`<run.dir>/guard/halt.json`, mirrored in Redis), alerts (Redis stream +
ERROR `alert` log lines), its heartbeat slot `guard` (progress: reconcile, mark, order), the entry
lease (Redis `Keys.guard_lease`, procs/guard/lease.py: renewed after each full reconcile that found
every position's resting stop, deleted when one lacks it and at a stop; no lease, no entry).
Owns: the protective stops (client ids `slt-<signal>-stop-<n>`), exit and flatten orders.

Start: exchange filters, the account's position mode (hedge mode is refused: exit 2, every rule
assumes one-way mode; an exchange that does not answer is asked again at each reconcile), the
positions file (`<run.dir>/guard/positions.json`: each position's plan, trail, partial taken and
opening time, restored for the same position), then a full reconciliation (positions, open and
algo orders) before any other action; a position it did not open, and for which no record
matches, is adopted with the default plan, protected, alerted.
SIGTERM (supervisorctl stop/restart) never flattens: the exchange call in flight finishes, the
stops stay at the exchange, exit code 0. Exit codes: 0 clean stop, 2 configuration error, 1 fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

from procs.guard.lease import LeaseKeeper
from procs.guard.logic.silence import Liveness, silence_decision
from procs.guard.state import Guard
from shared import log
from shared.bus import BusError, Subscriber, bus_endpoint
from shared.cache import Cache, redis_url
from shared.config import Config, ConfigError
from shared.exchange.errors import ExchangeError
from shared.exchange.rest import ExchangeClient, load_specs
from shared.exchange.userstream import UserDataStream
from shared.process import cancel_tasks, process_main, wait_tasks
from shared.schemas import binance as b
from shared.schemas import bus
from shared.shm.heartbeat import HeartbeatReader, HeartbeatWriter, run_heartbeat
from shared.shm.mirror import mirror_heartbeat
from shared.shm.rings import KlineColumn, KlineReader
from shared.shm.segment import SegmentMissingError, ShmError
from shared.store.alerts import Alerter

PROCESS = "guard"
TREND_REFRESH_S = 10.0
STATS_INTERVAL_S = 60.0
RECONCILE_DEBOUNCE_S = 0.02
UNSETTLED_RECHECK_S = 0.5  # a symbol a snapshot did not settle (stale, first flat) is read again
WATCHDOG_SILENT_INTERVALS = 10  # watchdog heartbeats missed before the guard alerts


def _mono_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class Sources:
    """Where the guard's inputs come from, and how fresh each is."""

    def __init__(self, guard: Guard, instance: str, cfg: Config, logger: log.EventLogger) -> None:
        self.guard, self.instance, self.cfg, self.log = guard, instance, cfg, logger
        self.started_ms = _mono_ms()
        self.feed_last_ms: int | None = None
        self.trader_last_ms: int | None = None
        self.watchdog_last_ms: int | None = None  # None: not seen since our start (not deployed)
        # symbol -> (event time ms of the newest streamed mark, monotonic ms it arrived): REST
        # marks do not count here, so REST mode ends only when the streams bring prices again.
        self.stream_marks: dict[str, tuple[int, int]] = {}
        self.klines: KlineReader | None = None
        self.beats: HeartbeatReader | None = None

    async def bus_marks(self) -> None:
        """Apply every `mark.*` and `marks.*` message of the feed's bus (event-driven exits)."""
        endpoint = self.cfg.guard.bus_endpoint or bus_endpoint(self.instance, "feed")
        try:
            sub = Subscriber([endpoint], ["mark.", "marks."], process=PROCESS)
        except BusError as e:
            self.log.warning("bus_unavailable", error=str(e))
            return
        with sub:
            while True:
                received = await sub.receive(1.0)
                if received is None:
                    continue
                m = received.payload
                if isinstance(m, bus.Marks):
                    marks: Iterable[bus.MarkPrice | bus.MarkEntry] = m.marks
                elif isinstance(m, bus.MarkPrice):
                    marks = (m,)
                else:
                    continue
                self.feed_last_ms = _mono_ms()
                for mark in marks:
                    self._note_stream_mark(mark.symbol, mark.ts_ms)
                    await self.guard.exits.on_mark(
                        mark.symbol, Decimal(repr(mark.price)), mark.ts_ms
                    )

    def _note_stream_mark(self, symbol: str, event_ms: int) -> None:
        """Record a streamed mark; it counts as fresh only when newer than the last streamed."""
        last = self.stream_marks.get(symbol)
        if last is None or event_ms > last[0]:
            self.stream_marks[symbol] = (event_ms, _mono_ms())

    def stream_mark_last_ms(self) -> int | None:
        """Return the oldest, over the open positions, of the last arrival of a newer streamed
        mark (None when one of them never had one)."""
        seen = [self.stream_marks.get(s) for s in self.guard.book.holdings]
        if any(v is None for v in seen):
            return None
        return min((v[1] for v in seen if v is not None), default=None)

    def _attach(self) -> None:
        if self.klines is None:
            with contextlib.suppress(SegmentMissingError, ShmError):
                self.klines = KlineReader(self.instance)
        if self.beats is None:
            with contextlib.suppress(SegmentMissingError, ShmError):
                self.beats = HeartbeatReader(self.instance)

    def _read_beats(self) -> None:
        if self.beats is None:
            return
        try:
            beats = self.beats.read()
        except ShmError:
            return
        for name, attr in (
            ("feed", "feed_last_ms"),
            ("trader", "trader_last_ms"),
            ("watchdog", "watchdog_last_ms"),
        ):
            beat = beats.get(name)
            if beat is not None and beat.monotonic_ns > 0:
                seen = beat.monotonic_ns // 1_000_000
                if seen >= self.started_ms:  # a beat from before our start says nothing now
                    setattr(self, attr, max(seen, getattr(self, attr) or 0))

    async def _shm_marks(self, refresh_trends: bool) -> None:
        if self.klines is None:
            return
        symbols = [s for s in self.guard.book.holdings if s in self.klines.symbols]
        try:
            for s in symbols:
                mark = self.klines.mark(s)
                if mark is not None:
                    self._note_stream_mark(s, mark.time_ms)
                    await self.guard.exits.on_mark(s, Decimal(repr(mark.price)), mark.time_ms)
            if refresh_trends:
                bars = self.cfg.exits.counter_trend_slow_bars * 2
                self.guard.exits.update_trends(
                    {s: self.klines.window(s, bars)[:, KlineColumn.CLOSE] for s in symbols}
                )
        except ShmError as e:
            self.log.warning("shm_read_failed", error=str(e)[:200])

    async def check(self) -> None:
        """Every check interval: shm marks, time-based exits, the silence policy."""
        g = self.cfg.guard
        next_trend_s = 0.0
        while True:
            await asyncio.sleep(g.check_interval_s)
            self._attach()
            self._read_beats()
            now_s = time.monotonic()
            await self._shm_marks(refresh_trends=now_s >= next_trend_s)
            if now_s >= next_trend_s:
                next_trend_s = now_s + TREND_REFRESH_S
            for symbol in list(self.guard.book.holdings):
                await self.guard.exits.evaluate(symbol)  # time stops fire without a new mark
            live = Liveness(
                now_ms=_mono_ms(),
                started_ms=self.started_ms,
                feed_last_ms=self.feed_last_ms,
                trader_last_ms=self.trader_last_ms,
                mark_last_ms=self.guard.exits.mark_fresh_mono_ms,
                has_positions=bool(self.guard.book.holdings),
                stream_mark_last_ms=self.stream_mark_last_ms(),
            )
            await self.guard.safety.apply_silence(silence_decision(live, g, self.cfg.dms))
            await self._check_watchdog(live.now_ms)

    async def _check_watchdog(self, now_ms: int) -> None:
        """Rule 12: a watchdog that beat since our start and went silent is alerted (nobody
        restarts hung programs meanwhile); the guard itself does not depend on it."""
        if self.watchdog_last_ms is None:
            return
        age_s = (now_ms - self.watchdog_last_ms) / 1000
        if age_s > WATCHDOG_SILENT_INTERVALS * self.cfg.watchdog.heartbeat_interval_s:
            await self.guard.alerter.send(
                "watchdog_silent",
                f"the watchdog has not beaten for {age_s:.1f} s; hung "
                "programs are not restarted until it is back",
            )

    async def rest_poll(self) -> None:
        """While in REST mode: marks of the open positions over REST (weight 1 each). They keep
        the blind check of the dead-man's switch satisfied, never the streamed-marks check."""
        while True:
            await asyncio.sleep(self.cfg.guard.rest_poll_interval_s)
            if not self.guard.safety.is_rest_mode:
                continue
            for symbol in list(self.guard.book.holdings):
                try:
                    marks = await self.guard.client.mark_prices(symbol)
                except ExchangeError as e:
                    self.log.warning("rest_mark_failed", symbol=symbol, error=str(e)[:200])
                    continue
                for m in marks:
                    await self.guard.exits.on_mark(m.symbol, m.mark_price, m.time_ms)


RECONCILE_WEIGHT = 50  # positionRisk 5 + openAlgoOrders (all symbols) 40 + account 5


def warn_weight_budget(cfg: Config, logger: log.EventLogger) -> None:
    """Log a WARNING when periodic full reconciles alone would spend more request weight per
    minute than the guard's reserved share (the guard may still use the shared pool)."""
    per_min = RECONCILE_WEIGHT * 60 / cfg.guard.reconcile_interval_s
    reserved = cfg.exchange.weight_limit_1m * cfg.exchange.guard_reserved_share
    if per_min > reserved:
        logger.warning(
            "guard_weight_budget_exceeded",
            reconcile_weight_per_min=round(per_min),
            reserved_per_min=round(reserved),
            note="raise guard.reconcile_interval_s or exchange.guard_reserved_share",
        )


def rest_mode_reconcile_interval_s(cfg: Config) -> float:
    """Return the full-reconcile interval in REST mode: every two REST polls, but never more
    weight per minute than the guard's reserved share. Faster, the reconciles spent the whole
    IP budget and held back the REST marks for seconds, the marks that keep the dead-man's
    blind flatten away while the streams stall (issue 13, hole 14)."""
    reserved_per_min = cfg.exchange.weight_limit_1m * cfg.exchange.guard_reserved_share
    within_share_s = RECONCILE_WEIGHT * 60 / reserved_per_min if reserved_per_min > 0 else 0.0
    return max(2 * cfg.guard.rest_poll_interval_s, within_share_s)


async def check_position_mode(client: ExchangeClient, logger: log.EventLogger) -> bool:
    """Return True when the account is in one-way mode, False when the exchange did not answer
    (the caller asks again later). Raises ConfigError in hedge mode: every rule assumes one
    position per symbol (closePosition stops, reduce-only closes without positionSide)."""
    try:
        is_hedge = await client.is_hedge_mode()
    except ExchangeError as e:
        logger.warning("position_mode_unknown", error=str(e)[:300])
        return False
    if is_hedge:
        raise ConfigError(
            "config: the account is in hedge mode (dualSidePosition=true) and the guard "
            "supports one-way mode only; switch it to one-way mode (POST "
            "/fapi/v1/positionSide/dual dualSidePosition=false) and start the guard again"
        )
    return True


async def reconcile(guard: Guard, lease: LeaseKeeper, margins: dict[str, Decimal]) -> None:
    """Reconcile every symbol, then renew the entry lease if it answered (no reconcile error
    counted meanwhile, a conservative test) and every position has its resting stop, else
    revoke it."""
    errors = guard.stats["errors"]
    await guard.reconcile(margins=margins)
    await lease.after_reconcile(guard.book, is_reconciled=guard.stats["errors"] == errors)


async def reconcile_loop(
    guard: Guard,
    lease: LeaseKeeper,
    cfg: Config,
    logger: log.EventLogger,
    is_one_way: bool,
) -> None:
    """Full reconciliation (and the entry lease) and the kill switch's equity check, every
    reconcile interval (faster in REST mode, when no user-data event may be trusted to
    arrive); the position mode until the exchange has answered it once (ConfigError in hedge
    mode ends the guard)."""
    while True:
        if not is_one_way:
            is_one_way = await check_position_mode(guard.client, logger)
        try:
            account = await guard.client.account()
        except ExchangeError as e:
            logger.warning("account_failed", error=str(e)[:300])
            account = None
        margins = {p.symbol: p.initial_margin_usdt for p in account.positions} if account else {}
        await reconcile(guard, lease, margins)
        if account is not None:
            await guard.safety.check_equity(account)
        interval = cfg.guard.reconcile_interval_s
        if guard.safety.is_rest_mode:
            interval = min(interval, rest_mode_reconcile_interval_s(cfg))
        await asyncio.sleep(interval)


async def user_events(
    guard: Guard,
    stream: UserDataStream,
    logger: log.EventLogger,
    pending: set[str],
    wake: asyncio.Event,
) -> None:
    """React to fills, closes, cancelled stops and margin calls at once: reconcile the symbol
    concerned (a margin call is also alerted, and its mark judged by the exit rules)."""
    while True:
        item = await stream.get()
        guard.progress["user_data"] = time.monotonic_ns()
        data = getattr(item, "data", None)
        if data is None:
            continue  # a Gap: the reconnect's resync reconciled everything
        try:
            event = b.decode_event(data)
        except ValueError as e:  # msgspec errors included
            logger.warning("bad_message", reason=str(e)[:200], head=data[:200])
            continue
        for symbol in _event_symbols(event):  # REST reads started before now are stale there
            guard.keeper.note_event(symbol)
        if isinstance(event, b.AccountUpdate):
            guard.safety.note_account_update(event.reason)  # a transfer: net it before a trip
            for p in event.positions:  # a fill: the resting stop first, the REST check next
                await guard.protect_fill(
                    p.symbol, p.amount, p.entry_price, event.transaction_time_ms
                )
                pending.add(p.symbol)
        elif isinstance(event, (b.OrderUpdate, b.AlgoUpdate)):
            pending.add(event.symbol)
        elif isinstance(event, b.MarginCall):
            for m in event.positions:  # liquidation is near: say so, and judge it now
                await guard.alerter.send(
                    "margin_call",
                    f"margin call on {m.symbol}: position {m.amount} at mark "
                    f"{m.mark_price}, maintenance margin {m.maintenance_margin}, unrealized "
                    f"{m.unrealized_pnl}; liquidation is near",
                    m.symbol,
                )
                await guard.exits.on_mark(m.symbol, m.mark_price, event.event_time_ms)
                pending.add(m.symbol)
        wake.set()


def _event_symbols(event: object) -> list[str]:
    """Return the symbols a decoded user-data event concerns."""
    if isinstance(event, (b.AccountUpdate, b.MarginCall)):
        return [p.symbol for p in event.positions]
    if isinstance(event, (b.OrderUpdate, b.AlgoUpdate)):
        return [event.symbol]
    return []


async def reconcile_pending(guard: Guard, pending: set[str], wake: asyncio.Event) -> None:
    """Reconcile the symbols user-data events touched, off the event loop's reading path (a
    burst of events for one symbol costs one reconcile); read again, shortly after, the symbols
    a snapshot did not settle (read before an event, or a first flat read)."""
    while True:
        if guard.keeper.unsettled:  # whatever else happens, read those again soon
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), UNSETTLED_RECHECK_S)
            pending.update(guard.keeper.unsettled)
        else:
            await wake.wait()
        # The events of one fill arrive as several frames: let the position's own event take
        # the fast path (protect_fill) before a reconcile holds the lock for four round trips.
        await asyncio.sleep(RECONCILE_DEBOUNCE_S)
        wake.clear()
        while pending:
            await guard.reconcile(pending.pop())


async def log_stats(guard: Guard, sources: Sources, logger: log.EventLogger) -> None:
    while True:
        await asyncio.sleep(STATS_INTERVAL_S)
        now = _mono_ms()
        logger.info(
            "guard_stats",
            positions=len(guard.book.holdings),
            rest_mode=guard.safety.is_rest_mode,
            halted=guard.safety.halt.is_halted,
            halt_reason=guard.safety.halt.reason or None,
            feed_age_s=round((now - (sources.feed_last_ms or sources.started_ms)) / 1000, 1),
            **guard.stats,
        )


async def serve(cfg: Config, instance: str, logger: log.EventLogger, stop: asyncio.Event) -> None:
    """Run the guard until `stop` is set; then let the exchange call in flight finish."""
    guard_progress: dict[str, int] = {}
    heartbeat = HeartbeatWriter(instance, PROCESS)
    beating = asyncio.get_running_loop().create_task(
        run_heartbeat(heartbeat, cfg.guard.heartbeat_interval_s, lambda: dict(guard_progress))
    )
    cache = Cache(redis_url(cfg.redis.url, cfg.redis.private_port), instance, 0.25)
    alerter = Alerter(PROCESS, logger)
    alerter.cache = cache
    tasks: list[asyncio.Task[None]] = []
    lease: LeaseKeeper | None = None
    try:
        async with ExchangeClient(cfg.exchange, cache, is_guard=True, logger=logger) as client:
            specs = await load_specs(
                client, logger, on_wait=lambda: guard_progress.update(reconcile=time.monotonic_ns())
            )  # an outage is degraded mode, not a hang
            is_one_way = await check_position_mode(client, logger)  # hedge mode: exit 2
            guard = Guard(
                cfg, client, specs, Path(cfg.run.dir), logger, alerter, cache, guard_progress
            )
            await guard.safety.mirror_halt()
            warn_weight_budget(cfg, logger)
            lease = LeaseKeeper(cache, cfg.guard.lease_ttl_s, logger, guard.stats)
            await reconcile(guard, lease, {})  # before anything else (rule 18)
            logger.info(
                "guard_started",
                instance=instance,
                positions=len(guard.book.holdings),
                halted=guard.safety.halt.is_halted,
                halt_reason=guard.safety.halt.reason or None,
            )
            sources = Sources(guard, instance, cfg, logger)
            stream = UserDataStream(
                cfg.exchange.ws_url,
                client.listen_key_create,
                client.listen_key_keepalive,
                guard.reconcile,
                cfg.streams,
            )
            async with stream:
                spawn = asyncio.get_running_loop().create_task
                pending: set[str] = set()
                wake = asyncio.Event()
                tasks += [
                    spawn(user_events(guard, stream, logger, pending, wake)),
                    spawn(reconcile_pending(guard, pending, wake)),
                    spawn(sources.bus_marks()),
                    spawn(sources.check()),
                    spawn(sources.rest_poll()),
                    spawn(reconcile_loop(guard, lease, cfg, logger, is_one_way)),
                    spawn(log_stats(guard, sources, logger)),
                    spawn(mirror_heartbeat(cache, PROCESS, cfg.guard.heartbeat_interval_s)),
                ]
                await wait_tasks(tasks, stop)
                await lease.revoke("guard_stopping")  # entries stop now, not when the TTL ends
                logger.info("guard_stopping", note="protective stops stay at the exchange")
                with contextlib.suppress(TimeoutError):  # let the call in flight finish
                    async with asyncio.timeout(cfg.guard.call_timeout_s):
                        await guard.lock.acquire()
    finally:
        await cancel_tasks([*tasks, beating])
        if lease is not None:  # also after a fatal error: nothing protects from here on
            await lease.revoke("guard_stopping")
        await cache.close()
        heartbeat.close()


def main(argv: list[str] | None = None) -> int:
    """Run the guard; return the exit code (0 clean stop, 2 configuration error, 1 fatal)."""
    return process_main(PROCESS, "The position-guard.", serve, argv, is_graceful=True)


if __name__ == "__main__":
    sys.exit(main())
