"""The heartbeat table in shared memory: one seqlocked slot per process (DESIGN-RULES 5-8).

Segment `slt-<instance>-heartbeats`, layout version `LAYOUT_VERSION`: the common header
(params = slot_count, SLOT_WORDS, len(PROGRESS_NAMES)), then slot_count slots of SLOT_WORDS int64:

    0-3   process name, 32 bytes ASCII, NUL-padded (empty = free slot)
    4     seq         seqlock (even = stable, odd = being written)
    5     pid         of the writing process; the watchdog ignores a slot whose pid is not
                      supervisord's pid for that program
    6     incarnation +1 each time a process (re)claims its slot: a restart counter
    7     beat_seq    +1 per beat
    8     monotonic_ns  CLOCK_MONOTONIC at the beat (system-wide on Linux): ages use it
    9     wall_ms     UTC ms at the beat, for display only
    10    loop_lag_us how late the heartbeat task woke up: event-loop responsiveness
    11-18 progress    CLOCK_MONOTONIC ns of the last useful work, one word per PROGRESS_NAMES
                      entry (0 = never)

Each process writes only its own slot (one writer per slot); slots are claimed under an flock on
the segment so two starting processes never take the same one. The table does not depend on
Redis (rule 7). The heartbeat is written by a task on the event loop (`run_heartbeat`), never by
a thread, so a wedged loop stops beating.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shared.shm.segment import (
    H_VERSION,
    HEADER_BYTES,
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
    write_begin,
    write_end,
)

LAYOUT_VERSION = 1
DEFAULT_SLOTS = 32
SLOT_WORDS = 32
NAME_BYTES = 32
READ_TIMEOUT_S = 0.1  # longest a slot read waits for a stable record
PROGRESS_NAMES = (
    "kline",  # last closed kline handled
    "mark",  # last mark price handled
    "user_data",  # last user-data stream event
    "reconcile",  # last reconciliation with the exchange
    "decision",  # last trading decision evaluated
    "order",  # last order placed or confirmed
    "report",  # last report or alert delivered
    "check",  # last supervision check (watchdog)
)

W_SEQ, W_PID, W_INCARNATION, W_BEAT_SEQ, W_MONOTONIC_NS, W_WALL_MS, W_LAG_US = 4, 5, 6, 7, 8, 9, 10
W_PROGRESS = 11
PROGRESS_WORDS = {name: W_PROGRESS + i for i, name in enumerate(PROGRESS_NAMES)}


@dataclass(frozen=True)
class Heartbeat:
    """One process's last beat as read from the table."""

    process: str
    pid: int
    incarnation: int
    seq: int  # beats since the slot was claimed
    monotonic_ns: int
    wall_ms: int
    loop_lag_ms: float
    progress_ns: dict[str, int]  # name -> CLOCK_MONOTONIC ns of the last progress (0 = never)

    def age_s(self, now_ns: int) -> float:
        """Seconds since the beat, given CLOCK_MONOTONIC now (time.monotonic_ns())."""
        return (now_ns - self.monotonic_ns) / 1e9

    def progress_age_s(self, name: str, now_ns: int) -> float | None:
        """Seconds since progress `name`, or None when it never happened."""
        at = self.progress_ns[name]
        return None if at == 0 else (now_ns - at) / 1e9


def _size(slot_count: int) -> int:
    return HEADER_BYTES + slot_count * SLOT_WORDS * 8


def _slots(segment: Segment) -> npt.NDArray[np.int64]:
    slot_count, words, progress = params_of(segment, 3)
    version = int(segment.header[H_VERSION])
    if version != LAYOUT_VERSION or words != SLOT_WORDS or progress != len(PROGRESS_NAMES):
        raise SegmentLayoutError(
            f"heartbeat: segment {segment.name} has version {version}, {words} words per slot and "
            f"{progress} progress fields, expected {LAYOUT_VERSION}, {SLOT_WORDS}, "
            f"{len(PROGRESS_NAMES)}"
        )
    if segment.size < _size(slot_count):
        raise SegmentLayoutError(f"heartbeat: segment {segment.name} is smaller than its layout")
    return np.frombuffer(segment.map, np.int64, slot_count * SLOT_WORDS, HEADER_BYTES).reshape(
        slot_count, SLOT_WORDS
    )


def _name_of(slot: npt.NDArray[np.int64]) -> str:
    return slot[: NAME_BYTES // 8].tobytes().rstrip(b"\0").decode("ascii", "replace")


def _open_table(instance: str, slot_count: int) -> Segment:
    """Open the instance's table for writing, creating it (or replacing a mismatched one)."""
    name = segment_name(instance, "heartbeats")
    for _ in range(3):  # another process may create or replace it between our steps
        try:
            segment = open_segment(name, writable=True)
            try:
                _slots(segment)
            except SegmentLayoutError:
                segment.close()
                raise
            return segment
        except SegmentMissingError:
            replace = False
        except SegmentLayoutError:
            replace = True
        params = _params(slot_count)
        created = create_segment(name, _size(slot_count), LAYOUT_VERSION, params, replace)
        if created is not None:
            return created
    raise ShmError(f"heartbeat: could not open or create segment {name}")


def _params(slot_count: int) -> list[int]:
    return [slot_count, SLOT_WORDS, len(PROGRESS_NAMES)]


class HeartbeatWriter:
    """Owns one slot of the heartbeat table, named after the process."""

    def __init__(self, instance: str, process: str, slot_count: int = DEFAULT_SLOTS) -> None:
        """Claim (or re-claim after a restart) the process's slot; raise ShmError when full."""
        raw = process.encode("ascii")
        if not 0 < len(raw) < NAME_BYTES:
            raise ValueError(f"heartbeat: process name {process!r} exceeds {NAME_BYTES - 1} bytes")
        self.instance = instance
        self.process = process
        self.slot_count = slot_count
        self._name_words = np.frombuffer(raw.ljust(NAME_BYTES, b"\0"), np.int64)
        self._claim()

    def _claim(self) -> None:
        self._segment = _open_table(self.instance, self.slot_count)
        self._table = _slots(self._segment)
        fcntl.flock(self._segment.fd, fcntl.LOCK_EX)
        try:
            index = self._find_slot()
            seqs = self._table[:, W_SEQ]
            repair_seqlock(seqs, index)  # a predecessor killed mid-beat
            slot = self._table[index]
            write_begin(seqs, index)
            slot[: NAME_BYTES // 8] = self._name_words
            slot[W_PID] = os.getpid()
            slot[W_INCARNATION] += 1
            slot[W_BEAT_SEQ:] = 0
            write_end(seqs, index)
        finally:
            fcntl.flock(self._segment.fd, fcntl.LOCK_UN)
        self._index = index
        self.incarnation = int(slot[W_INCARNATION])

    def _find_slot(self) -> int:
        names = self._table[:, : NAME_BYTES // 8]
        same = np.flatnonzero((names == self._name_words).all(axis=1))
        if same.size:
            return int(same[0])
        free = np.flatnonzero((names == 0).all(axis=1))
        if not free.size:
            raise ShmError(
                f"heartbeat: all {len(names)} slots of {self._segment.name} are taken; "
                f"cannot add {self.process}"
            )
        return int(free[0])

    def beat(
        self,
        loop_lag_ms: float,
        progress_ns: Mapping[str, int] | None = None,
        now_ns: int | None = None,
        wall_ms: int | None = None,
    ) -> None:
        """Write one beat: loop lag in ms, progress {name: CLOCK_MONOTONIC ns}.

        now_ns and wall_ms default to the clocks. Raises KeyError for a name not in
        PROGRESS_NAMES. Re-claims the slot if the table was replaced under it.
        """
        if not self._segment.is_current():
            self.close()
            self._claim()
        slot = self._table[self._index]
        seqs = self._table[:, W_SEQ]
        progress = [(PROGRESS_WORDS[name], v) for name, v in (progress_ns or {}).items()]
        write_begin(seqs, self._index)
        slot[W_BEAT_SEQ] += 1
        slot[W_MONOTONIC_NS] = time.monotonic_ns() if now_ns is None else now_ns
        slot[W_WALL_MS] = time.time_ns() // 1_000_000 if wall_ms is None else wall_ms
        slot[W_LAG_US] = round(loop_lag_ms * 1000)
        for word, value in progress:
            slot[word] = value
        write_end(seqs, self._index)

    def close(self) -> None:
        """Unmap; the slot keeps its last beat, which is how the watchdog sees it go stale."""
        del self._table
        self._segment.close()


def _read(table: npt.NDArray[np.int64], index: int) -> Heartbeat | None:
    slot = table[index]
    name = _name_of(slot)
    if not name:
        return None
    return Heartbeat(
        process=name,
        pid=int(slot[W_PID]),
        incarnation=int(slot[W_INCARNATION]),
        seq=int(slot[W_BEAT_SEQ]),
        monotonic_ns=int(slot[W_MONOTONIC_NS]),
        wall_ms=int(slot[W_WALL_MS]),
        loop_lag_ms=int(slot[W_LAG_US]) / 1000,
        progress_ns={n: int(slot[W_PROGRESS + i]) for i, n in enumerate(PROGRESS_NAMES)},
    )


class HeartbeatReader:
    """Read-only view of the table for the watchdog; re-attaches when the table is replaced."""

    def __init__(self, instance: str, read_timeout_s: float = READ_TIMEOUT_S) -> None:
        """Attach; raise SegmentMissingError when no process has created the table yet."""
        self.name = segment_name(instance, "heartbeats")
        self.read_timeout_s = read_timeout_s
        self._segment = open_segment(self.name, writable=False)
        self._table = _slots(self._segment)

    def read(self) -> dict[str, Heartbeat]:
        """Return {process: last heartbeat} of every claimed slot; raise TornReadError."""
        if not self._segment.is_current():
            segment = open_segment(self.name, writable=False)
            self.close()
            self._segment, self._table = segment, _slots(segment)
        table = self._table
        seqs = table[:, W_SEQ]
        beats: dict[str, Heartbeat] = {}
        for index in range(len(table)):
            if table[index, 0] == 0:
                continue  # never claimed (a slot being claimed right now shows up next read)
            read = functools.partial(_read, table, index)
            beat = read_stable(seqs, index, read, self.read_timeout_s, "heartbeat slot")
            if beat is not None:
                beats[beat.process] = beat
        return beats

    def close(self) -> None:
        del self._table
        self._segment.close()


def read_heartbeats(instance: str) -> dict[str, Heartbeat]:
    """Return the instance's heartbeats, {} when the table does not exist yet."""
    try:
        reader = HeartbeatReader(instance)
    except SegmentMissingError:
        return {}
    try:
        return reader.read()
    finally:
        reader.close()


async def run_heartbeat(
    writer: HeartbeatWriter,
    interval_s: float,
    progress_fn: Callable[[], Mapping[str, int]] | None = None,
) -> None:
    """Beat every interval_s from this task, measuring loop lag as wake-up time minus due time.

    Runs until cancelled (CancelledError propagates; the slot keeps its last beat). progress_fn
    returns {name: CLOCK_MONOTONIC ns of the last progress} and is called on the loop each beat.
    """
    lag_s = 0.0
    while True:
        writer.beat(lag_s * 1000, progress_fn() if progress_fn else None)
        due_s = time.monotonic() + interval_s
        await asyncio.sleep(interval_s)
        lag_s = max(0.0, time.monotonic() - due_s)
