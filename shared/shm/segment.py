"""Named POSIX shared-memory segments under /dev/shm, without Python's resource tracker.

A segment is a file on the tmpfs at /dev/shm (what `shm_open` uses on Linux), mapped with mmap
and read through numpy views. Every segment starts with the same 128-byte header of int64 words:

    magic, layout_version, incarnation, writer_pid, is_retired, total_size, created_wall_ms,
    then 9 words of parameters that the owning module (shm.py, heartbeat.py) defines.

Why not `multiprocessing.shared_memory`: on CPython 3.11 it registers every segment, even one it
merely attaches to, with the resource tracker, which unlinks it when that process exits
(DESIGN-RULES 19). Opening the file directly never involves the tracker, so a reader's exit never
removes a segment and a segment outlives a writer crash; only `unlink_segments` removes one.

A segment is created under a temporary name, sized with `posix_fallocate` (an out-of-space tmpfs
fails here with a clear error instead of a SIGBUS on first write), its pages touched, its header
written (magic last), and only then given its final name, so a reader never sees a half-built one.
Replacing a segment marks the old one retired first; readers check that flag and the inode and
re-attach.

Error classes:
    ShmError(Exception)              any shared-memory failure
        SegmentMissingError          no segment by that name (writer not started, or unlinked)
        SegmentLayoutError           magic, version or parameters differ from what is expected
        ShmSpaceError                /dev/shm has less free space than the segment needs
        TornReadError                a seqlocked record never read stable within the retry bound
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

SHM_DIR = Path("/dev/shm")
MAGIC = int.from_bytes(b"SLTSHM01", "little")
HEADER_BYTES = 128
PAGE_BYTES = mmap.PAGESIZE

# Header word indices.
H_MAGIC = 0
H_VERSION = 1
H_INCARNATION = 2
H_WRITER_PID = 3
H_IS_RETIRED = 4
H_TOTAL_SIZE = 5
H_CREATED_WALL_MS = 6
H_PARAMS = 7  # first of the owner-defined parameter words (up to index 15)

SPIN_ATTEMPTS = 64  # seqlock read attempts before sleeping between attempts
SPIN_SLEEP_S = 0.00005

_INSTANCE_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class ShmError(Exception):
    """A shared-memory segment could not be created, opened or read."""


class SegmentMissingError(ShmError):
    """No segment exists under the name: its writer has not created it, or it was unlinked."""


class SegmentLayoutError(ShmError):
    """The segment's magic, layout version or parameters are not the expected ones."""


class ShmSpaceError(ShmError):
    """/dev/shm lacks the free space a new segment needs."""


class TornReadError(ShmError):
    """A seqlocked record stayed odd or changed under every read attempt."""


def segment_name(instance: str, kind: str) -> str:
    """Return the segment name `slt-<instance>-<kind>`; raise ValueError on unsafe characters."""
    if not _INSTANCE_RE.match(instance) or not _INSTANCE_RE.match(kind):
        raise ValueError(f"shm: instance={instance!r} kind={kind!r} must match [A-Za-z0-9_-]")
    return f"slt-{instance}-{kind}"


def align(offset: int, to: int = 64) -> int:
    """Round offset up to a multiple of `to` bytes (64 = one cache line)."""
    return (offset + to - 1) // to * to


def check_free_space(size_bytes: int, directory: Path = SHM_DIR) -> None:
    """Raise ShmSpaceError unless `directory` has at least size_bytes free (statvfs)."""
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    if free < size_bytes:
        raise ShmSpaceError(
            f"shm: {directory} has {free} bytes free, below the {size_bytes} bytes a segment needs"
        )


class Segment:
    """One mapped segment: the mmap, its int64 header view and the inode it was opened at."""

    def __init__(self, name: str, fd: int, size: int, writable: bool) -> None:
        self.name = name
        self.size = size
        self.writable = writable
        self._fd = fd
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        self.map = mmap.mmap(fd, size, access=access)
        self.inode = os.fstat(fd).st_ino
        self.header: npt.NDArray[np.int64] = np.frombuffer(
            self.map, dtype=np.int64, count=HEADER_BYTES // 8
        )

    @property
    def fd(self) -> int:
        return self._fd

    def is_current(self) -> bool:
        """Return whether the name still resolves to this segment and it is not retired."""
        if int(self.header[H_IS_RETIRED]) != 0:
            return False
        try:
            return os.stat(SHM_DIR / self.name).st_ino == self.inode
        except FileNotFoundError:
            return False

    def close(self) -> None:
        """Unmap and close. Callers drop their numpy views first (mmap refuses otherwise)."""
        del self.header
        with contextlib.suppress(BufferError):
            self.map.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)


def open_segment(name: str, writable: bool) -> Segment:
    """Map the existing segment `name`; raise SegmentMissingError or SegmentLayoutError."""
    flags = os.O_RDWR if writable else os.O_RDONLY
    try:
        fd = os.open(SHM_DIR / name, flags)
    except FileNotFoundError as e:
        raise SegmentMissingError(f"shm: segment {name} does not exist") from e
    size = os.fstat(fd).st_size
    if size < HEADER_BYTES:
        os.close(fd)
        raise SegmentLayoutError(f"shm: segment {name} is {size} bytes, below the header size")
    segment = Segment(name, fd, size, writable)
    magic = int(segment.header[H_MAGIC])
    if magic != MAGIC:
        segment.close()
        raise SegmentLayoutError(f"shm: segment {name} has magic {magic:#x}, expected {MAGIC:#x}")
    return segment


def create_segment(
    name: str, size: int, version: int, params: list[int], replace: bool
) -> Segment | None:
    """Create and publish a zero-filled segment; return it writable.

    With replace=True an existing segment of that name is retired (flag set) and replaced.
    With replace=False an existing one wins: the new one is discarded and None is returned.
    Raises ShmSpaceError when /dev/shm is too small, ValueError for more than 9 params.
    """
    if len(params) > HEADER_BYTES // 8 - H_PARAMS:
        raise ValueError(f"shm: {len(params)} header parameters exceed the 9 available")
    check_free_space(size)
    temporary = f"{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    path = SHM_DIR / temporary
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise ShmSpaceError(
                    f"shm: /dev/shm ran out of space allocating {size} bytes"
                ) from e
            raise
        segment = Segment(name, fd, size, writable=True)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    # Touch every page so the memory is committed now, not faulted in on the hot path.
    pages: npt.NDArray[np.uint8] = np.frombuffer(segment.map, dtype=np.uint8)
    pages[::PAGE_BYTES] = 0
    del pages
    header = segment.header
    header[H_VERSION] = version
    header[H_INCARNATION] = time.time_ns()  # unique across recreations, needs no stored state
    header[H_WRITER_PID] = os.getpid()
    header[H_TOTAL_SIZE] = size
    header[H_CREATED_WALL_MS] = time.time_ns() // 1_000_000
    header[H_PARAMS : H_PARAMS + len(params)] = params
    header[H_MAGIC] = MAGIC  # last: a segment with magic set is complete
    final = SHM_DIR / name
    if replace:
        _retire(name)
        os.rename(path, final)
        return segment
    try:
        os.link(path, final)  # atomic create-if-absent: fails when another process won
    except FileExistsError:
        segment.close()
        return None
    finally:
        os.unlink(path)
    return segment


def _retire(name: str) -> None:
    """Set the retired flag of the segment now under `name`, if any, so readers re-attach."""
    try:
        old = open_segment(name, writable=True)
    except ShmError:
        return
    old.header[H_IS_RETIRED] = 1
    old.close()


def unlink_segments(instance: str) -> list[str]:
    """Remove every segment of the instance (and stale temporaries); return the names removed.

    The only way a segment disappears: crashes and reader exits never remove one.
    """
    prefix = segment_name(instance, "x")[:-1]
    removed = []
    for path in sorted(SHM_DIR.glob(f"{prefix}*")):
        if ".tmp-" not in path.name:
            _retire(path.name)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    return removed


T = TypeVar("T")


def write_begin(seqs: npt.NDArray[np.int64], index: int) -> None:
    """Make record `index` odd (being written). Single writer per record.

    Ordering: on x86-64 (TSO) stores are not reordered with stores, so readers that see the
    even value again after their copy know the record did not change under them.
    """
    seqs[index] += 1


def write_end(seqs: npt.NDArray[np.int64], index: int) -> None:
    """Make record `index` even (stable) again."""
    seqs[index] += 1


def repair_seqlock(seqs: npt.NDArray[np.int64], index: int) -> bool:
    """Close a write left open by a crashed writer; return whether the record was odd."""
    if int(seqs[index]) & 1:
        seqs[index] += 1
        return True
    return False


def read_stable(
    seqs: npt.NDArray[np.int64], index: int, read: Callable[[], T], timeout_s: float, what: str
) -> T:
    """Return read() taken while record `index` was even and unchanged.

    Spins SPIN_ATTEMPTS times, then sleeps SPIN_SLEEP_S between attempts (a writer descheduled
    mid-write needs the CPU to finish); raises TornReadError when no stable read happened within
    timeout_s (the writer died mid-write, or rewrites the record faster than a read completes).
    """
    attempts = 0
    deadline_s = 0.0
    while True:
        before = int(seqs[index])
        if not before & 1:
            value = read()
            if int(seqs[index]) == before:
                return value
        attempts += 1
        if attempts < SPIN_ATTEMPTS:
            continue
        now_s = time.monotonic()
        if attempts == SPIN_ATTEMPTS:
            deadline_s = now_s + timeout_s
        elif now_s >= deadline_s:
            raise TornReadError(
                f"shm: {what} was not stable within {timeout_s} s "
                f"({attempts} read attempts, seq={int(seqs[index])})"
            )
        time.sleep(SPIN_SLEEP_S)


def params_of(segment: Segment, count: int) -> list[int]:
    """Return the first `count` owner-defined header parameters."""
    return [int(x) for x in segment.header[H_PARAMS : H_PARAMS + count]]
