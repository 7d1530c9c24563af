"""Small state files that must survive a crash whole: the guard's halt flag, the watchdog's memory.

`save_atomically` writes a temp file beside the target, fsyncs it, renames it over the target and
fsyncs the directory, so after a kill -9 or a power cut the file holds the old or the new bytes,
never half of either.
"""

from __future__ import annotations

import os
from pathlib import Path


def save_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably (creates the directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
