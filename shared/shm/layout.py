"""The kline segment's layout and index arithmetic: pure functions of counters, no mapping.

Each symbol's ring of `window_bars` rows is stored twice ("double-write"): the bar with append
counter c goes to row c % window_bars and to row c % window_bars + window_bars. The last k bars
(k <= window_bars) are then always one contiguous slice of the 2 * window_bars rows, so a reader
can hand out a numpy view of them without copying or concatenating (`window_rows`).

A view of the last k bars taken when the counter was n covers bars n - k .. n - 1. Append c
rewrites rows c % window_bars (+ window_bars), which hold bar c - window_bars: the first append
that touches the view is bar n - k + window_bars, the (window_bars - k + 1)-th append after it.
So a view survives exactly `window_bars - k` appends (`view_survives`), counted from the
seqlock word, which each append moves by 2 (odd while the append is in progress).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from shared.shm.segment import HEADER_BYTES, align

LAYOUT_VERSION = 2  # 2: every ring stored twice (contiguous windows); 1: single ring
SYMBOL_BYTES = 32
RING_COPIES = 2


class KlineColumn(enum.IntEnum):
    """Columns of a window row, all float64 (millisecond times are exact below 2**53)."""

    OPEN_TIME_MS = 0
    OPEN = 1
    HIGH = 2
    LOW = 3
    CLOSE = 4
    VOLUME = 5
    CLOSE_TIME_MS = 6
    QUOTE_VOLUME = 7
    TRADES = 8
    TAKER_BUY_VOLUME = 9
    TAKER_BUY_QUOTE_VOLUME = 10


COLUMN_COUNT = len(KlineColumn)

# Meta and mark word indices (each record is one 64-byte line of eight 8-byte words).
M_SEQ, M_COUNT, M_LENGTH, M_LAST_OPEN_MS = 0, 1, 2, 3
K_SEQ, K_TIME_MS, K_PRICE = 0, 1, 2


@dataclass(frozen=True)
class KlineLayout:
    """Byte offsets of a kline segment (pure: a function of symbol count and window length)."""

    symbol_count: int
    window_bars: int

    @property
    def names_offset(self) -> int:
        return HEADER_BYTES

    @property
    def meta_offset(self) -> int:
        return align(self.names_offset + self.symbol_count * SYMBOL_BYTES)

    @property
    def marks_offset(self) -> int:
        return self.meta_offset + self.symbol_count * 64

    @property
    def data_offset(self) -> int:
        return align(self.marks_offset + self.symbol_count * 64)

    @property
    def ring_rows(self) -> int:
        """Rows stored per symbol: the ring twice."""
        return RING_COPIES * self.window_bars

    @property
    def size(self) -> int:
        return self.data_offset + self.symbol_count * self.ring_rows * COLUMN_COUNT * 8

    def params(self) -> list[int]:
        return [self.symbol_count, self.window_bars, COLUMN_COUNT]


def ring_rows_of(count: int, window_bars: int) -> tuple[int, int]:
    """Return the two rows that bar number `count` (0-based append counter) is written to."""
    row = count % window_bars
    return row, row + window_bars


def window_rows(count: int, length: int, window_bars: int, bars: int) -> tuple[int, int]:
    """Return rows [start, end) holding the newest min(bars, length) bars, oldest first.

    `count` bars were ever appended and the newest `length` (<= window_bars) are valid. The
    slice ends in the upper copy right after the newest bar, so it never wraps.
    """
    k = max(0, min(bars, length))
    end = count % window_bars + window_bars
    return end - k, end


def appends_begun(seq_then: int, seq_now: int) -> int:
    """Return how many appends began between two reads of a seqlock word (odd = in progress).

    `seq_then` is even (read while no append was in progress).
    """
    return (seq_now - seq_then + 1) // 2


def view_survives(seq_then: int, seq_now: int, window_bars: int, bars: int) -> bool:
    """Return whether a view of `bars` rows taken at even seq_then is still untouched at seq_now.

    The first `window_bars - bars` appends after the view only write rows outside it; the next
    one begins overwriting its oldest bar (module docstring).
    """
    return appends_begun(seq_then, seq_now) <= window_bars - bars


def encode_symbols(symbols: Sequence[str]) -> bytes:
    """Return the fixed-width name table; raise ValueError on a name too long or repeated."""
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"shm: symbols repeat in {list(symbols)}")
    out = bytearray()
    for symbol in symbols:
        raw = symbol.encode("ascii")
        if not 0 < len(raw) < SYMBOL_BYTES:
            raise ValueError(f"shm: symbol {symbol!r} exceeds {SYMBOL_BYTES - 1} bytes")
        out += raw.ljust(SYMBOL_BYTES, b"\0")
    return bytes(out)


def decode_symbols(table: bytes, count: int) -> tuple[str, ...]:
    """Return the symbols of a name table written by encode_symbols."""
    return tuple(
        table[i * SYMBOL_BYTES : (i + 1) * SYMBOL_BYTES].rstrip(b"\0").decode("ascii")
        for i in range(count)
    )
