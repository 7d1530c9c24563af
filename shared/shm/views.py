"""Mapped views of a kline segment: the numpy arrays over it, and zero-copy window views.

`SegmentViews` lays numpy arrays over one mapping (read-only when the mapping is);
`WindowView` is what `KlineReader.view` and `views` hand out. Layout and index arithmetic are
in shm_layout.py; the writer, the reader and their seqlock use are in shm.py.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shared.shm.layout import (
    COLUMN_COUNT,
    K_SEQ,
    M_SEQ,
    KlineLayout,
    decode_symbols,
    view_survives,
)
from shared.shm.segment import H_IS_RETIRED, Segment, SegmentLayoutError, params_of


class SegmentViews:
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
            buf, np.float64, count * layout.ring_rows * COLUMN_COUNT, layout.data_offset
        ).reshape(count, layout.ring_rows, COLUMN_COUNT)
        self.rings = list(self.data)  # per-symbol 2-D views: one slice per window view
        self.is_retired = segment.header[H_IS_RETIRED : H_IS_RETIRED + 1]
        # Column views of the seq words, so the seqlock helpers index one flat array.
        self.row_seqs = self.meta[:, M_SEQ]
        self.mark_seqs = self.mark_words[:, K_SEQ]

    def slot(self, symbol: str) -> int:
        try:
            return self.slots[symbol]
        except KeyError:
            raise KeyError(f"shm: symbol {symbol} is not in the kline segment") from None


class WindowView:
    """The newest bars of one symbol as a read-only numpy view into the segment: no copy.

    `rows` has shape (k, len(KlineColumn)), oldest first, and aliases shared memory. It is taken
    under the seqlock (the symbol's seq was even and unchanged while the slice bounds were read),
    and `seq` keeps that even value. The writer never rewrites a stored bar in place: it appends
    at the head, and an append only reuses the ring rows of the bar window_bars older (both
    copies). So the rows of a view change only once the ring wraps past them, at the
    (window_bars - k + 1)-th append after the view was taken; until then they are exactly the
    bars they were at `seq`. Each append moves seq by 2 (odd while it writes), so the view is
    valid while fewer than window_bars - k + 1 appends have begun since `seq`
    (shm_layout.view_survives), and while its segment is not retired (a replaced segment is no
    longer written, but holds stale bars). With window_bars = k, any append invalidates it.

    Contract: compute on `rows`, then call `is_valid()` (or `KlineReader.validate` for many);
    if it returns False, the computation may have read a torn or newer row: discard the result
    and recompute on a fresh view, or on the copy `KlineReader.window` returns. Results must not
    keep references into `rows` past the validation (copy what you keep): a later append may
    change them. Ordering: on x86-64 (TSO) loads are not reordered with other loads, so the seq
    read by the validation happens after every row load of the computation (the assumption
    segment.write_begin states for the writer side). A view keeps its mapping alive, so it stays
    safe to read (though invalid) after the reader re-attached or closed.

    Sizing: a view of k bars survives window_bars - k one-minute appends, so a reader that wants
    its views valid for a while reads fewer bars than feed.window_bars holds.
    """

    __slots__ = ("_room", "_slot", "_views", "rows", "seq", "symbol")

    def __init__(
        self,
        symbol: str,
        rows: npt.NDArray[np.float64],
        seq: int,
        views: SegmentViews,
        slot: int,
        room: int,
    ) -> None:
        self.symbol = symbol
        self.rows = rows
        self.seq = seq
        self._views = views
        self._slot = slot
        self._room = room  # appends the view survives: window_bars - len(rows)

    def __repr__(self) -> str:
        return f"WindowView(symbol={self.symbol}, bars={len(self.rows)}, seq={self.seq})"

    @property
    def survives_appends(self) -> int:
        """How many appends after the view leave its rows untouched: window_bars - bars."""
        return self._room

    def is_valid(self) -> bool:
        """Return whether `rows` still hold exactly the bars they held when the view was taken."""
        v = self._views
        if int(v.is_retired[0]) != 0:
            return False
        seq_now = int(v.row_seqs[self._slot])
        return view_survives(self.seq, seq_now, v.layout.window_bars, len(self.rows))


class WindowBlock:
    """The newest `k` bars of n consecutive symbols of the segment as ONE read-only numpy view
    (n, k, len(KlineColumn)), no copy: what `KlineReader.block` returns when every ring ends at
    the same row (the symbols took the same number of appends, the steady state of a feed that
    appends one bar per symbol per minute).

    Same contract as WindowView, for all symbols at once: compute on `rows`, then call
    `stale()`; the symbols it names may have been overwritten under the computation (recompute
    those, or all). `seqs` holds each symbol's even seq when the block was taken.
    """

    __slots__ = ("_first", "_room", "_views", "rows", "seqs", "symbols")

    def __init__(
        self,
        symbols: tuple[str, ...],
        rows: npt.NDArray[np.float64],
        seqs: npt.NDArray[np.int64],
        views: SegmentViews,
        first: int,
        room: int,
    ) -> None:
        self.symbols = symbols
        self.rows = rows
        self.seqs = seqs
        self._views = views
        self._first = first
        self._room = room  # appends every row survives: window_bars - k

    def __repr__(self) -> str:
        return f"WindowBlock(symbols={len(self.symbols)}, bars={self.rows.shape[1]})"

    def stale(self) -> list[str]:
        """Return the symbols whose rows may have changed since the block was taken (all of
        them once the segment is retired), in order; empty: every row is as it was."""
        v = self._views
        if int(v.is_retired[0]) != 0:
            return list(self.symbols)
        now = v.row_seqs[self._first : self._first + len(self.symbols)]
        begun = (now - self.seqs + 1) // 2  # shm_layout.appends_begun, vectorized
        return [self.symbols[j] for j in np.flatnonzero(begun > self._room).tolist()]
