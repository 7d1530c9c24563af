"""The entry model: an XGBoost binary classifier of "take-profit before stop" for one direction.

Input row = features.FEATURE_NAMES + direction (+1 long, -1 short) (`model_input`); output = the
probability that the take-profit barrier is touched first (dataset.py states the label rule).

Training (`train_model`): rows sorted by time_ms; the last `holdout_fraction` of them (all rows
at or after the first held-out time H) are held out, and training rows with
time_ms > H - (horizon_bars + 1) * 1 min are dropped: the last training label window (bars
t+1..t+horizon) then ends before H, so no held-out bar leaks into a training label. xgboost
native Booster, `hist` trees, a fixed seed; `nthread` threads to train, 1 to predict (latency).

Held-out metrics (`Metrics`): AUC (exact, ties averaged), log-loss (nats), base rate (share of
label 1), hit rate = precision at p >= 0.5 (share of rows predicted >= 0.5 that hit the
take-profit first; 0 when no row reaches 0.5, `predicted_positive` tells), and the counts. All
are finite: train_model refuses (ValueError) a training or held-out part holding one class, so
a meta always survives JSON (which has no NaN).

Storage: blob = booster.save_raw("ubj"); `ModelMeta` records the feature schema, label
parameters, xgboost parameters and metrics. In PostgreSQL the meta travels inside the
`ModelVersionRecord` row as params["meta"] (`model_record` / `meta_of`). `Model.from_blob`
refuses a blob whose feature schema differs from the running code's, or whose input width
differs (ValueError, one sentence).

Promotion (`decide_promotion`), champion and challenger scored on the SAME held-out rows:
promote iff challenger log-loss < champion log-loss - min_improvement (strictly lower, so an
equal challenger never replaces the champion) and challenger AUC >= champion AUC -
auc_tolerance; without a champion, promote. Defaults mirror config [model].
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgspec
import numpy as np
import xgboost as xgb
from numpy.typing import NDArray

from shared.core import backtest, features
from shared.learn.dataset import BAR_MS, COLUMN_NAMES, Dataset
from shared.schemas.records import LabelSpec, ModelVersionRecord

SEED = 20250526
HIT_THRESHOLD = 0.5  # hit rate = precision of p >= this
MIN_IMPROVEMENT = 0.0  # promotion: challenger log-loss lower by more than this (nats)
AUC_TOLERANCE = 0.01  # promotion: challenger AUC at most this much below the champion's


META_KEY = "meta"  # ModelVersionRecord.params key holding the ModelMeta


class Metrics(msgspec.Struct, frozen=True, kw_only=True):
    """Held-out figures of one model."""

    auc: float
    log_loss: float  # nats
    hit_rate: float  # precision of p >= 0.5; 0 when no row reaches 0.5
    predicted_positive: int  # held-out rows with p >= 0.5
    train_samples: int
    holdout_samples: int
    base_rate: float  # held-out share of label 1
    train_seconds: float = 0.0


class ModelMeta(msgspec.Struct, frozen=True, kw_only=True):
    """What a blob needs beside itself: its input schema, labels, parameters and metrics."""

    feature_schema: str  # features.FEATURE_SCHEMA it was trained with
    column_names: tuple[str, ...]  # features.FEATURE_NAMES + ("direction",)
    take_profit_pct: float
    stop_loss_pct: float
    horizon_bars: int
    params: dict[str, float | int | str]  # xgboost parameters and "rounds"
    seed: int
    metrics: Metrics
    trained_ms: int  # wall clock when training ended, ms


@dataclass(frozen=True)
class TrainParams:
    """XGBoost training parameters."""

    rounds: int = 300  # boosting rounds
    max_depth: int = 4
    learning_rate: float = 0.05
    subsample: float = 0.8  # rows per tree
    colsample_bytree: float = 0.8  # columns per tree
    min_child_weight: float = 20.0  # minimum hessian sum in a leaf (regularises small leaves)
    reg_lambda: float = 1.0  # L2 on leaf weights
    max_bin: int = 256  # hist bins per feature
    nthread: int = 2  # training threads

    def booster_params(self, seed: int) -> dict[str, float | int | str]:
        """Return the xgboost parameter dict."""
        return {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "max_bin": self.max_bin,
            "nthread": self.nthread,
            "seed": seed,
            "verbosity": 0,
        }


def model_input(feature_rows: NDArray[np.float64], direction: int) -> NDArray[np.float64]:
    """Return the model input (n, F + 1): feature rows (n, F) plus the direction column."""
    x = np.empty((feature_rows.shape[0], feature_rows.shape[1] + 1), dtype=np.float64)
    x[:, :-1] = feature_rows
    x[:, -1] = float(direction)
    return x


class Model:
    """A loaded booster and its meta; `predict` is single-threaded."""

    model_input = staticmethod(model_input)

    def __init__(self, booster: xgb.Booster, meta: ModelMeta, version: int = 0) -> None:
        self.booster = booster
        self.meta = meta
        self.version = version

    @classmethod
    def from_blob(cls, blob: bytes, meta: ModelMeta, version: int = 0) -> Model:
        """Restore a model; raise ValueError when its feature schema differs from the code's."""
        if meta.feature_schema != features.FEATURE_SCHEMA:
            raise ValueError(
                f"model {version} was trained on feature schema {meta.feature_schema}, but the"
                f" running code computes {features.FEATURE_SCHEMA}; retrain it"
            )
        booster = xgb.Booster(params={"nthread": 1})
        booster.load_model(bytearray(blob))
        booster.set_param({"nthread": 1})
        if booster.num_features() != len(COLUMN_NAMES):
            raise ValueError(
                f"model {version} takes {booster.num_features()} inputs, but the running code"
                f" makes {len(COLUMN_NAMES)}; retrain it"
            )
        return cls(booster, meta, version)

    def predict(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """Return P(take-profit first) per row of X (n, F + 1); NaN rows give NaN."""
        if len(X) == 0:
            return np.empty(0, dtype=np.float64)
        p = np.asarray(self.booster.inplace_predict(X, validate_features=False), np.float64)
        is_bad = ~np.isfinite(X).all(axis=1)
        if is_bad.any():
            p[is_bad] = np.nan
        return p


@dataclass(frozen=True)
class TrainedModel:
    """A freshly trained model, its held-out rows and predictions."""

    blob: bytes
    meta: ModelMeta
    holdout_index: NDArray[np.intp]  # rows of the dataset held out, time order
    holdout_p: NDArray[np.float64]  # predictions on those rows
    train_index: NDArray[np.intp] = field(default_factory=lambda: np.empty(0, np.intp))

    @property
    def metrics(self) -> Metrics:
        """Return the held-out metrics."""
        return self.meta.metrics

    def model(self) -> Model:
        """Return the loaded model."""
        return Model.from_blob(self.blob, self.meta)


def time_split(
    time_ms: NDArray[np.int64], holdout_fraction: float, horizon_bars: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Return (train rows, held-out rows), both time-ordered, with the leak gap of the docstring.

    Raises ValueError when holdout_fraction is not in (0, 1) or a part comes out empty.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"model: holdout_fraction={holdout_fraction} must be in (0, 1)")
    order = np.argsort(time_ms, kind="stable").astype(np.intp)
    n_hold = max(1, round(len(order) * holdout_fraction))
    if n_hold >= len(order):
        raise ValueError(f"model: {len(order)} samples are too few to hold out {n_hold}")
    first_holdout_ms = int(time_ms[order[len(order) - n_hold]])
    sorted_t = time_ms[order]
    hold = order[sorted_t >= first_holdout_ms]
    train = order[sorted_t <= first_holdout_ms - (horizon_bars + 1) * BAR_MS]
    if len(train) == 0:
        raise ValueError(
            f"model: no training sample ends its {horizon_bars}-bar label before the held-out"
            f" part; use more data or a smaller holdout_fraction than {holdout_fraction}"
        )
    return train, hold


def score(y: NDArray[np.int8], p: NDArray[np.float64], train_samples: int) -> Metrics:
    """Return the held-out metrics of predictions p for labels y."""
    hit_rate, predicted = backtest.precision_at(y, p, HIT_THRESHOLD)
    base_rate = float((y == 1).sum() / len(y)) if len(y) else float("nan")
    return Metrics(
        auc=backtest.roc_auc(y, p),
        log_loss=backtest.log_loss(y, p),
        hit_rate=hit_rate if predicted else 0.0,
        predicted_positive=predicted,
        train_samples=train_samples,
        holdout_samples=len(y),
        base_rate=base_rate,
    )


def train_model(
    ds: Dataset,
    params: TrainParams | None = None,
    seed: int = SEED,
    holdout_fraction: float = 0.2,
) -> TrainedModel:
    """Train on the earlier rows, score on the held-out later rows (time split with a gap).

    Raises ValueError for a dataset too small to split, or a part holding one class only.
    """
    params = params or TrainParams()
    train, hold = time_split(ds.time_ms, holdout_fraction, ds.horizon_bars)
    for part, rows in (("training", train), ("held-out", hold)):
        positives = int((ds.y[rows] == 1).sum())
        if positives in (0, len(rows)):
            raise ValueError(
                f"model: the {part} part's {len(rows)} samples hold {positives} take-profits,"
                " one class only; use more data"
            )
    booster_params = params.booster_params(seed)
    started = time.perf_counter()
    dtrain = xgb.DMatrix(ds.X[train], label=ds.y[train], nthread=params.nthread)
    booster = xgb.train(booster_params, dtrain, num_boost_round=params.rounds)
    train_seconds = time.perf_counter() - started
    booster.set_param({"nthread": 1})
    blob = bytes(booster.save_raw("ubj"))
    p = np.asarray(booster.inplace_predict(ds.X[hold], validate_features=False), np.float64)
    metrics = msgspec.structs.replace(
        score(ds.y[hold], p, len(train)), train_seconds=round(train_seconds, 3)
    )
    meta = ModelMeta(
        feature_schema=features.FEATURE_SCHEMA,
        column_names=COLUMN_NAMES,
        take_profit_pct=ds.take_profit_pct,
        stop_loss_pct=ds.stop_loss_pct,
        horizon_bars=ds.horizon_bars,
        params={**booster_params, "rounds": params.rounds},
        seed=seed,
        metrics=metrics,
        trained_ms=time.time_ns() // 1_000_000,
    )
    return TrainedModel(blob, meta, hold, p, train)


def model_record(meta: ModelMeta, status: str = "candidate") -> ModelVersionRecord:
    """Return the PostgreSQL row of a trained model (version 0; the meta under params["meta"])."""
    m = meta.metrics
    return ModelVersionRecord(
        created_ms=meta.trained_ms,
        feature_schema=meta.feature_schema,
        sample_count=m.train_samples + m.holdout_samples,
        auc=m.auc,
        log_loss=m.log_loss,
        hit_rate=m.hit_rate,
        params={META_KEY: msgspec.to_builtins(meta)},
        label=LabelSpec(
            take_profit_pct=meta.take_profit_pct,
            stop_loss_pct=meta.stop_loss_pct,
            horizon_bars=meta.horizon_bars,
        ),
        status=status,
    )


def meta_of(record: ModelVersionRecord) -> ModelMeta:
    """Return the ModelMeta kept in a model row; raise ValueError when absent or malformed."""
    raw = record.params.get(META_KEY)
    if raw is None:
        raise ValueError(f"model {record.version} has no stored meta; retrain it")
    try:
        return msgspec.convert(raw, ModelMeta)
    except msgspec.ValidationError as e:
        raise ValueError(f"model {record.version} has a malformed meta ({e}); retrain it") from e


def decide_promotion(
    champion: Metrics | None,
    challenger: Metrics,
    min_improvement: float = MIN_IMPROVEMENT,
    auc_tolerance: float = AUC_TOLERANCE,
) -> tuple[bool, str]:
    """Return (promote?, one sentence with both figures); both scored on the same held-out rows."""
    if champion is None:
        return True, (
            f"no champion; challenger log-loss {challenger.log_loss:.5f} AUC {challenger.auc:.4f}"
        )
    figures = (
        f"challenger log-loss {challenger.log_loss:.5f} AUC {challenger.auc:.4f} vs champion"
        f" log-loss {champion.log_loss:.5f} AUC {champion.auc:.4f}"
    )
    if not challenger.log_loss < champion.log_loss - min_improvement:
        return False, f"kept champion: {figures}; log-loss not lower by more than {min_improvement}"
    if not challenger.auc >= champion.auc - auc_tolerance:
        return False, f"kept champion: {figures}; AUC worse by more than {auc_tolerance}"
    return True, f"promoted: {figures}"


def score_model(model: Model, ds: Dataset, rows: NDArray[np.intp], train_samples: int) -> Metrics:
    """Return the model's metrics on dataset rows (the champion on a challenger's held-out)."""
    return score(ds.y[rows], model.predict(ds.X[rows]), train_samples)


def challenge(
    champion: Model | None,
    ds: Dataset,
    params: TrainParams | None = None,
    seed: int = SEED,
    holdout_fraction: float = 0.2,
    min_improvement: float = MIN_IMPROVEMENT,
    auc_tolerance: float = AUC_TOLERANCE,
) -> tuple[TrainedModel, bool, str]:
    """Train a challenger on ds, score the champion on its held-out rows, decide promotion.

    Returns (challenger, promote?, detail). A champion of another feature schema cannot be
    loaded (Model.from_blob refuses it), so callers pass None for it and the challenger wins.
    Raises ValueError for a dataset too small to split.
    """
    trained = train_model(ds, params, seed, holdout_fraction)
    champion_metrics = None
    if champion is not None:
        champion_metrics = score_model(
            champion, ds, trained.holdout_index, champion.meta.metrics.train_samples
        )
    is_promoted, detail = decide_promotion(
        champion_metrics, trained.metrics, min_improvement, auc_tolerance
    )
    return trained, is_promoted, detail
