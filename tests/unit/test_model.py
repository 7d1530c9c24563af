"""The entry model on a slice of the real klines: time split, metrics, blob round trip,
schema refusal, promotion rule."""

from __future__ import annotations

import dataclasses
import math

import msgspec
import numpy as np
import pytest

from shared.core import features
from shared.learn import dataset
from shared.learn import model as mdl
from shared.schemas.records import LabelSpec, ModelVersionRecord

SYMBOLS = ("BTCUSDT", "XRPUSDT")
SLICE_BARS = 3000
HOLDOUT = 0.3


@pytest.fixture(scope="module")
def ds() -> dataset.Dataset:
    full = dataset.load_kline_csvs(dataset.DEFAULT_DATA_DIR, SYMBOLS)
    return dataset.build_dataset({s: h[-SLICE_BARS:] for s, h in full.items()}, 1.0, 0.5, 60, 2)


@pytest.fixture(scope="module")
def trained(ds: dataset.Dataset) -> mdl.TrainedModel:
    return mdl.train_model(
        ds, mdl.TrainParams(rounds=40, nthread=2), seed=1, holdout_fraction=HOLDOUT
    )


def test_train_model_reports_held_out_metrics(
    ds: dataset.Dataset, trained: mdl.TrainedModel
) -> None:
    m = trained.metrics
    assert 0.0 <= m.auc <= 1.0
    assert 0.0 < m.log_loss < 1.0
    assert m.holdout_samples == len(trained.holdout_index)
    assert m.train_samples == len(trained.train_index)
    assert m.base_rate == pytest.approx(float(ds.y[trained.holdout_index].mean()))
    assert m.holdout_samples == pytest.approx(HOLDOUT * len(ds), abs=4)  # ties at the cut go out
    meta = trained.meta
    assert meta.feature_schema == features.FEATURE_SCHEMA
    assert meta.column_names == (*features.FEATURE_NAMES, "direction")
    assert (meta.take_profit_pct, meta.stop_loss_pct, meta.horizon_bars) == (1.0, 0.5, 60)
    assert meta.params["tree_method"] == "hist"
    assert meta.seed == 1


def test_holdout_gap_keeps_every_training_label_before_the_held_out_part(
    ds: dataset.Dataset, trained: mdl.TrainedModel
) -> None:
    first_holdout_ms = int(ds.time_ms[trained.holdout_index].min())
    last_train_ms = int(ds.time_ms[trained.train_index].max())
    # the last training label reads bars up to last_train + 60 min, which must open before H
    assert last_train_ms + 60 * dataset.BAR_MS < first_holdout_ms
    assert last_train_ms + 61 * dataset.BAR_MS >= first_holdout_ms - 2 * dataset.BAR_MS  # stride 2
    assert not set(trained.train_index.tolist()) & set(trained.holdout_index.tolist())


def test_time_split_drops_horizon_bars_before_the_first_held_out_time() -> None:
    t = np.arange(20, dtype=np.int64) * dataset.BAR_MS
    train, hold = mdl.time_split(t, 0.25, horizon_bars=3)
    assert hold.tolist() == [15, 16, 17, 18, 19]
    assert train.tolist() == list(range(12))  # minutes 12, 13, 14 are the gap


def test_time_split_holds_out_every_row_at_the_cut_time() -> None:
    t = np.array([0, 0, 1, 1, 2, 2, 9, 9], dtype=np.int64) * dataset.BAR_MS
    train, hold = mdl.time_split(t, 0.125, horizon_bars=1)
    assert sorted(hold.tolist()) == [6, 7]
    assert sorted(train.tolist()) == [0, 1, 2, 3, 4, 5]


def test_time_split_with_no_room_for_training_raises() -> None:
    t = np.arange(10, dtype=np.int64) * dataset.BAR_MS
    with pytest.raises(ValueError, match="no training sample"):
        mdl.time_split(t, 0.5, horizon_bars=60)


def test_blob_round_trips_to_identical_predictions(
    ds: dataset.Dataset, trained: mdl.TrainedModel
) -> None:
    restored = mdl.Model.from_blob(trained.blob, trained.meta)
    p = restored.predict(ds.X[trained.holdout_index])
    assert np.array_equal(p, trained.holdout_p)
    assert p.dtype == np.float64
    assert np.all((p > 0) & (p < 1))
    again = mdl.Model.from_blob(bytes(trained.blob), trained.meta, version=7)
    assert again.version == 7
    assert np.array_equal(again.predict(ds.X[:50]), restored.predict(ds.X[:50]))


def test_predict_gives_nan_for_a_row_with_a_nan_feature(
    ds: dataset.Dataset, trained: mdl.TrainedModel
) -> None:
    x = ds.X[:3].copy()
    x[1, 0] = np.nan
    p = trained.model().predict(x)
    assert math.isnan(p[1]) and np.isfinite(p[[0, 2]]).all()


def test_model_input_appends_the_direction_column() -> None:
    x = mdl.model_input(np.ones((2, 3)), -1)
    assert x.tolist() == [[1.0, 1.0, 1.0, -1.0], [1.0, 1.0, 1.0, -1.0]]


def test_from_blob_refuses_another_feature_schema(trained: mdl.TrainedModel) -> None:
    other = msgspec.structs.replace(trained.meta, feature_schema="0123456789abcdef")
    with pytest.raises(ValueError, match="model 3 was trained on feature schema 0123456789abcdef"):
        mdl.Model.from_blob(trained.blob, other, version=3)


def _metrics(log_loss: float, auc: float) -> mdl.Metrics:
    return mdl.Metrics(
        auc=auc,
        log_loss=log_loss,
        hit_rate=0.5,
        predicted_positive=1,
        train_samples=10,
        holdout_samples=10,
        base_rate=0.5,
    )


CHAMPION = _metrics(log_loss=0.75, auc=0.75)


@pytest.mark.parametrize(
    ("log_loss", "auc", "is_promoted"),
    [
        (0.5625, 0.75, True),  # log-loss lower by more than min_improvement
        (0.625, 0.75, False),  # lower by exactly min_improvement: not more
        (0.6875, 0.75, False),  # lower, but by less than min_improvement
        (0.5, 0.5, True),  # AUC worse by exactly the tolerance
        (0.5, 0.4375, False),  # AUC worse by more than the tolerance
        (0.75, 0.875, False),  # better AUC does not make up for equal log-loss
    ],
)
def test_decide_promotion_boundaries(log_loss: float, auc: float, is_promoted: bool) -> None:
    ok, detail = mdl.decide_promotion(
        CHAMPION, _metrics(log_loss, auc), min_improvement=0.125, auc_tolerance=0.25
    )
    assert ok is is_promoted
    assert f"challenger log-loss {log_loss:.5f} AUC {auc:.4f}" in detail
    assert "champion log-loss 0.75000 AUC 0.7500" in detail


def test_decide_promotion_without_a_champion_promotes() -> None:
    ok, detail = mdl.decide_promotion(None, _metrics(0.7, 0.6))
    assert ok
    assert detail == "no champion; challenger log-loss 0.70000 AUC 0.6000"


def test_score_model_of_the_champion_on_the_same_rows_matches_its_training_metrics(
    ds: dataset.Dataset, trained: mdl.TrainedModel
) -> None:
    m = mdl.score_model(trained.model(), ds, trained.holdout_index, trained.metrics.train_samples)
    assert (m.auc, m.log_loss, m.predicted_positive) == (
        trained.metrics.auc,
        trained.metrics.log_loss,
        trained.metrics.predicted_positive,
    )


def test_decide_promotion_with_the_default_zero_improvement_keeps_an_equal_challenger() -> None:
    ok, detail = mdl.decide_promotion(CHAMPION, CHAMPION)
    assert not ok
    assert detail.startswith("kept champion: ")


def test_challenge_scores_the_champion_on_the_challengers_held_out_rows(
    ds: dataset.Dataset, trained: mdl.TrainedModel
) -> None:
    champion = trained.model()
    params = mdl.TrainParams(rounds=40, nthread=2)
    challenger, ok, detail = mdl.challenge(champion, ds, params, seed=1, holdout_fraction=HOLDOUT)
    # the same data, parameters and seed give the same model: equal log-loss is not promoted
    assert challenger.blob == trained.blob
    assert not ok
    assert f"champion log-loss {trained.metrics.log_loss:.5f}" in detail
    _, ok_alone, _ = mdl.challenge(None, ds, params, seed=1, holdout_fraction=HOLDOUT)
    assert ok_alone


def test_model_record_and_meta_of_round_trip_the_meta_through_json(
    trained: mdl.TrainedModel,
) -> None:
    record = mdl.model_record(trained.meta)
    assert (record.version, record.status) == (0, "candidate")
    assert (record.auc, record.log_loss, record.hit_rate) == (
        trained.metrics.auc,
        trained.metrics.log_loss,
        trained.metrics.hit_rate,
    )
    assert record.label.horizon_bars == trained.meta.horizon_bars
    # PostgreSQL keeps params as jsonb: the meta must survive JSON (no NaN anywhere)
    stored = msgspec.json.decode(msgspec.json.encode(record), type=ModelVersionRecord)
    assert mdl.meta_of(stored) == trained.meta
    assert mdl.Model.from_blob(trained.blob, mdl.meta_of(stored), 5).version == 5


def test_meta_of_a_row_without_meta_raises() -> None:
    record = ModelVersionRecord(
        created_ms=0,
        feature_schema="x",
        sample_count=1,
        auc=0.5,
        log_loss=0.7,
        hit_rate=0.0,
        params={},
        label=LabelSpec(take_profit_pct=1.0, stop_loss_pct=0.5, horizon_bars=60),
        version=4,
    )
    with pytest.raises(ValueError, match="model 4 has no stored meta"):
        mdl.meta_of(record)


def test_train_model_refuses_a_held_out_part_of_one_class(ds: dataset.Dataset) -> None:
    y = ds.y.copy()
    _, hold = mdl.time_split(ds.time_ms, HOLDOUT, ds.horizon_bars)
    y[hold] = 0
    with pytest.raises(ValueError, match=r"held-out part's .* one class only"):
        mdl.train_model(dataclasses.replace(ds, y=y), mdl.TrainParams(rounds=5), 1, HOLDOUT)


def test_model_input_is_also_reachable_from_a_model(trained: mdl.TrainedModel) -> None:
    assert trained.model().model_input(np.zeros((1, 2)), 1).tolist() == [[0.0, 0.0, 1.0]]
