"""Closed 1m kline windows and latest marks in shared memory: one segment per instance.

The feed is the only writer (`KlineWriter`; one feed per instance is enforced by
`shared.bus.bind_instance_lock`); every other process attaches read-only (`KlineReader`) and
either copies the last N bars under a per-symbol seqlock (`window`), or borrows them as read-only
numpy views and validates them after computing (`view`, `views`, `validate`; see `WindowView`;
`block`: the windows of consecutive symbols as one view when their rings line up, `WindowBlock`).
Segment `slt-<instance>-klines`, layout version `LAYOUT_VERSION` (shm_layout.py):

    header      128 B   segment.py's common header; params = symbol_count, window_bars, columns
    names       32 B per symbol, ASCII, NUL-padded: the symbol -> slot map (no other channel)
    meta        64 B per symbol (int64): seq, count (bars ever written), length (valid bars),
                last_open_time_ms
    marks       64 B per symbol: seq (int64), time_ms (int64), price (float64)
    data        float64 [symbol_count, 2 * window_bars, len(KlineColumn)]: a ring per symbol,
                stored twice so every window of <= window_bars bars is one contiguous slice

A writer that restarts (even after kill -9) re-attaches to the segment when magic, version,
symbols and window agree, closes any write its predecessor left open, and continues the same
windows; otherwise it replaces the segment with a new incarnation, and readers re-attach.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shared.shm.layout import (
    COLUMN_COUNT,
    K_PRICE,
    K_TIME_MS,
    LAYOUT_VERSION,
    M_COUNT,
    M_LAST_OPEN_MS,
    M_LENGTH,
    M_SEQ,
    SYMBOL_BYTES,
    KlineColumn,
    KlineLayout,
    decode_symbols,
    encode_symbols,
    ring_rows_of,
    window_rows,
)
from shared.shm.segment import (
    H_INCARNATION,
    H_IS_RETIRED,
    H_VERSION,
    H_WRITER_PID,
    Segment,
    SegmentLayoutError,
    SegmentMissingError,
    ShmError,
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
from shared.shm.views import SegmentViews, WindowBlock, WindowView

__all__ = [
    "COLUMN_COUNT",
    "SYMBOL_BYTES",
    "KlineColumn",
    "KlineLayout",
    "KlineReader",
    "KlineWriter",
    "Mark",
    "WindowBlock",
    "WindowView",
    "decode_symbols",
    "encode_symbols",
    "unlink_segments",
]

READ_TIMEOUT_S = 0.1  # longest a window or mark read waits for a stable record
REATTACH_CHECK_S = 1.0  # how often a reader compares the name's inode with its mapping


@dataclass(frozen=True)
class Mark:
    """The latest mark price of a symbol and its event time (UTC ms)."""

    price: float
    time_ms: int


class KlineWriter:
    """The single writer of an instance's kline windows and marks (the feed)."""

    def __init__(self, segment: Segment, views: SegmentViews, is_new: bool) -> None:
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
        return cls(segment, SegmentViews(segment), is_new=True)

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
        lower, upper = ring_rows_of(count, window)
        write_begin(v.row_seqs, i)
        v.data[i, lower] = row
        v.data[i, upper] = row
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

    def set_marks(
        self, symbols: Sequence[str], prices: Sequence[float], times_ms: Sequence[int]
    ) -> None:
        """Store the marks of many symbols (one `!markPrice@arr` frame) in one write: every
        record of the batch is odd while the values are stored, as with `set_mark`, but in three
        vector stores instead of a Python call per symbol. A symbol named twice keeps its last.
        KeyError for a symbol not in the segment (nothing is written then)."""
        v = self._views
        index = np.fromiter(map(v.slot, symbols), np.intp, len(symbols))
        v.mark_seqs[index] += 1  # odd: being written (a repeated index still moves by 1)
        v.mark_words[index, K_TIME_MS] = times_ms
        v.mark_floats[index, K_PRICE] = prices
        v.mark_seqs[index] += 1  # even: stable

    def close(self) -> None:
        """Unmap the segment; it stays in /dev/shm for readers and the next writer."""
        del self._views
        self._segment.close()


def _read_bounds(
    v: SegmentViews, index: npt.NDArray[np.intp] | slice
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]
]:
    """Read the records at `index` in one vectorized seqlock pass: their seq words, then their
    meta, then the seq words again. Return (seqs before, ring ends (shm_layout.window_rows'
    `end`), lengths, is_unstable: a record being written or written meanwhile)."""
    seq_before = v.row_seqs[index].copy()
    meta = v.meta[index].copy()  # count and length of every record
    is_unstable = (seq_before != v.row_seqs[index]) | (seq_before & 1 != 0)
    window = v.layout.window_bars
    return seq_before, meta[:, M_COUNT] % window + window, meta[:, M_LENGTH], is_unstable


def _matching_views(segment: Segment, layout: KlineLayout, table: bytes) -> SegmentViews | None:
    """Return views of segment when its version, layout and symbol table equal the wanted ones."""
    if int(segment.header[H_VERSION]) != LAYOUT_VERSION or params_of(segment, 3) != layout.params():
        return None
    if segment.size != layout.size:
        return None
    names = bytes(segment.map[layout.names_offset : layout.names_offset + len(table)])
    return SegmentViews(segment) if names == table else None


def _repair_row_write(views: SegmentViews, i: int) -> None:
    """Close a row write a crashed writer left open, dropping the one row it may have torn.

    The write in progress targeted ring slot count % window (both copies). If the ring was full,
    that slot held the oldest valid bar, which may now be half overwritten: shorten the window by
    one, so no window (window_rows) reaches either copy of it. If count had
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

    def _attach(self) -> tuple[Segment, SegmentViews]:
        segment = open_segment(self.name, writable=False)
        try:
            version = int(segment.header[H_VERSION])
            if version != LAYOUT_VERSION:
                raise SegmentLayoutError(
                    f"shm: segment {self.name} has layout version {version}, "
                    f"expected {LAYOUT_VERSION}"
                )
            return segment, SegmentViews(segment)
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
            start, end = window_rows(int(meta[M_COUNT]), int(meta[M_LENGTH]), window, bars)
            out: npt.NDArray[np.float64] = data[start:end].copy()
            return out

        return read_stable(v.row_seqs, i, copy, self.read_timeout_s, f"{symbol} window")

    def view(self, symbol: str, bars: int) -> WindowView:
        """Return the last `bars` closed bars of symbol as a read-only view (no copy).

        Shape (k, len(KlineColumn)) with k = min(bars, bars stored), oldest first. Compute on it,
        then validate (WindowView's contract). Raises KeyError for an unknown symbol,
        TornReadError when no stable read of the bounds happened within the bound.
        """
        self._ensure_current()
        v = self._views
        i = v.slot(symbol)
        window = v.layout.window_bars
        meta, seqs = v.meta[i], v.row_seqs

        def bounds() -> tuple[int, int, int]:
            start, end = window_rows(int(meta[M_COUNT]), int(meta[M_LENGTH]), window, bars)
            return int(seqs[i]), start, end  # seq equals read_stable's even `before` value

        seq, start, end = read_stable(seqs, i, bounds, self.read_timeout_s, f"{symbol} window")
        return WindowView(symbol, v.rings[i][start:end], seq, v, i, window - (end - start))

    def views(self, symbols: Sequence[str], bars: int) -> list[WindowView]:
        """Return `view(symbol, bars)` for every symbol, in order, reading all bounds at once.

        One vectorized seqlock read for the batch; a symbol whose record was being written
        falls back to view() (bounded retries).
        """
        self._ensure_current()
        v = self._views
        try:
            slots = np.fromiter(map(v.slots.__getitem__, symbols), np.intp, len(symbols))
        except KeyError as e:
            raise KeyError(f"shm: symbol {e.args[0]} is not in the kline segment") from None
        seq_before, ends, lengths, is_unstable = _read_bounds(v, slots)
        window = v.layout.window_bars
        sizes = np.minimum(lengths, max(bars, 0))
        starts = ends - sizes
        rooms = window - sizes
        rings = v.rings
        out = [
            WindowView(symbol, rings[i][start:end], seq, v, i, room)
            for symbol, i, seq, start, end, room in zip(
                symbols,
                slots.tolist(),
                seq_before.tolist(),
                starts.tolist(),
                ends.tolist(),
                rooms.tolist(),
                strict=True,
            )
        ]
        for j in np.flatnonzero(is_unstable).tolist():
            out[j] = self.view(symbols[j], bars)  # being written: bounded retries
        return out

    def block(self, symbols: Sequence[str], bars: int) -> WindowBlock | None:
        """Return the last `bars` bars of `symbols` as one (n, bars, C) read-only view, or None
        when that cannot be one view: the symbols are not consecutive slots of the segment in
        its order, a ring ends at another row or holds fewer than `bars` bars, or a record is
        being written (use `views` then). Compute on it, then call its `stale()`.
        """
        self._ensure_current()
        v = self._views
        n, window = len(symbols), v.layout.window_bars
        first = v.slots.get(symbols[0]) if n else None
        if (
            first is None
            or not 0 < bars <= window
            or v.symbols[first : first + n] != tuple(symbols)
        ):
            return None
        seq_before, ends, lengths, is_unstable = _read_bounds(v, slice(first, first + n))
        if is_unstable.any() or (ends != ends[0]).any() or (lengths < bars).any():
            return None
        end = int(ends[0])
        rows = v.data[first : first + n, end - bars : end]
        return WindowBlock(tuple(symbols), rows, seq_before, v, first, window - bars)

    def validate(self, views: Sequence[WindowView]) -> list[str]:
        """Return the symbols of the views that are no longer valid, in order (empty: all good).

        Call it after computing on the views (WindowView's contract). Reads every seq word once.
        """
        v = self._views
        is_current = int(v.is_retired[0]) == 0
        seqs_now = v.row_seqs.tolist()  # one snapshot of every seq, after the computation
        stale = []
        for w in views:
            if w._views is v and is_current:
                # shm_layout.view_survives, inlined: appends begun since the view <= room.
                if (seqs_now[w._slot] - w.seq + 1) // 2 > w._room:
                    stale.append(w.symbol)
            elif not w.is_valid():  # taken from an earlier mapping (the reader re-attached)
                stale.append(w.symbol)
        return stale

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
