"""One symbol's replay laid out over the ping-pong period, with O(1) range statistics.

Sequence index `k` (any integer) plays position `k mod P` of a period of `P = 2n` minutes: the
`n` data rows forward, then the same rows backward with open and close swapped (high and low
kept). `Market` maps sim minutes to `k`; this module answers "what happened over minutes
[k0, k1)" for klines of any interval in constant time: sums from prefix sums, high and low from
a sparse table over blocks of the period.

Values are integers: prices in units of 10**-price_decimals, quantities in 10**-qty_decimals,
quote amounts in 10**-quote_decimals.

Derived columns (the source has no quote volume, trade count or taker-buy volumes; see
`data/PROVENANCE.md`), per minute with typical4 = open + high + low + close:
- quote = volume * typical4 / 4, rounded half up to quote_decimals;
- taker_buy = floor(volume * (close - low) / (high - low)), or floor(volume / 2) when high == low;
- taker_buy_quote = taker_buy * typical4 / 4, rounded half up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from procs.paper_exchange.market.replay import DataError, Replay

Int64Array = npt.NDArray[np.int64]

_BLOCK = 64
_SAFE = 2.0**62


def quote_units(volume: int, typical4: int, shift: int) -> int:
    """Return volume * typical4 / 4 scaled by 10**shift, rounded half up (non-negative inputs)."""
    scale_up: int = 10 ** max(shift, 0)
    denominator: int = 4 * 10 ** max(-shift, 0)
    return (2 * volume * typical4 * scale_up + denominator) // (2 * denominator)


def taker_buy_units(volume: int, close: int, high: int, low: int) -> int:
    """Return the derived taker-buy part of `volume` (see the module docstring)."""
    if high == low:
        return volume // 2
    return volume * (close - low) // (high - low)


def _quote_array(volume: Int64Array, typical4: Int64Array, shift: int, what: str) -> Int64Array:
    scale_up: int = 10 ** max(shift, 0)
    denominator: int = 4 * 10 ** max(-shift, 0)
    if float(volume.max()) * float(typical4.max()) * 2.0 * scale_up >= _SAFE:
        raise DataError(f"series: {what} volume * price overflows int64 at this precision")
    numerator: Int64Array = volume * typical4 * scale_up
    result: Int64Array = (2 * numerator + denominator) // (2 * denominator)
    return result


class _PrefixSums:
    """Exact prefix sums of several non-negative int64 columns at once.

    Each column is split in 32-bit halves before summing, so no partial sum overflows int64
    (a period has under 2**31 rows); one table row read gives every column's sum.
    """

    def __init__(self, columns: tuple[Int64Array, ...]) -> None:
        halves = [half for c in columns for half in (c >> 32, c & 0xFFFF_FFFF)]
        table = np.cumsum(np.stack(halves, axis=1), axis=0)
        self._table = np.concatenate([np.zeros((1, len(halves)), dtype=np.int64), table])
        self.totals = self.at(len(columns[0]))

    def at(self, i: int) -> list[int]:
        """Return the sum of each column over rows [0, i)."""
        row: list[int] = self._table[i].tolist()
        return [(row[j] << 32) + row[j + 1] for j in range(0, len(row), 2)]


class _RangeMax:
    """Maximum over any [a, b) of a fixed array: blocks of 64 plus a sparse table over blocks."""

    def __init__(self, values: Int64Array) -> None:
        self._values = values
        n_blocks = -(-len(values) // _BLOCK)
        padded = np.full(n_blocks * _BLOCK, np.iinfo(np.int64).min, dtype=np.int64)
        padded[: len(values)] = values
        level = padded.reshape(n_blocks, _BLOCK).max(axis=1)
        self._table = [level]
        width = 1
        while 2 * width <= n_blocks:
            level = np.maximum(level[:-width], level[width:])
            self._table.append(level)
            width *= 2

    def query(self, a: int, b: int) -> int:
        """Return max(values[a:b]) for 0 <= a < b <= len(values)."""
        if b - a <= 2 * _BLOCK:
            return int(self._values[a:b].max())
        first_block = -(-a // _BLOCK)
        last_block = b // _BLOCK
        best = int(self._values[a : first_block * _BLOCK].max()) if a % _BLOCK else None
        if last_block * _BLOCK < b:
            tail = int(self._values[last_block * _BLOCK : b].max())
            best = tail if best is None else max(best, tail)
        if last_block > first_block:
            level = (last_block - first_block).bit_length() - 1
            row = self._table[level]
            blocks = max(int(row[first_block]), int(row[last_block - (1 << level)]))
            best = blocks if best is None else max(best, blocks)
        assert best is not None
        return best


@dataclass(frozen=True, slots=True)
class Stats:
    """Aggregate of whole minutes: prices, quantities and quote amounts in integer units."""

    open: int
    high: int
    low: int
    close: int
    volume: int
    quote: int
    taker_buy: int
    taker_buy_quote: int


class Series:
    """Replay rows over the ping-pong period, in the exchange's integer units."""

    def __init__(self, replay: Replay, price_mult: int, qty_mult: int, quote_shift: int) -> None:
        """Scale replay units by `price_mult` / `qty_mult`; quote amounts at 10**quote_shift.

        `quote_shift` = quote_decimals - price_decimals - qty_decimals (after scaling).
        """
        n = replay.n_rows
        self.n_rows = n
        self.period = 2 * n
        self.quote_shift = quote_shift
        forward = replay.ohlc_units * price_mult
        backward = forward[::-1][:, [3, 1, 2, 0]]  # rows reversed, open and close swapped
        ohlc = np.concatenate([forward, backward])
        self.open, self.high, self.low, self.close = (ohlc[:, i].copy() for i in range(4))
        volume = replay.volume_units * qty_mult
        self.volume = np.concatenate([volume, volume[::-1]])
        typical4 = ohlc.sum(axis=1)
        self.quote = _quote_array(self.volume, typical4, quote_shift, replay.symbol)
        spread = self.high - self.low
        self.taker_buy = np.where(
            spread == 0,
            self.volume // 2,
            self.volume * (self.close - self.low) // np.where(spread == 0, 1, spread),
        )
        self.taker_buy_quote = _quote_array(self.taker_buy, typical4, quote_shift, replay.symbol)
        self._columns = (self.volume, self.quote, self.taker_buy, self.taker_buy_quote)
        self._sums = _PrefixSums(self._columns)
        self._high = _RangeMax(self.high)
        self._low = _RangeMax(-self.low)
        self._max_high = int(self.high.max())
        self._min_low = int(self.low.min())
        # Funding rate in force per data row: the last funding row whose minute is not after the
        # row's open (funding times carry a few ms of jitter, so compare whole minutes).
        funding_minute = replay.funding_time_ms - replay.funding_time_ms % 60_000
        in_force = np.searchsorted(funding_minute, replay.open_time_ms, side="right") - 1
        self._funding_by_row = replay.funding_rate_units[np.maximum(in_force, 0)]

    def position(self, k: int) -> int:
        """Return the period position that sequence index `k` plays."""
        return k % self.period

    def row(self, k: int) -> tuple[int, bool]:
        """Return (data row, is_reversed) played at sequence index `k`."""
        p = k % self.period
        return (p, False) if p < self.n_rows else (self.period - 1 - p, True)

    def funding_units(self, k: int) -> int:
        """Return the funding rate (replay units) in force at the data row played at `k`."""
        return int(self._funding_by_row[self.row(k)[0]])

    def _through(self, k: int) -> list[int]:
        """Return the column sums over sequence indexes [0, k) (negative k allowed)."""
        periods, rest = divmod(k, self.period)
        partial = self._sums.at(rest)
        return [
            periods * total + part for total, part in zip(self._sums.totals, partial, strict=True)
        ]

    def _extreme(self, table: _RangeMax, k0: int, k1: int) -> int:
        a = k0 % self.period
        b = a + (k1 - k0)
        if b <= self.period:
            return table.query(a, b)
        return max(table.query(a, self.period), table.query(0, b - self.period))

    def stats(self, k0: int, k1: int) -> Stats:
        """Aggregate the whole minutes k0 .. k1-1 (k1 > k0)."""
        if k1 - k0 == 1:  # one minute, the common case (1m klines): read the row
            p = k0 % self.period
            return Stats(
                *(int(column[p]) for column in (self.open, self.high, self.low, self.close)),
                *(int(column[p]) for column in self._columns),
            )
        if k1 - k0 >= self.period:
            high, low = self._max_high, self._min_low
        else:
            high = self._extreme(self._high, k0, k1)
            low = -self._extreme(self._low, k0, k1)
        sums = [b - a for a, b in zip(self._through(k0), self._through(k1), strict=True)]
        return Stats(
            int(self.open[k0 % self.period]),
            high,
            low,
            int(self.close[(k1 - 1) % self.period]),
            *sums,
        )
