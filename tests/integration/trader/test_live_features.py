"""The trader's live path (shared-memory windows -> compute_features) gives exactly the feature
rows training uses (shared.learn.dataset -> feature_history), on real bars."""

from __future__ import annotations

import numpy as np

from procs.trader.trading import read_windows
from shared.core import features as fe
from shared.learn.dataset import DEFAULT_DATA_DIR, build_dataset, load_kline_csvs
from shared.shm.rings import KlineReader, KlineWriter
from shared.shm.segment import unlink_segments

SYMBOLS = ("BTCUSDT", "ETHUSDT")
BARS = 300


def shm_row(bar: np.ndarray) -> list[float]:
    t, o, h, low, c, v = (float(x) for x in bar[:6])
    return [t, o, h, low, c, v, t + 59_999, c * v, 10.0, v / 2, c * v / 2]


def test_live_windows_from_shm_give_the_training_rows_bit_for_bit(instance: str) -> None:
    bars = {s: v[:BARS] for s, v in load_kline_csvs(DEFAULT_DATA_DIR, SYMBOLS).items()}
    writer = KlineWriter.open(instance, SYMBOLS, 500)
    reader = KlineReader(instance)
    try:
        for i in range(BARS):
            for s in SYMBOLS:
                writer.append(s, shm_row(bars[s][i]))
        minute = int(bars["BTCUSDT"][-1, 0])
        symbols, windows = read_windows(reader, SYMBOLS, minute)
        live = fe.compute_features(windows)
        assert symbols == list(SYMBOLS)
        for j, s in enumerate(SYMBOLS):
            trained = fe.feature_history(bars[s])[-1]
            assert np.isfinite(live[j]).all()
            np.testing.assert_array_equal(live[j], trained)
        # The dataset's long row for the last labelled bar is the same computation.
        ds = build_dataset({"BTCUSDT": bars["BTCUSDT"]}, horizon_bars=5)
        last = ds.time_ms == int(bars["BTCUSDT"][-6, 0])
        expected = fe.feature_history(bars["BTCUSDT"])[-6]
        np.testing.assert_array_equal(ds.X[last & (ds.direction == 1)][0, :-1], expected)
        # A minute the shm does not end with yields nothing (no stale decision).
        assert read_windows(reader, SYMBOLS, minute + 60_000)[0] == []
    finally:
        reader.close()
        writer.close()
        unlink_segments(instance)
