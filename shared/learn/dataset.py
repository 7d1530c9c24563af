"""Training data: 1m kline histories (CSV files or the exchange) turned into labelled samples.

Sources
  - `load_kline_csvs`: `<data_dir>/<SYMBOL>-1m-futures-*.csv.gz`, gzip CSV with a header naming at
    least open_time, open, high, low, close, volume (Binance's public data layout).
  - `fetch_history`: `GET /fapi/v1/klines` paged backwards, 1500 bars a page, closed bars only.
Both return per symbol a (T, 6) float64 array in `KlineColumn` order, oldest bar first, one row
per open time.

Samples (`build_dataset`): for each symbol, each bar t with t % stride == 0 and each direction
d in (+1 long, -1 short): X = feature_history(bars)[t] + [d]; y and exit_return/exit_offset from
labels.barrier_outcomes (entry at close[t], the next horizon_bars bars). Rows with a NaN feature
(the first WINDOW_BARS - 1 bars, bad prices) or an unknown label (the horizon runs past the data)
are dropped. time_ms is bar t's open time; the decision is taken at its close. Rows are ordered
by (time_ms, symbol, direction long first). `trade_samples` turns closed trades (their recorded
feature rows) into rows of the same shape; `concat` joins two datasets in time order.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from shared.core import features, labels
from shared.exchange.errors import RateLimitedError
from shared.exchange.rest import ExchangeClient
from shared.schemas.binance import Kline
from shared.schemas.records import TradeRecord
from shared.shm.layout import KlineColumn

# Label defaults (the trader config mirrors them; a model's meta records the ones it learned).
TAKE_PROFIT_PCT = 1.0  # take-profit barrier, percent of entry price
STOP_LOSS_PCT = 0.5  # stop-loss barrier, percent of entry price
HORIZON_BARS = 60  # 1m bars the barriers are watched for
BAR_MS = 60_000  # one 1m bar, milliseconds

DEFAULT_DATA_DIR = (
    Path(__file__).resolve().parents[2] / "procs" / "paper_exchange" / "data" / "klines"
)
KLINES_PAGE_LIMIT = 1500  # Binance's maximum `limit` for /fapi/v1/klines (weight 10)
RATE_LIMIT_RETRIES = 3  # consecutive weight-budget refusals of one page before giving up
_CSV_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
DIRECTION_NAME = "direction"
COLUMN_NAMES: tuple[str, ...] = (*features.FEATURE_NAMES, DIRECTION_NAME)


@dataclass(frozen=True)
class Dataset:
    """Labelled samples, one row per (symbol, bar, direction)."""

    X: NDArray[np.float64]  # (n, F + 1): COLUMN_NAMES, the last column the direction (+1 / -1)
    y: NDArray[np.int8]  # 1 take-profit first, 0 stop first or neither within the horizon
    time_ms: NDArray[np.int64]  # open time of the entry bar (entry at its close), ms
    symbol_index: NDArray[np.int32]  # index into `symbols`
    exit_return: NDArray[np.float64]  # barrier exit return signed for the direction, fraction
    exit_offset: NDArray[np.int32]  # bars from entry to exit
    symbols: tuple[str, ...]
    take_profit_pct: float
    stop_loss_pct: float
    horizon_bars: int

    def __len__(self) -> int:
        return len(self.y)

    @property
    def direction(self) -> NDArray[np.float64]:
        """Return the direction column (+1 long, -1 short)."""
        return self.X[:, -1]

    def subset(self, idx: NDArray[np.intp]) -> Dataset:
        """Return the rows idx (in that order)."""
        return Dataset(
            self.X[idx],
            self.y[idx],
            self.time_ms[idx],
            self.symbol_index[idx],
            self.exit_return[idx],
            self.exit_offset[idx],
            self.symbols,
            self.take_profit_pct,
            self.stop_loss_pct,
            self.horizon_bars,
        )


def concat(a: Dataset, b: Dataset) -> Dataset:
    """Return the rows of both (same symbols and labels), ordered by time (a's rows first)."""
    if (a.symbols, a.take_profit_pct, a.stop_loss_pct, a.horizon_bars) != (
        b.symbols,
        b.take_profit_pct,
        b.stop_loss_pct,
        b.horizon_bars,
    ):
        raise ValueError("dataset: cannot join datasets of other symbols or label parameters")
    order = np.argsort(np.concatenate([a.time_ms, b.time_ms]), kind="stable")
    return Dataset(
        np.concatenate([a.X, b.X])[order],
        np.concatenate([a.y, b.y])[order],
        np.concatenate([a.time_ms, b.time_ms])[order],
        np.concatenate([a.symbol_index, b.symbol_index])[order],
        np.concatenate([a.exit_return, b.exit_return])[order],
        np.concatenate([a.exit_offset, b.exit_offset])[order],
        a.symbols,
        a.take_profit_pct,
        a.stop_loss_pct,
        a.horizon_bars,
    )


def trade_samples(trades: Sequence[TradeRecord], like: Dataset) -> Dataset:
    """Return closed trades (real and virtual) as samples shaped like `like`.

    Row = the trade's recorded feature row + direction (BUY +1, SELL -1); y = is_win (net PnL
    > 0: the guard's exits, not the barrier label, so a rough stand-in for it); time_ms = the
    open time of the last bar closed at entry; exit_return = net PnL / entry notional;
    exit_offset = whole bars held (>= 1). Open trades, trades of another feature schema or
    width, and symbols outside `like.symbols` are skipped.
    """
    n_features = len(features.FEATURE_NAMES)
    index = {s: i for i, s in enumerate(like.symbols)}
    kept = [
        t
        for t in trades
        if t.exit_ms is not None
        and t.net_pnl_usdt is not None
        and t.is_win is not None
        and t.feature_schema == features.FEATURE_SCHEMA
        and len(t.features) == n_features
        and t.symbol in index
        and t.quantity > 0
        and t.entry_price > 0
    ]
    n = len(kept)
    X = np.empty((n, n_features + 1), dtype=np.float64)
    for row, t in enumerate(kept):
        X[row, :-1] = t.features
        X[row, -1] = 1.0 if t.side == "BUY" else -1.0
    entry_ms = np.array([t.entry_ms for t in kept], dtype=np.int64)
    held_ms = np.array([(t.exit_ms or t.entry_ms) - t.entry_ms for t in kept], dtype=np.int64)
    return Dataset(
        X,
        np.array([1 if t.is_win else 0 for t in kept], dtype=np.int8),
        entry_ms // BAR_MS * BAR_MS - BAR_MS,
        np.array([index[t.symbol] for t in kept], dtype=np.int32),
        np.array(
            [float((t.net_pnl_usdt or 0) / (t.quantity * t.entry_price)) for t in kept],
            dtype=np.float64,
        ),
        np.maximum(1, -(-held_ms // BAR_MS)).astype(np.int32),
        like.symbols,
        like.take_profit_pct,
        like.stop_loss_pct,
        like.horizon_bars,
    )


def _read_csv(path: Path) -> NDArray[np.float64]:
    with gzip.open(path, "rt") as f:
        header = f.readline().strip().split(",")
        missing = [c for c in _CSV_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path.name} lacks the columns {missing}; header is {header}")
        cols = [header.index(c) for c in _CSV_COLUMNS]
        data = np.loadtxt(f, delimiter=",", usecols=cols, dtype=np.float64, ndmin=2)
    return data


def load_kline_csvs(data_dir: Path, symbols: Sequence[str]) -> dict[str, NDArray[np.float64]]:
    """Return each symbol's 1m klines (T, 6) from its gzip CSV files, oldest first.

    Raises FileNotFoundError when a symbol has no file, ValueError for a file without the columns.
    """
    out: dict[str, NDArray[np.float64]] = {}
    for symbol in symbols:
        paths = sorted(Path(data_dir).glob(f"{symbol}-1m-futures-*.csv.gz"))
        if not paths:
            raise FileNotFoundError(f"no {symbol}-1m-futures-*.csv.gz in {data_dir}")
        out[symbol] = _sorted_unique(np.concatenate([_read_csv(p) for p in paths]))
    return out


def _sorted_unique(bars: NDArray[np.float64]) -> NDArray[np.float64]:
    _, first = np.unique(bars[:, KlineColumn.OPEN_TIME_MS], return_index=True)
    return np.ascontiguousarray(bars[first])  # np.unique sorts by open time


async def _klines_page(client: ExchangeClient, symbol: str, end_ms: int | None) -> list[Kline]:
    """Return one page; a rate-limit refusal (nothing sent) waits as told and retries."""
    for attempt in range(RATE_LIMIT_RETRIES + 1):
        try:
            return await client.klines(symbol, "1m", end_ms=end_ms, limit=KLINES_PAGE_LIMIT)
        except RateLimitedError as e:
            if attempt == RATE_LIMIT_RETRIES:
                raise
            await asyncio.sleep(min(max(e.retry_after_s or 1.0, 0.1), 61.0))
    raise AssertionError("unreachable")  # the loop returns or raises


async def fetch_history(
    client: ExchangeClient, symbols: Sequence[str], bars: int, end_ms: int | None = None
) -> dict[str, NDArray[np.float64]]:
    """Return each symbol's last `bars` closed 1m klines (T <= bars, 6), oldest first.

    Pages `GET /fapi/v1/klines` backwards (1500 a page, weight 10 each) from end_ms (default: now);
    a bar still open by the server's clock is dropped. Fewer bars come back when the exchange has
    no older ones. A page refused by the weight budget (RateLimitedError, nothing sent) is
    retried after its retry_after_s, up to RATE_LIMIT_RETRIES times. Raises the client's other
    errors; on cancellation nothing is returned.
    """
    out: dict[str, NDArray[np.float64]] = {}
    for symbol in symbols:
        rows: list[tuple[float, ...]] = []
        page_end = end_ms
        while len(rows) < bars:
            page = await _klines_page(client, symbol, page_end)
            closed = [
                (
                    float(k.open_time_ms),
                    float(k.open),
                    float(k.high),
                    float(k.low),
                    float(k.close),
                    float(k.volume),
                )
                for k in page
                if k.is_closed
            ]
            rows = closed + rows
            if len(page) < KLINES_PAGE_LIMIT or not page:
                break  # the exchange has no older bars
            page_end = page[0].open_time_ms - 1
        if not rows:
            out[symbol] = np.empty((0, 6), dtype=np.float64)
            continue
        out[symbol] = _sorted_unique(np.asarray(rows, dtype=np.float64))[-bars:]
    return out


def build_dataset(
    histories: Mapping[str, NDArray[np.float64]],
    take_profit_pct: float = TAKE_PROFIT_PCT,
    stop_loss_pct: float = STOP_LOSS_PCT,
    horizon_bars: int = HORIZON_BARS,
    stride: int = 1,
) -> Dataset:
    """Return the labelled samples of every symbol's history (rule in the module docstring)."""
    if stride < 1:
        raise ValueError(f"dataset: stride={stride} must be at least 1")
    symbols = tuple(histories)
    parts: list[
        tuple[
            NDArray[np.float64],
            NDArray[np.int8],
            NDArray[np.int64],
            NDArray[np.int32],
            NDArray[np.float64],
            NDArray[np.int32],
        ]
    ] = []
    for s_idx, symbol in enumerate(symbols):
        bars = histories[symbol]
        if len(bars) == 0:
            continue
        feats = features.feature_history(bars)
        rows = np.arange(0, len(bars), stride)
        is_finite = np.isfinite(feats[rows]).all(axis=1)
        high = np.ascontiguousarray(bars[:, KlineColumn.HIGH])
        low = np.ascontiguousarray(bars[:, KlineColumn.LOW])
        close = np.ascontiguousarray(bars[:, KlineColumn.CLOSE])
        for direction in (1, -1):
            out = labels.barrier_outcomes(
                high, low, close, direction, take_profit_pct, stop_loss_pct, horizon_bars
            )
            keep = rows[is_finite & (out.label[rows] >= 0)]
            x = np.empty((len(keep), feats.shape[1] + 1), dtype=np.float64)
            x[:, :-1] = feats[keep]
            x[:, -1] = direction
            parts.append(
                (
                    x,
                    out.label[keep].astype(np.int8),
                    bars[keep, KlineColumn.OPEN_TIME_MS].astype(np.int64),
                    np.full(len(keep), s_idx, dtype=np.int32),
                    out.exit_return[keep].astype(np.float64),
                    out.exit_offset[keep].astype(np.int32),
                )
            )
    n_cols = len(COLUMN_NAMES)
    if not parts:
        parts.append(
            (
                np.empty((0, n_cols)),
                np.empty(0, np.int8),
                np.empty(0, np.int64),
                np.empty(0, np.int32),
                np.empty(0),
                np.empty(0, np.int32),
            )
        )
    X, y, t, s, r, o = (np.concatenate([p[i] for p in parts]) for i in range(6))
    # Time, then symbol, then long (+1) before short (-1).
    order = np.lexsort((-X[:, -1], s, t))
    return Dataset(
        X[order],
        y[order],
        t[order],
        s[order],
        r[order],
        o[order],
        symbols,
        take_profit_pct,
        stop_loss_pct,
        horizon_bars,
    )
