"""The kill switch's equity watch on disk: `<run.dir>/guard/equity.json`, so a restarted guard
keeps the peak, the day's start, the transfers netted and the last operator reset.

Written atomically and durably (shared/store/durable.py: temp file, fsync, rename, fsync of the
directory) whenever the watch changes, by the guard only. JSON, readable by an operator:

    {"peak_equity":"10000.00","day_start_equity":"9950.00","day_start_ms":1699920000000,
     "peak_balance_ms":...,"day_start_balance_ms":...,"transfers_through_ms":...,"reset_ms":0}

A missing file means no watch yet (a first start); an unreadable one raises EquityFileError,
which the guard turns into a halt that needs the operator (the lost peak cannot be guessed).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from procs.guard.logic.risk import EquityWatch
from shared.store.durable import save_atomically

_decoder = msgspec.json.Decoder(EquityWatch)
_encoder = msgspec.json.Encoder()


class EquityFileError(Exception):
    """The equity file exists but cannot be read or decoded."""


def equity_path(run_dir: str | Path) -> Path:
    """Return the equity watch file of a stack."""
    return Path(run_dir) / "guard" / "equity.json"


def load_watch(path: Path) -> EquityWatch | None:
    """Return the persisted watch; None when the file is missing. Raises EquityFileError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise EquityFileError(f"equity file {path} cannot be read: {e}") from e
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as e:  # ValidationError included
        raise EquityFileError(f"equity file {path} is malformed: {e}; head {raw[:200]!r}") from e


def save_watch(path: Path, watch: EquityWatch) -> None:
    """Write the watch atomically and durably."""
    save_atomically(path, _encoder.encode(watch))
