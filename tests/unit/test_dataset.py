"""Kline CSV loading and the labelled dataset, on slices of the real Binance 1m files."""

from __future__ import annotations

import gzip
from decimal import Decimal
from pathlib import Path

import msgspec
import numpy as np
import pytest
from numpy.typing import NDArray

from shared.core import features
from shared.learn import dataset
from shared.schemas.records import TradeRecord
from shared.shm.layout import KlineColumn

SYMBOLS = ("BTCUSDT", "ETHUSDT")
SLICE_BARS = 3000
MIN = 60_000


@pytest.fixture(scope="module")
def full() -> dict[str, NDArray[np.float64]]:
    return dataset.load_kline_csvs(dataset.DEFAULT_DATA_DIR, SYMBOLS)


@pytest.fixture(scope="module")
def histories(full: dict[str, NDArray[np.float64]]) -> dict[str, NDArray[np.float64]]:
    return {s: h[:SLICE_BARS] for s, h in full.items()}


def test_load_kline_csvs_returns_one_row_per_minute_in_kline_column_order(
    full: dict[str, NDArray[np.float64]],
) -> None:
    bars = full["BTCUSDT"]
    assert bars.shape == (41760, 6)
    assert bars.dtype == np.float64
    assert np.all(np.diff(bars[:, KlineColumn.OPEN_TIME_MS]) == MIN)
    # first row of BTCUSDT-1m-futures-2025-05-26_2025-06-23.csv.gz
    assert bars[0].tolist() == [1748217600000.0, 108956.0, 109002.6, 108901.4, 108901.4, 139.177]
    assert np.all(bars[:, KlineColumn.HIGH] >= bars[:, KlineColumn.LOW])


def _write_csv(path: Path, rows: NDArray[np.float64]) -> None:
    with gzip.open(path, "wt") as f:
        f.write("open_time,open,high,low,close,volume,close_time\n")
        for r in rows.tolist():
            f.write(
                f"{int(r[0])},{r[1]!r},{r[2]!r},{r[3]!r},{r[4]!r},{r[5]!r},{int(r[0]) + MIN - 1}\n"
            )


def test_load_kline_csvs_merges_overlapping_files_in_time_order(
    tmp_path: Path, full: dict[str, NDArray[np.float64]]
) -> None:
    rows = full["ETHUSDT"][:500]
    _write_csv(tmp_path / "ETHUSDT-1m-futures-b.csv.gz", rows[200:])
    _write_csv(tmp_path / "ETHUSDT-1m-futures-a.csv.gz", rows[:300])
    loaded = dataset.load_kline_csvs(tmp_path, ["ETHUSDT"])["ETHUSDT"]
    assert np.array_equal(loaded, rows)


def test_load_kline_csvs_without_a_file_names_the_symbol(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="NOPEUSDT"):
        dataset.load_kline_csvs(tmp_path, ["NOPEUSDT"])


def test_build_dataset_rows_are_finite_time_ordered_and_labelled(
    histories: dict[str, NDArray[np.float64]],
) -> None:
    ds = dataset.build_dataset(histories, 1.0, 0.5, 60, stride=1)
    n_cols = len(features.FEATURE_NAMES) + 1
    assert ds.X.shape == (len(ds), n_cols)
    assert dataset.COLUMN_NAMES[-1] == "direction"
    assert np.isfinite(ds.X).all()
    assert np.isfinite(ds.exit_return).all()
    assert np.all(np.diff(ds.time_ms) >= 0)
    assert set(np.unique(ds.y).tolist()) <= {0, 1}
    assert set(np.unique(ds.direction).tolist()) == {-1.0, 1.0}
    assert np.all((ds.exit_offset >= 1) & (ds.exit_offset <= 60))
    # take-profit rows return exactly +1 %; a stop returns -0.5 %
    assert np.all(ds.exit_return[ds.y == 1] == 0.01)
    # per symbol and direction: bars WINDOW_BARS-1 .. T-1-horizon, i.e. T - W + 1 - h rows
    per_side = SLICE_BARS - features.WINDOW_BARS + 1 - 60
    assert len(ds) == 2 * len(SYMBOLS) * per_side
    first_ms = histories["BTCUSDT"][features.WINDOW_BARS - 1, KlineColumn.OPEN_TIME_MS]
    last_ms = histories["BTCUSDT"][SLICE_BARS - 1 - 60, KlineColumn.OPEN_TIME_MS]
    assert (ds.time_ms.min(), ds.time_ms.max()) == (first_ms, last_ms)


def test_build_dataset_stride_samples_every_nth_bar(
    histories: dict[str, NDArray[np.float64]],
) -> None:
    ds = dataset.build_dataset(histories, 1.0, 0.5, 60, stride=5)
    start = histories["BTCUSDT"][0, KlineColumn.OPEN_TIME_MS]
    assert np.all((ds.time_ms - start) % (5 * MIN) == 0)
    assert len(ds) == pytest.approx((2 * 2 * (SLICE_BARS - 179)) / 5, abs=8)


def test_build_dataset_rejects_a_zero_stride(histories: dict[str, NDArray[np.float64]]) -> None:
    with pytest.raises(ValueError, match="stride=0"):
        dataset.build_dataset(histories, 1.0, 0.5, 60, stride=0)


def _trade(ds: dataset.Dataset, row: int, **changes: object) -> TradeRecord:
    values: dict[str, object] = {
        "trade_id": f"s{row}",
        "is_virtual": True,
        "symbol": "ETHUSDT",
        "side": "SELL",
        "quantity": Decimal("0.5"),
        "entry_price": Decimal("2000"),
        "entry_ms": 1_748_300_070_000,
        "exit_price": Decimal("1990"),
        "exit_ms": 1_748_300_070_000 + 150_000,
        "exit_reason": "take_profit",
        "gross_pnl_usdt": Decimal("5"),
        "fees_usdt": Decimal("0.8"),
        "funding_usdt": Decimal("0"),
        "net_pnl_usdt": Decimal("4.2"),
        "is_win": True,
        "confidence": 0.6,
        "model_version": 1,
        "feature_schema": features.FEATURE_SCHEMA,
        "features": tuple(ds.X[row, :-1].tolist()),
    }
    values.update(changes)
    return msgspec.convert(values, TradeRecord)


def test_trade_samples_turn_closed_trades_into_rows_of_the_same_shape(
    histories: dict[str, NDArray[np.float64]],
) -> None:
    ds = dataset.build_dataset(histories, 1.0, 0.5, 60, stride=50)
    trades = [
        _trade(ds, 0),
        _trade(ds, 1, exit_ms=None, net_pnl_usdt=None, is_win=None),  # still open: skipped
        _trade(ds, 2, feature_schema="0000000000000000"),  # another schema: skipped
        _trade(ds, 3, symbol="LTCUSDT"),  # not in the dataset: skipped
    ]
    got = dataset.trade_samples(trades, ds)
    assert len(got) == 1
    assert got.X[0].tolist() == [*ds.X[0, :-1].tolist(), -1.0]
    assert got.y.tolist() == [1]
    assert got.time_ms.tolist() == [1_748_300_040_000 - 60_000]  # last bar closed at entry
    assert got.symbol_index.tolist() == [1]
    assert got.exit_return.tolist() == [pytest.approx(4.2 / 1000)]
    assert got.exit_offset.tolist() == [3]  # 2.5 minutes held: 3 bars
    joined = dataset.concat(ds, got)
    assert len(joined) == len(ds) + 1
    assert np.all(np.diff(joined.time_ms) >= 0)
