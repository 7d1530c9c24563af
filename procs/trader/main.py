"""The trader (supervisord program `trader`, `python -m procs.trader [--mode paper|live]`): scores
every symbol once per closed minute with the champion XGBoost model, enters the best candidates,
follows the rest as virtual positions, records every trade and retrains from them.

Subscribes to: `kline.1m.*` on the feed's ZeroMQ bus (the trigger), the feed's shared-memory kline
windows and marks (the data); right before each entry, the halt flag (`<run.dir>/guard/halt.json`)
and the guard's entry lease (Redis `Keys.guard_lease`; procs/trader/gate.py).
Publishes: ExitPlans (Redis `Keys.exit_plans`, before each entry), its heartbeat slot `trader`
(progress: kline, decision, order), entry orders (client ids `slt-<signal>-entry-0`).
Owns: the trade records in PostgreSQL (through the outbox while it is down) and the models.

Start: PostgreSQL (retried until it answers; records meanwhile wait in the outbox), exchange
filters, then reconciliation of the recorded open trades with the exchange's positions before any
decision (rule 18); the champion model from PostgreSQL, else the last one kept on disk, else a
bootstrap model trained from the exchange's kline history. Protective stops are the guard's job:
the trader never places or cancels them. SIGTERM: exit 0 after the call in flight.
Exit codes: 0 clean stop, 2 configuration error, 1 fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time

from procs.trader.learning import ModelHolder, Retrainer
from procs.trader.outbox import Recorder
from procs.trader.trading import Trader
from shared import log
from shared.bus import BusError, Subscriber, bus_endpoint
from shared.cache import Cache, redis_url
from shared.config import Config
from shared.exchange.errors import ExchangeError
from shared.exchange.rest import ExchangeClient, load_specs
from shared.learn.dataset import fetch_history
from shared.process import cancel_tasks, process_main, wait_tasks
from shared.schemas import bus
from shared.shm.heartbeat import HeartbeatWriter, run_heartbeat
from shared.shm.mirror import mirror_heartbeat
from shared.shm.rings import KlineReader
from shared.shm.segment import SegmentMissingError, ShmError
from shared.store.db import Database, DatabaseUnavailableError, connect_until_up, postgres_dsn

PROCESS = "trader"
STATS_INTERVAL_S = 60.0
RETRY_S = 2.0
DRAIN_MAX = 10_000  # bus messages taken per wake-up


class Loops:
    """The trader's concurrent tasks."""

    def __init__(
        self,
        trader: Trader,
        db: Database,
        retrainer: Retrainer,
        instance: str,
        cfg: Config,
        logger: log.EventLogger,
    ) -> None:
        self.trader, self.db, self.retrainer = trader, db, retrainer
        self.instance, self.cfg, self.log = instance, cfg, logger
        self.trained_at_closed = 0

    def _attach(self) -> None:
        if self.trader.klines is None:
            with contextlib.suppress(SegmentMissingError, ShmError):
                self.trader.klines = KlineReader(self.instance)

    async def klines(self) -> None:
        """Decide once per minute: when every symbol's bar of that minute closed, or
        `trader.cycle_wait_s` after the first one did."""
        endpoint = bus_endpoint(self.instance, "feed")
        try:
            sub = Subscriber([endpoint], ["kline.1m."], process=PROCESS)
        except BusError as e:
            raise RuntimeError(f"trader: cannot subscribe to the feed's bus: {e}") from e
        t = self.trader
        seen: dict[int, set[str]] = {}
        first_ns: dict[int, int] = {}
        with sub:
            while True:
                wait_s = 1.0
                if first_ns:
                    due = min(first_ns.values()) + int(self.cfg.trader.cycle_wait_s * 1e9)
                    wait_s = max(0.0, (due - time.monotonic_ns()) / 1e9)
                received = await sub.receive(wait_s)
                now_ns = time.monotonic_ns()
                # A minute's closes come as a burst: take what is queued in one go.
                batch = [received, *sub.drain(DRAIN_MAX)] if received is not None else []
                arrived: dict[int, list[str]] = {}
                for item in batch:
                    if not isinstance(item.payload, bus.Kline):
                        continue
                    k = item.payload
                    t.progress["kline"] = now_ns
                    if k.is_closed and k.open_time_ms > t.last_minute_ms:
                        seen.setdefault(k.open_time_ms, set()).add(k.symbol)
                        first_ns.setdefault(k.open_time_ms, now_ns)
                        arrived.setdefault(k.open_time_ms, []).append(k.symbol)
                ready = [
                    m
                    for m in sorted(seen)
                    if len(seen[m]) >= len(t.symbols)
                    or now_ns - first_ns[m] >= self.cfg.trader.cycle_wait_s * 1e9
                ]
                # Score what has closed while the rest of the burst is still on its way.
                for minute, symbols in arrived.items():
                    if minute not in ready:
                        self._attach()
                        try:
                            t.score(minute, symbols)
                        except ShmError as e:
                            self.log.warning("shm_read_failed", error=str(e)[:200])
                for minute in ready:
                    self._attach()
                    started = first_ns.pop(minute)
                    del seen[minute]
                    try:
                        await t.decide(minute, started)
                    except ShmError as e:
                        self.log.warning("shm_read_failed", error=str(e)[:200])
                    except ExchangeError as e:  # the next minute decides afresh
                        self.log.warning("decision_failed", minute_ms=minute, error=str(e)[:300])

    async def virtuals(self) -> None:
        """The seeds' virtual loop: virtual positions against the latest marks."""
        while True:
            await asyncio.sleep(self.cfg.trader.virtual_interval_s)
            self._attach()
            try:
                await self.trader.step_virtuals()
            except ShmError as e:
                self.log.warning("shm_read_failed", error=str(e)[:200])

    async def positions(self) -> None:
        """Equity and win statistics for sizing; closed real positions become closed trades;
        entries whose outcome is unknown are asked about again until settled."""
        while True:
            await asyncio.sleep(self.cfg.trader.position_check_interval_s)
            try:
                await self.trader.settle_unknown()
                await self.trader.refresh_account()
            except ExchangeError as e:
                self.log.warning("position_check_failed", error=str(e)[:300])

    async def models(self) -> None:
        """Swap to a newly promoted model; start a challenger every N closed trades."""
        t, cfg = self.trader, self.cfg.trader
        while True:
            if t.models.current is None and not cfg.disable_model_training:
                await self.retrain("bootstrap: no champion yet")
            await asyncio.sleep(cfg.model_check_interval_s)
            try:
                await t.models.refresh(self.db)
            except DatabaseUnavailableError as e:
                self.log.warning("model_check_failed", error=str(e)[:200])
            due = t.closed_trades - self.trained_at_closed >= cfg.retrain_every_trades
            if due and not cfg.disable_model_training and not self.retrainer.is_running:
                self.trained_at_closed = t.closed_trades
                await self.retrain(f"{cfg.retrain_every_trades} closed trades")

    async def retrain(self, reason: str) -> None:
        """Fetch history, train a challenger off the loop, apply the verdict; failures are logged
        and the next trigger retries."""
        t = self.trader
        try:
            listed = [s for s in t.symbols if s in t.specs]
            histories = await fetch_history(t.client, listed, self.cfg.trader.history_bars)
            trades = [s for s in await self.db.trade_samples(5000) if s.is_closed]
            await self.retrainer.train(self.db, t.models, histories, trades, reason)
        except (ExchangeError, DatabaseUnavailableError, ValueError) as e:
            self.log.warning("training_failed", reason=reason, error=str(e)[:300])

    async def stats(self) -> None:
        t = self.trader
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            self.log.info(
                "trader_stats",
                open_trades=len(t.open_trades),
                virtual=len(t.virtuals),
                closed_trades=t.closed_trades,
                model_version=t.models.version,
                outbox=await t.recorder.pending(),
                last_latency_ms=t.last_latency_ms,
                **t.stats,
            )


async def serve(cfg: Config, instance: str, logger: log.EventLogger, stop: asyncio.Event) -> None:
    """Run the trader until cancelled (SIGTERM/SIGINT)."""
    progress: dict[str, int] = {}
    heartbeat = HeartbeatWriter(instance, PROCESS)
    beating = asyncio.get_running_loop().create_task(
        run_heartbeat(heartbeat, cfg.trader.heartbeat_interval_s, lambda: dict(progress))
    )
    cache = Cache(redis_url(cfg.redis.url, cfg.redis.private_port), instance, 0.25)
    retrainer = Retrainer(cfg.model, logger)
    tasks: list[asyncio.Task[None]] = []
    db: Database | None = None
    try:
        db = await connect_until_up(
            postgres_dsn(cfg),
            cfg.postgres.command_timeout_s,
            logger,
            RETRY_S,
            on_wait=lambda: progress.update(decision=time.monotonic_ns()),  # waiting is no hang
        )
        recorder = Recorder(db, cache, logger, cfg.path(cfg.run.dir) / "trader" / "outbox.journal")
        async with ExchangeClient(cfg.exchange, cache, logger=logger) as client:
            specs = await load_specs(client, logger, RETRY_S)
            models = ModelHolder(cfg.path(cfg.run.dir), logger)
            trader = Trader(cfg, client, specs, recorder, cache, models, logger)
            trader.progress = progress
            await recorder.drain()
            while True:  # before any decision (rule 18)
                try:
                    await trader.reconcile()
                    break
                except (ExchangeError, DatabaseUnavailableError) as e:
                    progress["decision"] = time.monotonic_ns()
                    logger.warning("reconcile_failed", error=str(e)[:300], retry_in_s=RETRY_S)
                    await asyncio.sleep(RETRY_S)
            loops = Loops(trader, db, retrainer, instance, cfg, logger)
            if not await models.refresh(db):
                models.load_file()  # PostgreSQL knows no champion: the last one kept on disk
            gc.collect()
            gc.freeze()  # the start-up heap (model, libraries) is never scanned again: shorter GC
            logger.info(
                "trader_started",
                instance=instance,
                symbols=len(trader.symbols),
                model_version=models.version,
                open_trades=len(trader.open_trades),
            )
            spawn = asyncio.get_running_loop().create_task
            tasks += [
                beating,  # a heartbeat that dies must end the process, not leave it unwatched
                spawn(loops.klines()),
                spawn(loops.virtuals()),
                spawn(loops.positions()),
                spawn(loops.models()),
                spawn(loops.stats()),
                spawn(recorder.run(cfg.trader.outbox_drain_interval_s)),
                spawn(mirror_heartbeat(cache, PROCESS, cfg.trader.heartbeat_interval_s)),
            ]
            await wait_tasks(tasks, stop)
    finally:
        await cancel_tasks([*tasks, beating])
        retrainer.close()
        if db is not None:
            await db.close()
        await cache.close()
        heartbeat.close()


def main(argv: list[str] | None = None) -> int:
    """Run the trader; return the exit code (0 clean stop, 2 configuration error, 1 fatal)."""
    return process_main(PROCESS, "The trader.", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
