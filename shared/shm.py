"""Closed 1m kline windows and latest marks in shared memory: one segment per instance.

The feed is the only writer (`KlineWriter`; one feed per instance is enforced by
`shared.bus.bind_instance_lock`); every other process attaches read-only (`KlineReader`) and copies
the last N bars out of zero-copy numpy views under a per-symbol seqlock. Segment
`slt-<instance>-klines`, layout version `LAYOUT_VERSION`:

    header      128 B   segment.py's common header; params = symbol_count, window_bars, columns
    names       32 B per symbol, ASCII, NUL-padded: the symbol -> slot map (no other channel)
    meta        64 B per symbol (int64): seq, count (bars ever written), length (valid bars),
                last_open_time_ms
    marks       64 B per symbol: seq (int64), time_ms (int64), price (float64)
    data        float64 [symbol_count, window_bars, len(KlineColumn)], a ring per symbol

A writer that restarts (even after kill -9) re-attaches to the segment when magic, version,
symbols and window agree, closes any write its predecessor left open, and continues the same
windows; otherwise it replaces the segment with a new incarnation, and readers re-attach.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shared.segment import (
    H_INCARNATION,
    H_IS_RETIRED,
    H_VERSION,
    H_WRITER_PID,
    HEADER_BYTES,
    Segment,
    SegmentLayoutError,
    SegmentMissingError,
    ShmError,
    align,
    create_segment,
    open_segment,
    params_of,
    read_stable,
    repair_seqlock,
    segment_name,
    unlink_segments,
    write_begin,
    write_end,
)

__all__ = [
    "KlineColumn",
    "KlineLayout",
    "KlineReader",
    "KlineWriter",
    "Mark",
    "unlink_segments",
]

LAYOUT_VERSION = 1
SYMBOL_BYTES = 32
READ_TIMEOUT_S = 0.1  # longest a window or mark read waits for a stable record
REATTACH_CHECK_S = 1.0  # how often a reader compares the name's inode with its mapping


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
    def size(self) -> int:
        return self.data_offset + self.symbol_count * self.window_bars * COLUMN_COUNT * 8

    def params(self) -> list[int]:
        return [self.symbol_count, self.window_bars, COLUMN_COUNT]


@dataclass(frozen=True)
class Mark:
    """The latest mark price of a symbol and its event time (UTC ms)."""

    price: float
    time_ms: int


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


class _Views:
    """numpy views over a mapped kline segment (read-only when the mapping is)."""

    def __init__(self, segment: Segment) -> None:
        count, window, columns = params_of(segment, 3)
        if columns != COLUMN_COUNT or count <= 0 or window <= 0:
            raise SegmentLayoutError(
                f"shm: segment {segment.name} has {count} symbols x {window} bars x {columns} "
                f"columns, expected {COLUMN_COUNT} columns"
            )
        layout = KlineLayout(count, window)
        if segment.size < layout.size:
            raise SegmentLayoutError(f"shm: segment {segment.name} is smaller than its layout")
        buf = segment.map
        self.layout = layout
        self.symbols = decode_symbols(bytes(buf[layout.names_offset : layout.meta_offset]), count)
        self.slots = {symbol: i for i, symbol in enumerate(self.symbols)}
        self.meta: npt.NDArray[np.int64] = np.frombuffer(
            buf, np.int64, count * 8, layout.meta_offset
        ).reshape(count, 8)
        self.mark_words: npt.NDArray[np.int64] = np.frombuffer(
            buf, np.int64, count * 8, layout.marks_offset
        ).reshape(count, 8)
        self.mark_floats: npt.NDArray[np.float64] = np.frombuffer(
            buf, np.float64, count * 8, layout.marks_offset
        ).reshape(count, 8)
        self.data: npt.NDArray[np.float64] = np.frombuffer(
            buf, np.float64, count * window * COLUMN_COUNT, layout.data_offset
        ).reshape(count, window, COLUMN_COUNT)
        # Column views of the seq words, so the seqlock helpers index one flat array.
        self.row_seqs = self.meta[:, M_SEQ]
        self.mark_seqs = self.mark_words[:, K_SEQ]

    def slot(self, symbol: str) -> int:
        try:
            return self.slots[symbol]
        except KeyError:
            raise KeyError(f"shm: symbol {symbol} is not in the kline segment") from None


class KlineWriter:
    """The single writer of an instance's kline windows and marks (the feed)."""

    def __init__(self, segment: Segment, views: _Views, is_new: bool) -> None:
        self._segment = segment
        self._views = views
        self.is_new = is_new  # False when it continued a predecessor's windows
        self.name = segment.name

    @classmethod
    def open(cls, instance: str, symbols: Sequence[str], window_bars: int) -> KlineWriter:
        """Re-attach to the instance's segment when it matches, else create or replace it.

        Raises ShmSpaceError when /dev/shm cannot hold a new segment.
        """
        name = segment_name(instance, "klines")
        layout = KlineLayout(len(symbols), window_bars)
        table = encode_symbols(symbols)
        try:
            segment = open_segment(name, writable=True)
        except (SegmentMissingError, SegmentLayoutError):
            segment = None
        if segment is not None:
            views = _matching_views(segment, layout, table)
            if views is not None:
                for i in range(layout.symbol_count):
                    _repair_row_write(views, i)
                    repair_seqlock(views.mark_seqs, i)
                segment.header[H_WRITER_PID] = os.getpid()
                return cls(segment, views, is_new=False)
            segment.close()
        segment = create_segment(name, layout.size, LAYOUT_VERSION, layout.params(), replace=True)
        assert segment is not None  # replace=True always returns the new segment
        segment.map[layout.names_offset : layout.names_offset + len(table)] = table
        return cls(segment, _Views(segment), is_new=True)

    @property
    def incarnation(self) -> int:
        return int(self._segment.header[H_INCARNATION])

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._views.symbols

    def last_open_time_ms(self, symbol: str) -> int | None:
        """Return the open time of the newest bar of symbol, or None when it has none."""
        i = self._views.slot(symbol)
        if int(self._views.meta[i, M_LENGTH]) == 0:
            return None
        return int(self._views.meta[i, M_LAST_OPEN_MS])

    def append(self, symbol: str, row: Sequence[float] | npt.NDArray[np.float64]) -> bool:
        """Append one closed bar (values in KlineColumn order); return False if not newer.

        A bar whose open time is not after the newest one is ignored, so replaying a backfill
        after a restart is harmless. Raises KeyError for an unknown symbol.
        """
        v = self._views
        i = v.slot(symbol)
        open_time_ms = int(row[KlineColumn.OPEN_TIME_MS])
        length = int(v.meta[i, M_LENGTH])
        if length and open_time_ms <= int(v.meta[i, M_LAST_OPEN_MS]):
            return False
        window = v.layout.window_bars
        count = int(v.meta[i, M_COUNT])
        write_begin(v.row_seqs, i)
        v.data[i, count % window] = row
        # Order matters for crash repair: the row is complete before count moves past it.
        v.meta[i, M_COUNT] = count + 1
        v.meta[i, M_LENGTH] = min(length + 1, window)
        v.meta[i, M_LAST_OPEN_MS] = open_time_ms
        write_end(v.row_seqs, i)
        return True

    def set_mark(self, symbol: str, price: float, time_ms: int) -> None:
        """Store the latest mark price of symbol with its event time (UTC ms)."""
        v = self._views
        i = v.slot(symbol)
        write_begin(v.mark_seqs, i)
        v.mark_words[i, K_TIME_MS] = time_ms
        v.mark_floats[i, K_PRICE] = price
        write_end(v.mark_seqs, i)

    def close(self) -> None:
        """Unmap the segment; it stays in /dev/shm for readers and the next writer."""
        del self._views
        self._segment.close()


def _matching_views(segment: Segment, layout: KlineLayout, table: bytes) -> _Views | None:
    """Return views of segment when its version, layout and symbol table equal the wanted ones."""
    if int(segment.header[H_VERSION]) != LAYOUT_VERSION or params_of(segment, 3) != layout.params():
        return None
    if segment.size != layout.size:
        return None
    names = bytes(segment.map[layout.names_offset : layout.names_offset + len(table)])
    return _Views(segment) if names == table else None


def _repair_row_write(views: _Views, i: int) -> None:
    """Close a row write a crashed writer left open, dropping the one row it may have torn.

    The write in progress targeted slot count % window. If the ring was full, that slot held the
    oldest valid bar, which may now be half overwritten: shorten the window by one. If count had
    already moved, the new row is complete and the dropped slot is an untouched old bar.
    """
    if int(views.meta[i, M_SEQ]) & 1:
        window = views.layout.window_bars
        length = min(int(views.meta[i, M_LENGTH]), window - 1)
        views.meta[i, M_LENGTH] = length
        if length:
            newest = (int(views.meta[i, M_COUNT]) - 1) % window
            views.meta[i, M_LAST_OPEN_MS] = int(views.data[i, newest, KlineColumn.OPEN_TIME_MS])
        repair_seqlock(views.row_seqs, i)


class KlineReader:
    """A read-only attachment to an instance's kline segment; re-attaches on a new incarnation."""

    def __init__(self, instance: str, read_timeout_s: float = READ_TIMEOUT_S) -> None:
        """Attach; raise SegmentMissingError before the writer created it, SegmentLayoutError."""
        self.name = segment_name(instance, "klines")
        self.read_timeout_s = read_timeout_s
        self.reattach_count = 0
        self._segment, self._views = self._attach()
        self._checked_s = time.monotonic()

    def _attach(self) -> tuple[Segment, _Views]:
        segment = open_segment(self.name, writable=False)
        try:
            version = int(segment.header[H_VERSION])
            if version != LAYOUT_VERSION:
                raise SegmentLayoutError(
                    f"shm: segment {self.name} has layout version {version}, "
                    f"expected {LAYOUT_VERSION}"
                )
            return segment, _Views(segment)
        except ShmError:
            segment.close()
            raise

    def _ensure_current(self) -> None:
        now_s = time.monotonic()
        # The retired flag is one load per read; the inode check is a syscall, so rate-limited.
        if self._segment.header[H_IS_RETIRED] == 0 and now_s - self._checked_s < REATTACH_CHECK_S:
            return
        self._checked_s = now_s
        if self._segment.is_current():
            return
        self.reattach()

    def reattach(self) -> None:
        """Drop the current mapping and map the segment now under the name."""
        segment, views = self._attach()
        old = self._segment
        del self._views
        old.close()
        self._segment, self._views = segment, views
        self.reattach_count += 1

    @property
    def incarnation(self) -> int:
        return int(self._segment.header[H_INCARNATION])

    @property
    def writer_pid(self) -> int:
        return int(self._segment.header[H_WRITER_PID])

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._views.symbols

    @property
    def window_bars(self) -> int:
        return self._views.layout.window_bars

    def window(self, symbol: str, bars: int) -> npt.NDArray[np.float64]:
        """Return a copy of the last `bars` closed bars of symbol, oldest first.

        Shape (k, len(KlineColumn)) with k = min(bars, bars stored). Raises KeyError for an
        unknown symbol, TornReadError when no stable read happened within the bound.
        """
        self._ensure_current()
        v = self._views
        i = v.slot(symbol)
        window = v.layout.window_bars
        data, meta = v.data[i], v.meta[i]

        def copy() -> npt.NDArray[np.float64]:
            k = min(bars, int(meta[M_LENGTH]))
            end = int(meta[M_COUNT]) % window
            start = end - k
            out: npt.NDArray[np.float64]
            if start >= 0:
                out = data[start:end].copy()
            else:
                out = np.concatenate((data[start + window :], data[:end]))
            return out

        return read_stable(v.row_seqs, i, copy, self.read_timeout_s, f"{symbol} window")

    def mark(self, symbol: str) -> Mark | None:
        """Return the latest mark of symbol, or None when none was written yet."""
        self._ensure_current()
        v = self._views
        i = v.slot(symbol)

        def copy() -> Mark:
            return Mark(float(v.mark_floats[i, K_PRICE]), int(v.mark_words[i, K_TIME_MS]))

        mark = read_stable(v.mark_seqs, i, copy, self.read_timeout_s, f"{symbol} mark")
        return mark if mark.time_ms != 0 else None

    def close(self) -> None:
        """Unmap. Never unlinks: the segment belongs to the instance, not to this reader."""
        del self._views
        self._segment.close()
