"""Load the replayed market data: 1-minute klines and funding-rate history, one `Replay` per symbol.

Files (see `data/PROVENANCE.md`), found by symbol under `data_dir`:
- `klines/<SYM>-1m-futures-*.csv[.gz]`: `open_time,open,high,low,close,volume,close_time`, times in
  integer UTC ms, consecutive minutes without gaps, prices and volumes as decimal strings in their
  shortest form (`108956` for `108956.00`).
- `funding/<SYM>-funding-rate-*.csv[.gz]`: `funding_time,funding_rate`, ascending.

Values are kept exact: every decimal column becomes int64 counts of 10**-decimals, where
`decimals` is the largest number of decimals seen in that column of that file. This is the only
module of the paper exchange that reads files, and it does so once, at start.

Errors: `DataError` (a ValueError), one sentence naming the file, the line and the problem.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

KLINE_HEADER = "open_time,open,high,low,close,volume,close_time"
FUNDING_HEADER = "funding_time,funding_rate"
MINUTE_MS = 60_000

_INTEGER = r"[0-9]+"
_UNSIGNED = r"[0-9]+(?:\.[0-9]+)?"
_SIGNED = r"-?[0-9]+(?:\.[0-9]+)?"

Int64Array = npt.NDArray[np.int64]


class DataError(ValueError):
    """A replay data file is missing, malformed or inconsistent with the symbol's spec."""


@dataclass(frozen=True, slots=True)
class Replay:
    """One symbol's replay data; decimal columns are int64 counts of 10**-<column>_decimals."""

    symbol: str
    open_time_ms: Int64Array  # (n,) minute open times, consecutive
    ohlc_units: Int64Array  # (n, 4) open, high, low, close
    price_decimals: int
    volume_units: Int64Array  # (n,) base-asset volume
    volume_decimals: int
    funding_time_ms: Int64Array  # (m,) ascending, with Binance's few-ms jitter
    funding_rate_units: Int64Array  # (m,)
    funding_decimals: int

    @property
    def n_rows(self) -> int:
        """Number of 1-minute rows."""
        return int(self.open_time_ms.shape[0])


def _read_lines(path: Path) -> list[str]:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="ascii", newline="") as f:
                text = f.read()
        else:
            text = path.read_text(encoding="ascii")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise DataError(f"replay: {path} cannot be read: {e}") from e
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _find_file(data_dir: Path, folder: str, pattern: str) -> Path:
    matches = sorted((data_dir / folder).glob(pattern + ".csv")) + sorted(
        (data_dir / folder).glob(pattern + ".csv.gz")
    )
    if len(matches) != 1:
        found = "no file" if not matches else f"{len(matches)} files"
        raise DataError(f"replay: {data_dir / folder}/{pattern}.csv[.gz] matches {found}, need 1")
    return matches[0]


def _split(path: Path, lines: list[str], header: str) -> list[list[str]]:
    """Check the header and the field count of every row; return the columns (column-major)."""
    if not lines or lines[0].strip() != header:
        got = lines[0][:80] if lines else ""
        raise DataError(f"replay: {path} line 1 is {got!r}, expected header {header!r}")
    if len(lines) == 1:
        raise DataError(f"replay: {path} has a header and no data rows")
    n_fields = header.count(",") + 1
    fields = ",".join(lines[1:]).split(",")
    if len(fields) != n_fields * (len(lines) - 1):
        for number, line in enumerate(lines[1:], start=2):
            if line.count(",") != n_fields - 1:
                raise DataError(
                    f"replay: {path} line {number} has {line.count(',') + 1} fields,"
                    f" expected {n_fields}"
                )
    return [fields[i::n_fields] for i in range(n_fields)]


def _column(
    path: Path, columns: list[list[str]], column: int, name: str, pattern: str
) -> list[str]:
    """Return one column's strings after checking each matches `pattern` (one regex pass)."""
    values = columns[column]
    if re.fullmatch(f"{pattern}(?:\n{pattern})*", "\n".join(values)) is None:
        for number, value in enumerate(values, start=2):
            if re.fullmatch(pattern, value) is None:
                raise DataError(f"replay: {path} line {number} {name}={value!r} is not a number")
    return values


def _column_units(
    path: Path, columns: list[list[str]], column: int, name: str, pattern: str = _UNSIGNED
) -> tuple[Int64Array, int]:
    """Parse one decimal column into int64 units of 10**-decimals, returning (units, decimals)."""
    values = _column(path, columns, column, name, pattern)
    decimals = max(map(len, re.findall(r"\.([0-9]+)", "\n".join(values))), default=0)
    # Fast path through float64, kept only when exact: every value is below 2**53 units, and
    # converting the units back reproduces the float parsed from the text.
    floats = np.array(values, dtype=np.float64)
    scaled = floats * float(10**decimals)
    if np.abs(scaled).max() < 2.0**52:
        units = np.rint(scaled).astype(np.int64)
        if np.array_equal(units / float(10**decimals), floats):
            return units, decimals
    exact = []
    for number, value in enumerate(values, start=2):
        whole, _, fraction = value.partition(".")
        unit = int(whole + fraction + "0" * (decimals - len(fraction)))
        if not -(2**62) < unit < 2**62:
            raise DataError(f"replay: {path} line {number} {name}={value!r} is out of range")
        exact.append(unit)
    return np.array(exact, dtype=np.int64), decimals


def _column_ints(path: Path, columns: list[list[str]], column: int, name: str) -> Int64Array:
    values = _column(path, columns, column, name, _INTEGER)
    return np.array([int(v) for v in values], dtype=np.int64)


def _first_bad(mask: npt.NDArray[np.bool_]) -> int:
    """Return the file line number (header = 1) of the first True in `mask`."""
    return int(np.argmax(mask)) + 2


def load_klines(path: Path, symbol: str) -> tuple[Int64Array, Int64Array, int, Int64Array, int]:
    """Read one 1m kline file: (open_ms, ohlc_units, price_decimals, volume_units, decimals)."""
    columns = _split(path, _read_lines(path), KLINE_HEADER)
    open_ms = _column_ints(path, columns, 0, "open_time")
    close_ms = _column_ints(path, columns, 6, "close_time")
    prices = [
        _column_units(path, columns, i, name)
        for i, name in ((1, "open"), (2, "high"), (3, "low"), (4, "close"))
    ]
    price_decimals = max(decimals for _, decimals in prices)
    ohlc = np.stack(
        [units * 10 ** (price_decimals - decimals) for units, decimals in prices], axis=1
    )
    volume, volume_decimals = _column_units(path, columns, 5, "volume")
    checks = [
        (open_ms % MINUTE_MS != 0, "open_time is not on a minute boundary"),
        (close_ms != open_ms + MINUTE_MS - 1, "close_time is not open_time + 59999"),
        (ohlc[:, 1] < ohlc.max(axis=1), "high is below open, low or close"),
        (ohlc[:, 2] > ohlc.min(axis=1), "low is above open, high or close"),
        (ohlc[:, 2] <= 0, "low is not above 0"),
    ]
    if len(open_ms) > 1:
        gap = np.concatenate([[False], np.diff(open_ms) != MINUTE_MS])
        checks.append((gap, "open_time does not follow the previous row by one minute"))
    for mask, problem in checks:
        if mask.any():
            raise DataError(f"replay: {path} line {_first_bad(mask)} {problem} ({symbol})")
    return open_ms, ohlc, price_decimals, volume, volume_decimals


def load_funding(path: Path) -> tuple[Int64Array, Int64Array, int]:
    """Read one funding-rate file: (funding_time_ms, rate_units, rate_decimals)."""
    columns = _split(path, _read_lines(path), FUNDING_HEADER)
    times = _column_ints(path, columns, 0, "funding_time")
    rates, decimals = _column_units(path, columns, 1, "funding_rate", _SIGNED)
    if len(times) > 1:
        bad = np.concatenate([[False], np.diff(times) <= 0])
        if bad.any():
            raise DataError(f"replay: {path} line {_first_bad(bad)} funding_time does not increase")
    return times, rates, decimals


def load_replay(data_dir: Path, symbols: Sequence[str]) -> dict[str, Replay]:
    """Load klines and funding for each symbol from `data_dir`; raise DataError on any problem."""
    replays = {}
    for symbol in symbols:
        kline_path = _find_file(data_dir, "klines", f"{symbol}-1m-futures-*")
        open_ms, ohlc, price_decimals, volume, volume_decimals = load_klines(kline_path, symbol)
        funding_path = _find_file(data_dir, "funding", f"{symbol}-funding-rate-*")
        funding_ms, rates, rate_decimals = load_funding(funding_path)
        replays[symbol] = Replay(
            symbol=symbol,
            open_time_ms=open_ms,
            ohlc_units=ohlc,
            price_decimals=price_decimals,
            volume_units=volume,
            volume_decimals=volume_decimals,
            funding_time_ms=funding_ms,
            funding_rate_units=rates,
            funding_decimals=rate_decimals,
        )
    return replays
