"""The trader scores a minute in chunks while its closes arrive
(procs.trader.trading.MinuteScores): the
result must be exactly the one batch's, in the configured order, and never mix minutes or models."""

from __future__ import annotations

import numpy as np
import pytest

from procs.trader.trading import MinuteScores, read_windows
from shared.core import features as fe
from shared.learn.dataset import DEFAULT_DATA_DIR, build_dataset, load_kline_csvs
from shared.learn.model import Model, TrainParams, train_model
from shared.shm.rings import KlineReader, KlineWriter
from shared.shm.segment import unlink_segments

SYMBOLS = ("BTCUSDT", "ETHUSDT", "ADAUSDT", "LTCUSDT", "XRPUSDT", "DOGEUSDT")
BARS = 200


def shm_row(bar: np.ndarray) -> list[float]:
    t, o, h, low, c, v = (float(x) for x in bar[:6])
    return [t, o, h, low, c, v, t + 59_999, c * v, 10.0, v / 2, c * v / 2]


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return load_kline_csvs(DEFAULT_DATA_DIR, SYMBOLS)


def small_model(data: dict[str, np.ndarray], seed: int) -> Model:
    ds = build_dataset({s: v[:3000] for s, v in data.items()}, horizon_bars=30)
    trained = train_model(ds, TrainParams(rounds=30, nthread=1), seed=seed)
    return Model.from_blob(trained.blob, trained.meta)


def one_batch(
    reader: KlineReader, model: Model, minute: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    symbols, windows = read_windows(reader, SYMBOLS, minute)
    feats = fe.compute_features(windows)
    n = len(symbols)
    both = model.predict(np.vstack([model.model_input(feats, 1), model.model_input(feats, -1)]))
    return symbols, feats, np.column_stack([both[:n], both[n:], windows[:, -1, 4]])


def test_chunks_give_the_one_batch_result_in_configured_order(
    instance: str, data: dict[str, np.ndarray]
) -> None:
    model = small_model(data, seed=1)
    writer = KlineWriter.open(instance, SYMBOLS, 500)
    reader = KlineReader(instance)
    try:
        for i in range(BARS - 1):
            for s in SYMBOLS:
                writer.append(s, shm_row(data[s][i]))
        minute = int(data["BTCUSDT"][BARS - 1, 0])
        scores = MinuteScores(SYMBOLS)
        # The burst arrives out of the configured order; a symbol whose bar is not in shm yet is
        # not scored (and not marked done) even when named.
        first = ("XRPUSDT", "BTCUSDT")
        for s in first:
            writer.append(s, shm_row(data[s][BARS - 1]))
        assert scores.add(reader, model, minute, (*first, "ADAUSDT")) == 2
        assert scores.done == set(first)
        for s in SYMBOLS:
            if s not in first:
                writer.append(s, shm_row(data[s][BARS - 1]))
        assert scores.add(reader, model, minute, ("ADAUSDT", "BTCUSDT")) == 1  # BTC: done
        assert scores.add(reader, model, minute, SYMBOLS) == 3
        assert scores.add(reader, model, minute, SYMBOLS) == 0
        symbols, feats, scored = scores.take()
        want_symbols, want_feats, want_scored = one_batch(reader, model, minute)
        assert symbols == list(SYMBOLS) == want_symbols
        assert np.isfinite(scored).all()
        np.testing.assert_array_equal(feats, want_feats)
        np.testing.assert_array_equal(scored, want_scored)
        assert scores.take()[0] == []  # taken once

        # A swapped model rescores everything; so does the next minute.
        other = small_model(data, seed=2)
        assert scores.add(reader, model, minute, SYMBOLS[:2]) == 2
        assert scores.add(reader, other, minute, SYMBOLS) == len(SYMBOLS)
        _, _, swapped = scores.take()
        np.testing.assert_array_equal(swapped, one_batch(reader, other, minute)[2])
        assert not np.array_equal(swapped[:, :2], want_scored[:, :2])
        assert scores.add(reader, other, minute, SYMBOLS[:3]) == 3
        nxt = minute + 60_000
        for s in SYMBOLS:
            writer.append(s, shm_row(data[s][BARS]))
        assert scores.add(reader, other, nxt, SYMBOLS) == len(SYMBOLS)
        symbols, _, scored = scores.take()
        assert symbols == list(SYMBOLS)
        np.testing.assert_array_equal(scored, one_batch(reader, other, nxt)[2])
        # A minute the windows do not end with scores nothing (no stale decision).
        assert scores.add(reader, other, minute, SYMBOLS) == 0
    finally:
        reader.close()
        writer.close()
        unlink_segments(instance)
