"""`slt train`, `slt evaluate`, `slt model list|promote N|rollback`: the entry model's commands.

slt train [--data-dir DIR | --from-exchange] [--bars N] [--save [--promote]]
    train on the earlier rows, print held-out AUC, log-loss, samples and training seconds;
    --save stores it as a candidate; --promote then promotes it if it beats the champion on
    the same held-out rows (shared.learn.model.decide_promotion), else it is marked rejected.
slt evaluate [--data-dir DIR] [--train-fraction 0.7] [--threshold 0.5]
    train on the first part, backtest the held-out part (shared.core.backtest): AUC, hit
    rate, trades, PnL after fees, and a random-entry baseline with the same exits.
slt model list | promote N | rollback
    the stored versions; make version N the champion; put the previous champion back.

Labels (take-profit, stop, horizon), stride, threads, seed, the held-out share and the promotion
thresholds default to the [model] config section, so a saved model matches the trader's plan;
the evaluation's fee is trader.taker_fee_rate. Exit codes: 0 done, 1 a data, exchange or
database problem (one line on stderr), 2 a configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from shared import log
from shared.config import Config, load_config
from shared.core import backtest, features
from shared.exchange.errors import ExchangeError
from shared.exchange.rest import ExchangeClient
from shared.learn import dataset
from shared.schemas.records import ModelVersionRecord
from shared.store.db import Database, DatabaseError, postgres_dsn

if TYPE_CHECKING:  # xgboost takes 0.4 s to import: only the model commands load it
    from shared.learn import model as mdl

DEFAULT_ROUNDS = 300  # boosting rounds (shared.learn.model.TrainParams.rounds)
# Bars per symbol fetched with --from-exchange: 7 pages of weight 10 each, so six symbols fit
# one minute of a process's local weight budget (no Redis) without waiting.
DEFAULT_EXCHANGE_BARS = 10_000
BASELINE_SEED = 7

T = TypeVar("T")


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(ms // 1000))


def _symbols(args: argparse.Namespace, cfg: Config) -> tuple[str, ...]:
    return tuple(args.symbols.split(",")) if args.symbols else cfg.feed.symbols


def _load_histories(args: argparse.Namespace, cfg: Config) -> dict[str, NDArray[np.float64]]:
    symbols = _symbols(args, cfg)
    if getattr(args, "from_exchange", False):
        bars = args.bars or DEFAULT_EXCHANGE_BARS
        return asyncio.run(_fetch(cfg, symbols, bars))
    histories = dataset.load_kline_csvs(Path(args.data_dir), symbols)
    if args.bars:
        histories = {s: h[-args.bars :] for s, h in histories.items()}
    return histories


async def _fetch(cfg: Config, symbols: tuple[str, ...], bars: int) -> dict[str, Any]:
    logger = log.setup("slt", cfg.run.log_level)
    async with ExchangeClient(cfg.exchange, logger=logger) as client:
        return await dataset.fetch_history(client, symbols, bars)


def _dataset(args: argparse.Namespace, cfg: Config) -> dataset.Dataset:
    histories = _load_histories(args, cfg)
    bars = sum(len(h) for h in histories.values())
    started = time.perf_counter()
    m = cfg.model
    stride = _pick(args.stride, m.stride_bars)
    ds = dataset.build_dataset(
        histories,
        _pick(args.take_profit_pct, m.take_profit_pct),
        _pick(args.stop_loss_pct, m.stop_loss_pct),
        _pick(args.horizon_bars, m.horizon_bars),
        stride,
    )
    print(
        f"data: {len(histories)} symbols, {bars} bars, {len(ds)} samples"
        f" (take-profit {ds.take_profit_pct}%, stop {ds.stop_loss_pct}%, horizon"
        f" {ds.horizon_bars} bars, stride {stride}), built in"
        f" {time.perf_counter() - started:.1f} s"
    )
    return ds


def _pick(flag: T | None, configured: T) -> T:
    """Return the command-line value when given, else the configured one."""
    return configured if flag is None else flag


def _train_params(args: argparse.Namespace, cfg: Config) -> mdl.TrainParams:
    from shared.learn import model as mdl

    return mdl.TrainParams(rounds=args.rounds, nthread=_pick(args.threads, cfg.model.threads))


def _print_metrics(ds: dataset.Dataset, trained: mdl.TrainedModel) -> None:
    m = trained.metrics
    hold_t = ds.time_ms[trained.holdout_index]
    print(
        f"held out: {m.holdout_samples} samples {_utc(int(hold_t.min()))} .. "
        f"{_utc(int(hold_t.max()))}; trained on {m.train_samples} samples (gap"
        f" {ds.horizon_bars} bars before the held-out part)"
    )
    print(f"AUC: {m.auc:.4f}")
    print(f"log-loss: {m.log_loss:.5f} (base rate {m.base_rate:.4f})")
    print(f"hit rate: {m.hit_rate:.4f} ({m.predicted_positive} samples with p >= 0.5)")
    print(f"training seconds: {m.train_seconds:.2f}")


def _prepare(
    args: argparse.Namespace, holdout_fraction: float | None
) -> tuple[Config, dataset.Dataset, mdl.TrainedModel] | None:
    """Load config and data and train; print one line and return None on a data problem."""
    from shared.learn import model as mdl

    cfg = load_config(args.mode)
    holdout = _pick(holdout_fraction, cfg.model.holdout_fraction)
    seed = _pick(args.seed, cfg.model.seed)
    try:
        ds = _dataset(args, cfg)
        trained = mdl.train_model(ds, _train_params(args, cfg), seed, holdout)
    except (ExchangeError, ValueError) as e:  # unreachable exchange, too little data
        print(f"slt: {e}", file=sys.stderr)
        return None
    _print_metrics(ds, trained)
    return cfg, ds, trained


def cmd_train(args: argparse.Namespace) -> int:
    """Train, print held-out figures, optionally save (and promote) through the database."""
    prepared = _prepare(args, args.holdout_fraction)
    if prepared is None:
        return 1
    cfg, ds, trained = prepared
    if not (args.save or args.promote):  # --promote implies --save
        return 0
    try:
        return asyncio.run(_save(cfg, ds, trained, args.promote))
    except DatabaseError as e:
        print(f"slt: {e}", file=sys.stderr)
        return 1


async def _save(
    cfg: Config, ds: dataset.Dataset, trained: mdl.TrainedModel, is_promote: bool
) -> int:
    from shared.learn import model as mdl

    async with await Database.connect(postgres_dsn(cfg), cfg.postgres.command_timeout_s) as db:
        await db.apply_migrations()
        version = await db.save_model(mdl.model_record(trained.meta), trained.blob)
        print(f"saved: model version {version} (candidate)")
        if not is_promote:
            return 0
        champion_metrics: mdl.Metrics | None = None
        stored = await db.champion()
        if stored is not None:
            record, blob = stored
            try:
                champion = mdl.Model.from_blob(blob, mdl.meta_of(record), record.version)
            except ValueError as e:  # the running code cannot use it: compare without it
                print(f"champion {record.version} cannot be scored: {e}")
            else:
                champion_metrics = mdl.score_model(
                    champion, ds, trained.holdout_index, champion.meta.metrics.train_samples
                )
        is_promoted, detail = mdl.decide_promotion(
            champion_metrics, trained.metrics, cfg.model.min_improvement, cfg.model.auc_tolerance
        )
        now_ms = time.time_ns() // 1_000_000
        if is_promoted:
            await db.promote(version, detail, now_ms)
        else:
            await db.reject(version, detail, now_ms)
        print(f"model {version} {detail}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Train on the first part of the data and backtest the held-out part."""
    prepared = _prepare(args, 1.0 - args.train_fraction)
    if prepared is None:
        return 1
    cfg, ds, trained = prepared
    hi = trained.holdout_index
    fee = cfg.trader.taker_fee_rate
    result = backtest.simulate_trades(
        trained.holdout_p,
        ds.exit_return[hi],
        ds.exit_offset[hi],
        ds.time_ms[hi],
        ds.symbol_index[hi],
        args.threshold,
        fee,
    )
    base = backtest.random_baseline(
        result.pnl,
        result.trades,
        ds.exit_return[hi],
        ds.exit_offset[hi],
        ds.time_ms[hi],
        ds.symbol_index[hi],
        fee,
        np.random.default_rng(BASELINE_SEED),
        args.draws,
    )
    print(
        f"trades: {result.trades} (p >= {args.threshold}, one open trade per symbol, taker fee"
        f" {fee} per side)"
    )
    print(f"trade hit rate: {result.hit_rate:.4f} (net return > 0)")
    print(f"PnL after fees: {result.pnl:+.4f} per unit notional ({result.pnl * 100:+.2f}% summed)")
    print(
        f"random baseline: PnL {base.mean_pnl:+.4f} ± {base.sd_pnl:.4f} over {base.draws} draws"
        f" of {base.trades} trades; model beats {base.share_beaten:.1%} of draws"
    )
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    """List, promote or roll back stored model versions."""
    cfg = load_config(args.mode)
    return asyncio.run(_model_command(cfg, args.action, args.version))


def _model_line(m: ModelVersionRecord) -> str:
    promoted = _utc(m.promoted_ms) if m.promoted_ms else "-"
    return (
        f"{m.version:>7} {m.status:<9} {_utc(m.created_ms)} {m.feature_schema} {m.sample_count:>8}"
        f" {m.auc:.4f} {m.log_loss:.5f}  {m.hit_rate:.4f}  {promoted}"
    )


async def _model_command(cfg: Config, action: str, version: int | None) -> int:
    now_ms = time.time_ns() // 1_000_000
    try:
        async with await Database.connect(postgres_dsn(cfg), cfg.postgres.command_timeout_s) as db:
            await db.apply_migrations()
            if action == "list":
                print(
                    "version status    created           schema            samples auc    "
                    "log-loss hit-rate promoted"
                )
                for m in await db.list_models():
                    print(_model_line(m))
                return 0
            if action == "rollback":
                restored = await db.rollback(now_ms)
                print(f"rolled back: model {restored} is the champion again")
                return 0
            if version is None:
                print("slt: model promote needs a version number", file=sys.stderr)
                return 1
            stored = await db.load_model(version)
            if stored is None:
                print(f"slt: model {version} does not exist", file=sys.stderr)
                return 1
            if stored[0].feature_schema != features.FEATURE_SCHEMA:
                print(
                    f"slt: model {version} has feature schema {stored[0].feature_schema}, the"
                    f" running code {features.FEATURE_SCHEMA}; the trader would refuse it",
                    file=sys.stderr,
                )
                return 1
            await db.promote(version, f"operator promoted model {version}", now_ms)
            print(f"promoted: model {version} is the champion")
            return 0
    except DatabaseError as e:
        print(f"slt: {e}", file=sys.stderr)
        return 1


def _data_args(p: argparse.ArgumentParser, has_exchange: bool) -> None:
    if has_exchange:
        src = p.add_mutually_exclusive_group()
        src.add_argument("--data-dir", default=str(dataset.DEFAULT_DATA_DIR))
        src.add_argument("--from-exchange", action="store_true", help="page GET /fapi/v1/klines")
    else:
        p.add_argument("--data-dir", default=str(dataset.DEFAULT_DATA_DIR))
    p.add_argument("--bars", type=int, default=0, help="last N bars per symbol (0: all)")
    p.add_argument("--symbols", default="", help="comma-separated; default: feed.symbols")
    # Unset label and training options come from the [model] config section (what the trader
    # trains and exits with), so a model saved here matches the trader's plan.
    p.add_argument("--take-profit-pct", type=float, default=None, help="default: model.*")
    p.add_argument("--stop-loss-pct", type=float, default=None, help="default: model.*")
    p.add_argument("--horizon-bars", type=int, default=None, help="default: model.*")
    p.add_argument("--stride", type=int, default=None, help="sample every Nth bar")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="boosting rounds")
    p.add_argument("--threads", type=int, default=None, help="default: model.threads")
    p.add_argument("--seed", type=int, default=None, help="default: model.seed")


def add_subcommands(sub: Any) -> None:
    """Register train, evaluate and model on the `slt` subparsers."""
    train = sub.add_parser("train", help="train the entry model and print held-out figures")
    _data_args(train, has_exchange=True)
    train.add_argument("--holdout-fraction", type=float, default=None, help="default: model.*")
    train.add_argument("--save", action="store_true", help="store it as a candidate")
    train.add_argument("--promote", action="store_true", help="save, then promote if better")
    train.set_defaults(func=cmd_train)
    evaluate = sub.add_parser("evaluate", help="train on the first part, backtest the rest")
    _data_args(evaluate, has_exchange=False)
    evaluate.add_argument("--train-fraction", type=float, default=0.7)
    evaluate.add_argument("--threshold", type=float, default=0.5, help="enter when p >= this")
    evaluate.add_argument("--draws", type=int, default=200, help="random-baseline draws")
    evaluate.set_defaults(func=cmd_evaluate)
    models = sub.add_parser("model", help="stored model versions")
    models.add_argument("action", choices=("list", "promote", "rollback"))
    models.add_argument("version", type=int, nargs="?", default=None, help="for promote")
    models.set_defaults(func=cmd_model)
