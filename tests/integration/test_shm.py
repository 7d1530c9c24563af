"""Kline windows in real /dev/shm segments, with writer and reader processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from shared.shm.rings import (
    COLUMN_COUNT,
    KlineColumn,
    KlineLayout,
    KlineReader,
    KlineWriter,
    Mark,
    WindowView,
)
from shared.shm.segment import (
    SHM_DIR,
    SegmentMissingError,
    ShmSpaceError,
    TornReadError,
    check_free_space,
    open_segment,
    segment_name,
    unlink_segments,
)
from tests.integration.shm_writer import MINUTE_MS, bar
from tests.services import eventually

REPO_ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ["BTCUSDT", "ETHUSDT", "XRPUSDT"]


@pytest.fixture
def writers() -> Iterator[list[subprocess.Popen[str]]]:
    """Writer subprocesses started by the test; killed and reaped after it."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def start_writer(
    writers: list[subprocess.Popen[str]], instance: str, window: int, bars: int
) -> tuple[subprocess.Popen[str], str]:
    """Start tests/integration/shm_writer.py; return the process and its `ready ...` line."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.shm_writer",
            instance,
            ",".join(SYMBOLS),
            str(window),
            str(bars),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    writers.append(proc)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def assert_consistent(rows: npt.NDArray[np.float64]) -> None:
    """Every row is bar(k) for one k, and the rows are consecutive bars."""
    k = rows[:, KlineColumn.OPEN_TIME_MS] / MINUTE_MS
    expected = k[:, None] + np.arange(1, COLUMN_COUNT) / 16
    assert np.array_equal(rows[:, 1:], expected), "torn row"
    assert np.array_equal(np.diff(k), np.ones(len(k) - 1)), "rows are not consecutive bars"


def reader_ready(instance: str, bars: int) -> KlineReader:
    def attach() -> KlineReader | None:
        reader = KlineReader(instance)
        if len(reader.window(SYMBOLS[-1], bars)) >= bars:
            return reader
        reader.close()
        return None

    result = eventually(attach, 10)
    assert isinstance(result, KlineReader)
    return result


def test_reader_never_sees_a_torn_row_while_a_writer_process_hammers(
    instance: str, writers: list[subprocess.Popen[str]]
) -> None:
    # Full-ring reads: every append overwrites the oldest row of the window being copied, so
    # without the seqlock about 3 % of these reads came out torn (measured while writing this).
    assert start_writer(writers, instance, 100, -1)[1] == "ready True 0"
    reader = reader_ready(instance, 100)
    newest = []
    for i in range(10_000):
        rows = reader.window(SYMBOLS[i % 3], 100)
        assert rows.shape == (100, COLUMN_COUNT)
        assert_consistent(rows)
        newest.append(rows[-1, KlineColumn.OPEN_TIME_MS])
        mark = reader.mark(SYMBOLS[i % 3])
        assert mark is not None and mark.price == mark.time_ms + 0.5
    assert len(set(newest)) > 20, "the writer did not move during the reads"
    reader.close()


def test_set_marks_stores_a_batch_as_set_mark_would_and_leaves_every_record_stable(
    instance: str,
) -> None:
    writer = KlineWriter.open(instance, SYMBOLS, 10)
    reader = KlineReader(instance)
    try:
        writer.set_mark("XRPUSDT", 7.25, 7)
        writer.set_marks(["ETHUSDT", "BTCUSDT", "ETHUSDT"], [2.5, 1.5, 3.5], [20, 10, 30])
        assert reader.mark("BTCUSDT") == Mark(1.5, 10)
        assert reader.mark("ETHUSDT") == Mark(3.5, 30)  # named twice: the last one holds
        assert reader.mark("XRPUSDT") == Mark(7.25, 7)  # not in the batch: untouched
        with pytest.raises(KeyError, match="FOOUSDT"):
            writer.set_marks(["BTCUSDT", "FOOUSDT"], [9.0, 9.0], [99, 99])
        assert reader.mark("BTCUSDT") == Mark(1.5, 10)  # a bad batch writes nothing
        seqs = np.array([writer._views.mark_seqs[i] for i in range(len(SYMBOLS))])
        assert (seqs % 2 == 0).all() and seqs.tolist() == [2, 2, 2]  # one write each, closed
    finally:
        reader.close()
        writer.close()


def test_reader_process_exit_does_not_unlink_the_segment(instance: str) -> None:
    writer = KlineWriter.open(instance, SYMBOLS, 10)
    writer.append("BTCUSDT", bar(1))
    code = (
        "from shared.shm.rings import KlineReader\n"
        f"r = KlineReader({instance!r})\n"
        "print(len(r.window('BTCUSDT', 5)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "1" and out.stderr == ""
    assert (SHM_DIR / segment_name(instance, "klines")).exists()
    reader = KlineReader(instance)
    assert reader.window("BTCUSDT", 5).tolist() == [bar(1)]
    reader.close()
    writer.close()


def test_writer_killed_mid_stream_is_continued_by_a_new_writer(
    instance: str, writers: list[subprocess.Popen[str]]
) -> None:
    first, ready = start_writer(writers, instance, 300, -1)
    assert ready == "ready True 0"
    reader = reader_ready(instance, 300)
    incarnation = reader.incarnation
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert (SHM_DIR / segment_name(instance, "klines")).exists()

    second, ready = start_writer(writers, instance, 300, 1000)
    word, is_new, first_k = ready.split()
    assert (word, is_new) == ("ready", "False")
    assert second.wait(10) == 0
    # Every symbol now holds a full window of consecutive bars across the crash point.
    for symbol in SYMBOLS:
        rows = reader.window(symbol, 300)
        assert_consistent(rows)
        assert rows[-1, KlineColumn.OPEN_TIME_MS] == (int(first_k) + 999) * MINUTE_MS
    assert reader.mark("XRPUSDT") == Mark(int(first_k) + 999.5, int(first_k) + 999)
    assert reader.incarnation == incarnation and reader.reattach_count == 0
    assert reader.writer_pid == second.pid
    reader.close()


def test_writer_with_other_symbols_replaces_the_segment_and_readers_reattach(
    instance: str,
) -> None:
    old = KlineWriter.open(instance, SYMBOLS, 10)
    old.append("BTCUSDT", bar(5))
    reader = KlineReader(instance)
    assert reader.window("BTCUSDT", 10).tolist() == [bar(5)]
    old.close()

    new = KlineWriter.open(instance, ["SOLUSDT"], 20)
    assert new.is_new and new.incarnation != reader.incarnation
    new.append("SOLUSDT", bar(9))
    assert reader.window("SOLUSDT", 10).tolist() == [bar(9)]
    assert reader.symbols == ("SOLUSDT",) and reader.window_bars == 20
    assert reader.reattach_count == 1 and reader.incarnation == new.incarnation
    with pytest.raises(KeyError, match="BTCUSDT is not in the kline segment"):
        reader.window("BTCUSDT", 10)
    reader.close()
    new.close()


def test_window_wraps_the_ring_and_returns_the_newest_bars_oldest_first(instance: str) -> None:
    writer = KlineWriter.open(instance, SYMBOLS, 4)
    assert [writer.append("ETHUSDT", bar(k)) for k in range(7)] == [True] * 7
    assert writer.append("ETHUSDT", bar(6)) is False  # replayed bar: ignored
    reader = KlineReader(instance)
    assert reader.window("ETHUSDT", 10).tolist() == [bar(k) for k in (3, 4, 5, 6)]
    assert reader.window("ETHUSDT", 3).tolist() == [bar(k) for k in (4, 5, 6)]
    assert reader.window("BTCUSDT", 3).shape == (0, COLUMN_COUNT)
    assert reader.mark("ETHUSDT") is None
    assert writer.last_open_time_ms("ETHUSDT") == 6 * MINUTE_MS
    assert writer.last_open_time_ms("BTCUSDT") is None
    reader.close()
    writer.close()


def test_reader_before_the_writer_exists_raises_segment_missing(instance: str) -> None:
    with pytest.raises(SegmentMissingError, match=f"slt-{instance}-klines does not exist"):
        KlineReader(instance)


def test_unlink_segments_removes_the_instance_segments_only(instance: str) -> None:
    writer = KlineWriter.open(instance, SYMBOLS, 4)
    writer.close()
    assert unlink_segments(instance) == [f"slt-{instance}-klines"]
    assert not (SHM_DIR / f"slt-{instance}-klines").exists()
    assert unlink_segments(instance) == []


def test_free_space_check_refuses_a_segment_larger_than_dev_shm() -> None:
    with pytest.raises(ShmSpaceError, match="bytes a segment needs"):
        check_free_space(1 << 60)


def test_write_left_open_by_a_crash_fails_reads_clearly_until_the_next_writer_repairs_it(
    instance: str,
) -> None:
    writer = KlineWriter.open(instance, SYMBOLS, 4)
    for k in range(6):
        writer.append("BTCUSDT", bar(k))
    writer.close()
    # Reproduce a writer killed inside append(): seq odd, the next ring slot (oldest bar, 2)
    # half overwritten with bar 6, count not yet moved.
    layout = KlineLayout(len(SYMBOLS), 4)
    segment = open_segment(segment_name(instance, "klines"), writable=True)
    meta = np.frombuffer(segment.map, np.int64, 8, layout.meta_offset)
    data = np.frombuffer(segment.map, np.float64, 4 * COLUMN_COUNT, layout.data_offset)
    meta[0] += 1
    data.reshape(4, COLUMN_COUNT)[6 % 4, :3] = bar(6)[:3]
    del meta, data
    segment.close()

    reader = KlineReader(instance, read_timeout_s=0.02)
    with pytest.raises(TornReadError, match=r"BTCUSDT window was not stable within 0\.02 s"):
        reader.window("BTCUSDT", 4)
    assert reader.window("ETHUSDT", 4).shape == (0, COLUMN_COUNT)  # other symbols unaffected

    restarted = KlineWriter.open(instance, SYMBOLS, 4)
    assert not restarted.is_new
    assert reader.window("BTCUSDT", 4).tolist() == [bar(3), bar(4), bar(5)]  # torn bar 2 dropped
    assert restarted.last_open_time_ms("BTCUSDT") == 5 * MINUTE_MS
    assert restarted.append("BTCUSDT", bar(6))
    assert reader.window("BTCUSDT", 4).tolist() == [bar(k) for k in (3, 4, 5, 6)]
    reader.close()
    restarted.close()


def test_reader_of_an_unlinked_segment_raises_segment_missing(instance: str) -> None:
    writer = KlineWriter.open(instance, SYMBOLS, 4)
    reader = KlineReader(instance)
    unlink_segments(instance)
    with pytest.raises(SegmentMissingError):
        reader.window("BTCUSDT", 4)
    reader.close()
    writer.close()


READER_PROCESS = """
import sys
import numpy as np
from shared.shm.rings import COLUMN_COUNT, KlineReader
r = KlineReader(sys.argv[1])
symbols = r.symbols
for i in range(10_000):
    rows = r.window(symbols[i % len(symbols)], 100)
    k = rows[:, 0] / 60_000
    assert np.array_equal(rows[:, 1:], k[:, None] + np.arange(1, COLUMN_COUNT) / 16), "torn row"
    assert np.array_equal(np.diff(k), np.ones(len(k) - 1)), "not consecutive"
print("ok", flush=True)
"""


def test_reader_processes_never_see_a_torn_row_and_their_exit_keeps_the_segment(
    instance: str, writers: list[subprocess.Popen[str]]
) -> None:
    assert start_writer(writers, instance, 100, -1)[1] == "ready True 0"
    reader_ready(instance, 100).close()
    command = [sys.executable, "-c", READER_PROCESS, instance]
    readers = [
        subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outcomes = [(r.communicate(timeout=30), r.returncode) for r in readers]
    assert outcomes == [((b"ok\n", b""), 0)] * 2
    assert (SHM_DIR / segment_name(instance, "klines")).exists()


def test_view_is_a_read_only_alias_of_the_window_and_views_match_it(instance: str) -> None:
    writer = KlineWriter.open(instance, SYMBOLS, 10)
    for k in range(13):
        writer.append("BTCUSDT", bar(k))
        if k < 3:
            writer.append("ETHUSDT", bar(k))
    reader = KlineReader(instance)
    view = reader.view("BTCUSDT", 4)
    assert (
        view.rows.tolist() == reader.window("BTCUSDT", 4).tolist() == [bar(k) for k in range(9, 13)]
    )
    assert not view.rows.flags.writeable and not view.rows.flags.owndata
    assert view.survives_appends == 6 and view.is_valid()
    batch = reader.views(SYMBOLS, 5)
    assert [v.symbol for v in batch] == SYMBOLS
    for v in batch:
        assert v.rows.tolist() == reader.window(v.symbol, 5).tolist()
        assert v.seq == reader.view(v.symbol, 5).seq
    assert [len(v.rows) for v in batch] == [5, 3, 0]
    assert reader.validate(batch) == []
    with pytest.raises(KeyError, match="SOLUSDT is not in the kline segment"):
        reader.views(["BTCUSDT", "SOLUSDT"], 5)
    reader.close()
    writer.close()


def test_view_is_invalidated_exactly_when_the_ring_wraps_past_it(instance: str) -> None:
    writer = KlineWriter.open(instance, SYMBOLS, 10)
    for k in range(12):
        writer.append("BTCUSDT", bar(k))
        writer.append("XRPUSDT", bar(k))
    reader = KlineReader(instance)
    (view,) = reader.views(["BTCUSDT"], 4)
    other = reader.view("XRPUSDT", 4)
    expected = [bar(k) for k in range(8, 12)]
    segment = open_segment(segment_name(instance, "klines"), writable=True)
    seq = np.frombuffer(segment.map, np.int64, 1, KlineLayout(len(SYMBOLS), 10).meta_offset)
    for k in range(12, 18):  # 6 appends = window - bars: rows 8..11 untouched
        seq += 1  # the next append has begun: the ring rows it will write are outside the view
        assert view.is_valid() and reader.validate([view, other]) == []
        seq -= 1
        assert writer.append("BTCUSDT", bar(k))
        assert view.is_valid() and view.rows.tolist() == expected
    seq += 1  # the 7th append has begun: it writes the ring rows of bar 8 (view's oldest)
    assert not view.is_valid() and reader.validate([view, other]) == ["BTCUSDT"]
    seq -= 1
    del seq
    segment.close()
    writer.append("BTCUSDT", bar(18))
    assert view.rows[0].tolist() == bar(18)  # the alias now shows the newer bar
    assert reader.validate([other, view]) == ["BTCUSDT"] and other.is_valid()
    fresh = reader.view("BTCUSDT", 4)
    assert fresh.is_valid() and fresh.rows.tolist() == [bar(k) for k in range(15, 19)]
    full = reader.view("BTCUSDT", 10)
    assert full.survives_appends == 0 and full.is_valid()
    writer.append("BTCUSDT", bar(19))
    assert not full.is_valid()  # a full-window view survives no append
    reader.close()
    writer.close()


def test_block_is_one_view_of_lined_up_windows_and_none_otherwise(instance: str) -> None:
    writer = KlineWriter.open(instance, SYMBOLS, 10)
    for k in range(13):
        for symbol in SYMBOLS:
            writer.append(symbol, bar(k))
    reader = KlineReader(instance)
    block = reader.block(SYMBOLS, 4)
    assert block is not None and block.symbols == tuple(SYMBOLS)
    assert block.rows.shape == (3, 4, COLUMN_COUNT)
    assert not block.rows.flags.writeable and not block.rows.flags.owndata
    for j, symbol in enumerate(SYMBOLS):
        assert block.rows[j].tolist() == reader.window(symbol, 4).tolist()
    assert block.seqs.tolist() == [reader.view(s, 4).seq for s in SYMBOLS]
    assert block.stale() == []
    assert reader.block(SYMBOLS[1:], 10) is not None  # consecutive slots, full windows
    assert reader.block(["BTCUSDT", "XRPUSDT"], 4) is None  # not consecutive
    assert reader.block(SYMBOLS[::-1], 4) is None  # not in segment order
    assert reader.block(["SOLUSDT"], 4) is None and reader.block([], 4) is None
    assert reader.block(SYMBOLS, 11) is None  # more bars than the ring holds
    # 6 more appends of BTC only (window - bars): the block's rows are untouched, but the rings
    # no longer end at the same row, so a new block cannot be one view.
    for k in range(13, 19):
        writer.append("BTCUSDT", bar(k))
        assert block.stale() == []
    assert reader.block(SYMBOLS, 4) is None
    writer.append("BTCUSDT", bar(19))  # the 7th wraps past the block's oldest BTC bar
    assert block.stale() == ["BTCUSDT"]
    writer.close()
    fresh = KlineWriter.open(instance, SYMBOLS, 20)  # the segment is replaced (retired)
    assert block.stale() == SYMBOLS
    fresh.close()
    reader.close()


def test_every_fresh_block_read_while_a_writer_process_hammers_is_exact(
    instance: str, writers: list[subprocess.Popen[str]]
) -> None:
    assert start_writer(writers, instance, 100, -1)[1] == "ready True 0"
    reader = reader_ready(instance, 100)
    taken = stale = none = 0
    for i in range(1_000):
        block = None
        for _ in range(100_000):  # the writer spends most of its time between symbols of a bar
            block = reader.block(SYMBOLS, 60)
            if block is not None:
                break
            none += 1
        assert block is not None, "the rings never lined up"
        if i % 4 == 1:
            time.sleep(0.0005)  # a slow computation: the writer wraps past some blocks
        rows = block.rows.copy()
        gone = set(block.stale())
        for j, symbol in enumerate(block.symbols):
            if symbol in gone:
                stale += 1
                continue
            taken += 1
            assert_consistent(rows[j])
            assert rows[j, -1, KlineColumn.OPEN_TIME_MS] == expected_newest_ms(int(block.seqs[j]))
    assert taken > 1_000 and stale > 0 and none > 0, (taken, stale, none)
    reader.close()


def test_views_of_a_replaced_segment_are_invalid_and_the_next_views_reattach(
    instance: str,
) -> None:
    old = KlineWriter.open(instance, SYMBOLS, 10)
    old.append("BTCUSDT", bar(1))
    reader = KlineReader(instance)
    before = reader.views(SYMBOLS, 10)
    old.close()
    new = KlineWriter.open(instance, SYMBOLS, 20)
    new.append("BTCUSDT", bar(2))
    assert before[0].rows.tolist() == [bar(1)]  # still mapped, but stale
    assert reader.validate(before) == SYMBOLS and not before[1].is_valid()
    after = reader.views(SYMBOLS, 10)
    assert after[0].rows.tolist() == [bar(2)] and reader.reattach_count == 1
    assert reader.validate(after) == [] and reader.validate([*before[:1], *after]) == ["BTCUSDT"]
    reader.close()
    new.close()


def expected_newest_ms(view_seq: int) -> float:
    """Open time of the newest bar when a fresh shm_writer's seq was view_seq (bar k = count k)."""
    return (view_seq // 2 - 1) * MINUTE_MS


def test_every_valid_view_computed_on_while_a_writer_process_hammers_is_exact(
    instance: str, writers: list[subprocess.Popen[str]]
) -> None:
    assert start_writer(writers, instance, 100, -1)[1] == "ready True 0"
    reader = reader_ready(instance, 100)
    rng = np.random.default_rng(3)
    valid = invalid = changed_under_invalid = 0
    for i in range(4_000):
        bars = int(rng.integers(1, 101))
        views = reader.views(SYMBOLS, bars) if i % 2 else [reader.view(SYMBOLS[i % 3], bars)]
        if i % 4 == 1:
            time.sleep(0.0005)  # a slow computation: the writer wraps past short-lived views
        # The computation: a checksum over the view, and a copy of what it read (to check).
        computed = [(float(v.rows[:, KlineColumn.CLOSE].sum()), v.rows.copy()) for v in views]
        stale = set(reader.validate(views))
        for v, (checksum, rows) in zip(views, computed, strict=True):
            is_exact = (
                len(rows) == bars
                and rows[-1, KlineColumn.OPEN_TIME_MS] == expected_newest_ms(v.seq)
                and checksum == rows[:, KlineColumn.CLOSE].sum()
            )
            if v.symbol in stale:
                assert not v.is_valid()
                invalid += 1
                changed_under_invalid += not is_exact
                continue
            valid += 1
            assert is_exact, f"valid view of {v.symbol} is not the window at seq {v.seq}"
            assert_consistent(rows)
    assert valid > 1_000 and invalid > 100, (valid, invalid)
    assert changed_under_invalid > 0, "no invalid view had actually changed: the writer idled"
    reader.close()


def test_views_taken_across_a_writer_kill_and_restart_stay_valid_until_the_ring_wraps(
    instance: str, writers: list[subprocess.Popen[str]]
) -> None:
    first, ready = start_writer(writers, instance, 300, -1)
    assert ready == "ready True 0"
    reader = reader_ready(instance, 300)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    kept: list[WindowView] = []
    for symbol in SYMBOLS:
        try:
            kept.append(reader.view(symbol, 50))
        except TornReadError:  # killed inside this symbol's append: readable after the restart
            pass
    copies = [v.rows.copy() for v in kept]
    assert reader.validate(kept) == []

    second, ready = start_writer(writers, instance, 300, 100)  # 100 + repair < 250 appends
    assert ready.split()[:2] == ["ready", "False"] and second.wait(10) == 0
    assert reader.validate(kept) == []
    for view, rows in zip(kept, copies, strict=True):
        assert np.array_equal(view.rows, rows)
        assert_consistent(rows)

    third, ready = start_writer(writers, instance, 300, 200)
    assert third.wait(10) == 0
    assert reader.validate(kept) == [v.symbol for v in kept]
    fresh = reader.views(SYMBOLS, 300)
    for view in fresh:
        assert_consistent(view.rows)
    assert reader.validate(fresh) == [] and reader.reattach_count == 0
    reader.close()


def test_views_of_a_record_being_written_retry_then_fail_clearly(instance: str) -> None:
    writer = KlineWriter.open(instance, SYMBOLS, 4)
    for k in range(3):
        writer.append("BTCUSDT", bar(k))
        writer.append("ETHUSDT", bar(k))
    segment = open_segment(segment_name(instance, "klines"), writable=True)
    seq = np.frombuffer(segment.map, np.int64, 1, KlineLayout(len(SYMBOLS), 4).meta_offset)
    seq += 1  # a writer stopped inside BTCUSDT's append
    reader = KlineReader(instance, read_timeout_s=0.02)
    with pytest.raises(TornReadError, match=r"BTCUSDT window was not stable within 0\.02 s"):
        reader.views(["ETHUSDT", "BTCUSDT"], 2)
    (eth,) = reader.views(["ETHUSDT"], 2)
    assert eth.rows.tolist() == [bar(1), bar(2)] and reader.validate([eth]) == []
    seq += 1  # the append completed
    del seq
    segment.close()
    btc, eth = reader.views(["BTCUSDT", "ETHUSDT"], 2)
    assert btc.rows.tolist() == eth.rows.tolist() == [bar(1), bar(2)]
    reader.close()
    writer.close()
