"""Self-learning: the champion model the trader scores with, and challengers trained beside it.

`ModelHolder` keeps the champion loaded. It asks PostgreSQL for the promoted version every
`trader.model_check_interval_s` and swaps to a new one without a restart (`slt model promote N`
and `slt model rollback` take effect that way too). The champion is also kept in
`<run.dir>/trader/champion.{ubj,json}`, so a trader started while PostgreSQL is down still
trades with the last champion it knew.

`Retrainer` trains a challenger in a separate process (a `spawn` ProcessPoolExecutor with one
worker): decisions never wait for it. The worker dies with the trader (`die_with_parent`): on Linux
the kernel sends it SIGKILL when the trader's main thread ends, however it ends (kill -9, the
watchdog's KILL), so no 146 MB orphan outlives it; elsewhere the worker is left as it is.
The training set is the kline history fetched over REST (`trader.history_bars` per symbol,
labelled with the model's barrier) plus one sample per closed trade, real or virtual (its
features at entry, direction, and whether it won). The champion is
scored on the challenger's held-out rows, the same rows, and `model.decide_promotion` decides;
the challenger is saved either way (champion or rejected) and the decision recorded in
`promotion_decisions`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import dataclasses
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from shared import log
from shared.config.trader import ModelConfig
from shared.learn.dataset import build_dataset, concat, trade_samples
from shared.learn.model import Model, ModelMeta, TrainParams, challenge, meta_of, model_record
from shared.schemas import records as r
from shared.store.db import Database
from shared.store.durable import save_atomically

PR_SET_PDEATHSIG = 1  # prctl(2) option: the signal this process gets when its parent dies


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: ask Linux to SIGKILL this process when its parent (the thread that
    spawned it, the trader's main thread) ends. If the parent died before the request took
    effect, exit now. Does nothing on other systems."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # already reparented: the signal will never come
        os._exit(1)


class ModelHolder:
    """The champion model in memory (see the module docstring)."""

    def __init__(self, run_dir: Path, logger: log.EventLogger) -> None:
        self.dir = run_dir / "trader"
        self.log = logger
        self.current: Model | None = None

    @property
    def version(self) -> int:
        return self.current.version if self.current is not None else 0

    def load_file(self) -> bool:
        """Load the last champion kept on disk; False when there is none or it is unusable."""
        try:
            blob = (self.dir / "champion.ubj").read_bytes()
            record = msgspec.json.decode(
                (self.dir / "champion.json").read_bytes(), type=r.ModelVersionRecord
            )
            self.current = Model.from_blob(blob, meta_of(record), record.version)
        except (OSError, ValueError, msgspec.DecodeError) as e:
            self.log.info("model_file_unusable", error=str(e)[:200])
            return False
        self.log.info("model_loaded", version=record.version, source="file")
        return True

    def use(self, record: r.ModelVersionRecord, blob: bytes) -> None:
        """Swap to this model and keep it on disk; raises ValueError for an unusable one."""
        model = Model.from_blob(blob, meta_of(record), record.version)
        self.current = model
        save_atomically(self.dir / "champion.ubj", blob)
        save_atomically(self.dir / "champion.json", msgspec.json.encode(record))
        self.log.info(
            "model_swapped", version=record.version, auc=record.auc, log_loss=record.log_loss
        )

    async def refresh(self, db: Database) -> bool:
        """Load the promoted model if it is not the one in use; True when it swapped."""
        found = await db.champion()
        if found is None or found[0].version == self.version:
            return False
        record, blob = found
        try:
            self.use(record, blob)
        except ValueError as e:
            self.log.warning("model_unusable", version=record.version, error=str(e)[:300])
            return False
        return True


@dataclass(frozen=True)
class Outcome:
    """What one training job produced (returned from the worker process)."""

    blob: bytes
    meta_json: bytes
    is_promoted: bool
    detail: str


def train_job(
    histories: dict[str, npt.NDArray[np.float64]],
    trades_msgpack: list[bytes],
    model_cfg: dict[str, Any],
    champion_blob: bytes,
    champion_meta_json: bytes,
) -> Outcome:
    """Train a challenger on klines + closed trades and judge it against the champion on the
    same held-out rows. Runs in the worker process; pure CPU, no I/O. Raises ValueError for too
    little data."""
    cfg = ModelConfig(**model_cfg)
    ds = build_dataset(
        histories, cfg.take_profit_pct, cfg.stop_loss_pct, cfg.horizon_bars, cfg.stride_bars
    )
    trades = [r.decode_record(t) for t in trades_msgpack]
    ds = concat(ds, trade_samples([t for t in trades if isinstance(t, r.TradeRecord)], ds))
    champion = None
    if champion_blob:
        champion = Model.from_blob(
            champion_blob, msgspec.json.decode(champion_meta_json, type=ModelMeta)
        )
    trained, is_promoted, detail = challenge(
        champion,
        ds,
        TrainParams(nthread=cfg.threads),
        cfg.seed,
        cfg.holdout_fraction,
        cfg.min_improvement,
        cfg.auc_tolerance,
    )
    return Outcome(trained.blob, msgspec.json.encode(trained.meta), is_promoted, detail)


class Retrainer:
    """Runs `train_job` in one worker process and applies its verdict (module docstring)."""

    def __init__(self, model_cfg: ModelConfig, logger: log.EventLogger) -> None:
        self.cfg = model_cfg
        self.log = logger
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        )
        self.is_running = False
        self.trainings = 0

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def train(
        self,
        db: Database,
        holder: ModelHolder,
        histories: dict[str, npt.NDArray[np.float64]],
        trades: list[r.TradeRecord],
        reason: str,
    ) -> Outcome:
        """Train in the worker, save the challenger, record the decision, promote if better.

        Raises ValueError (too little data) and DatabaseUnavailableError (the verdict is then
        not applied; the next trigger retries).
        """
        self.is_running = True
        started = time.monotonic()
        champion = holder.current
        blob, meta_json = b"", b""
        if champion is not None:
            blob = bytes(champion.booster.save_raw("ubj"))
            meta_json = msgspec.json.encode(champion.meta)
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(
                self.pool,
                train_job,
                histories,
                [r.encode_record(t) for t in trades],
                dataclasses.asdict(self.cfg),
                blob,
                meta_json,
            )
        finally:
            self.is_running = False
        self.trainings += 1
        meta = msgspec.json.decode(outcome.meta_json, type=ModelMeta)
        status = "candidate" if outcome.is_promoted else "rejected"
        version = await db.save_model(model_record(meta, status), outcome.blob)
        now = _now_ms()
        if outcome.is_promoted:
            await db.promote(version, f"{reason}: {outcome.detail}", now)
        else:
            await db.write(
                r.PromotionDecision(
                    decided_ms=now,
                    challenger_version=version,
                    champion_version=champion.version if champion else None,
                    is_promoted=False,
                    detail=f"{reason}: {outcome.detail}",
                )
            )
        self.log.info(
            "challenger_trained",
            version=version,
            promoted=outcome.is_promoted,
            reason=reason,
            auc=round(meta.metrics.auc, 4),
            log_loss=round(meta.metrics.log_loss, 5),
            samples=meta.metrics.train_samples + meta.metrics.holdout_samples,
            seconds=round(time.monotonic() - started, 1),
            detail=outcome.detail,
        )
        if outcome.is_promoted:
            await holder.refresh(db)
        return outcome
