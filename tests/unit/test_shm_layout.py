"""Kline segment layout, symbol table and seqlock logic, on plain numpy buffers (no /dev/shm)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from shared.segment import (
    TornReadError,
    align,
    read_stable,
    repair_seqlock,
    segment_name,
    write_begin,
    write_end,
)
from shared.shm import COLUMN_COUNT, SYMBOL_BYTES, KlineLayout, decode_symbols, encode_symbols


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
    assert layout.size == layout.data_offset + 200 * 500 * COLUMN_COUNT * 8
    assert layout.size == 8_832_128  # 32 128 B of header, names, meta, marks


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
