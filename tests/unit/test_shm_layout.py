"""Kline segment layout, symbol table and seqlock logic, on plain numpy buffers (no /dev/shm)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from shared.shm.layout import appends_begun, ring_rows_of, view_survives, window_rows
from shared.shm.rings import (
    COLUMN_COUNT,
    SYMBOL_BYTES,
    KlineLayout,
    decode_symbols,
    encode_symbols,
)
from shared.shm.segment import (
    TornReadError,
    align,
    read_stable,
    repair_seqlock,
    segment_name,
    write_begin,
    write_end,
)


def test_kline_layout_for_200_symbols_of_500_bars_aligns_every_block_to_a_cache_line() -> None:
    layout = KlineLayout(200, 500)
    for offset in (
        layout.names_offset,
        layout.meta_offset,
        layout.marks_offset,
        layout.data_offset,
    ):
        assert offset % 64 == 0
    assert layout.meta_offset == 128 + 200 * SYMBOL_BYTES
    assert layout.marks_offset == layout.meta_offset + 200 * 64
    assert layout.size == layout.data_offset + 200 * 2 * 500 * COLUMN_COUNT * 8  # ring twice
    assert layout.size == 17_632_128  # 32 128 B of header, names, meta, marks


def test_kline_layout_params_are_symbols_bars_and_columns() -> None:
    assert KlineLayout(3, 7).params() == [3, 7, COLUMN_COUNT]


def test_align_rounds_up_to_the_next_multiple() -> None:
    assert [align(x) for x in (0, 1, 64, 65)] == [0, 64, 64, 128]


def test_symbol_table_round_trips_in_slot_order() -> None:
    symbols = ["BTCUSDT", "1000PEPEUSDT", "ETHUSDT_250926"]
    table = encode_symbols(symbols)
    assert len(table) == 3 * SYMBOL_BYTES
    assert decode_symbols(table, 3) == tuple(symbols)


@pytest.mark.parametrize("symbols", [["BTCUSDT", "BTCUSDT"], ["X" * SYMBOL_BYTES], [""]])
def test_symbol_table_rejects_repeated_empty_or_too_long_names(symbols: list[str]) -> None:
    with pytest.raises(ValueError):
        encode_symbols(symbols)


def test_segment_name_carries_instance_and_kind() -> None:
    assert segment_name("3f2a9c0d1e", "klines") == "slt-3f2a9c0d1e-klines"


@pytest.mark.parametrize("instance", ["", "a/b", "a b", "x" * 41])
def test_segment_name_rejects_unsafe_instance_ids(instance: str) -> None:
    with pytest.raises(ValueError):
        segment_name(instance, "klines")


def test_seqlock_write_makes_the_record_odd_then_even() -> None:
    seqs = np.zeros(2, dtype=np.int64)
    write_begin(seqs, 1)
    assert seqs.tolist() == [0, 1]
    write_end(seqs, 1)
    assert seqs.tolist() == [0, 2]


def test_seqlock_read_of_a_stable_record_returns_the_copy() -> None:
    seqs = np.array([4], dtype=np.int64)
    assert read_stable(seqs, 0, lambda: "row", 0.01, "BTCUSDT window") == "row"


def test_seqlock_read_of_a_record_left_odd_raises_after_the_bound() -> None:
    seqs = np.array([7], dtype=np.int64)
    calls: list[int] = []
    started_s = time.monotonic()
    with pytest.raises(TornReadError, match=r"BTCUSDT window was not stable within 0\.02 s"):
        read_stable(seqs, 0, lambda: calls.append(1), 0.02, "BTCUSDT window")
    assert 0.02 <= time.monotonic() - started_s < 0.5
    assert calls == []


def test_seqlock_read_retries_when_the_record_changed_during_the_copy() -> None:
    seqs = np.array([2], dtype=np.int64)
    copies: list[int] = []

    def copy() -> int:
        copies.append(int(seqs[0]))
        if len(copies) == 1:
            seqs[0] += 2  # a whole write happened while we copied
        return len(copies)

    assert read_stable(seqs, 0, copy, 0.01, "mark") == 2
    assert copies == [2, 4]


def test_seqlock_repair_closes_a_write_left_open_by_a_crash() -> None:
    seqs = np.array([5, 6], dtype=np.int64)
    assert repair_seqlock(seqs, 0) is True
    assert repair_seqlock(seqs, 1) is False
    assert seqs.tolist() == [6, 6]


def simulated_ring(window: int, appends: int) -> np.ndarray:
    """The data rows of one symbol after `appends` double-writes of bar number c (value c)."""
    rows = np.full(2 * window, -1.0)
    for c in range(appends):
        rows[list(ring_rows_of(c, window))] = c
    return rows


@pytest.mark.parametrize("window", [1, 4, 7])
def test_every_window_of_the_double_written_ring_is_one_contiguous_slice(window: int) -> None:
    for appends in range(3 * window + 2):
        rows = simulated_ring(window, appends)
        length = min(appends, window)
        for bars in range(window + 2):
            start, end = window_rows(appends, length, window, bars)
            k = min(bars, length)
            assert 0 <= start <= end <= 2 * window
            assert rows[start:end].tolist() == list(range(appends - k, appends))


def test_ring_rows_are_the_slot_in_each_copy() -> None:
    assert ring_rows_of(0, 5) == (0, 5)
    assert ring_rows_of(12, 5) == (2, 7)


def test_window_rows_of_an_empty_or_shortened_ring_hold_only_valid_bars() -> None:
    assert window_rows(0, 0, 4, 3) == (4, 4)
    assert window_rows(9, 3, 4, 10) == (2, 5)  # a repaired ring of 4 holding 3 bars
    assert window_rows(9, 3, 4, -1) == (5, 5)


def test_appends_begun_counts_an_append_in_progress() -> None:
    assert [appends_begun(10, now) for now in (10, 11, 12, 13, 14)] == [0, 1, 1, 2, 2]


@pytest.mark.parametrize("window", [4, 7])
def test_view_survives_exactly_until_an_append_reaches_one_of_its_rows(window: int) -> None:
    # Replay the ring: after each begun append, compare the prediction with the actual rows.
    for taken_at in range(2 * window):
        length = min(taken_at, window)
        for bars in range(1, length + 1):
            start, end = window_rows(taken_at, length, window, bars)
            before = simulated_ring(window, taken_at)[start:end]
            for extra in range(window + 1):
                # The append of bar taken_at + extra has begun (seq odd): its rows may be torn.
                begun = simulated_ring(window, taken_at + extra + 1)[start:end]
                is_untouched = np.array_equal(begun, before)
                seq_then, seq_now = 2 * taken_at, 2 * (taken_at + extra) + 1
                assert view_survives(seq_then, seq_now, window, end - start) == is_untouched
                assert view_survives(seq_then, seq_now - 1, window, end - start) == (
                    extra <= window - (end - start)
                )
