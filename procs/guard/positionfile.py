"""Each position's guard state on disk: `<run.dir>/guard/positions.json` (issue 13, hole 12), so a
restarted guard does not take a partial take-profit twice, keeps the holding clock of the
position's opening, and keeps the plan, trail and ids it had.

JSON (shared/schemas/guard.GuardPositions, readable by an operator), one GuardPosition per open
position, written atomically and durably (shared/store/durable.py) by the guard only, whenever a
record changes (procs/guard/logic/memory.needs_save), and without a position once it closes.
The records read at start wait in `saved` until the first reconcile decides, per position the
exchange shows, to restore or drop each (procs/guard/logic/memory.restore_decision); the rest are
dropped after the first full reconcile. A file that cannot be read is logged and ignored: every
position is then adopted afresh, as before the file existed.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from procs.guard.book import Book
from procs.guard.logic import memory as mem
from shared import log
from shared.schemas import guard as g
from shared.store.durable import save_atomically


def positions_path(run_dir: str | Path) -> Path:
    """Return the positions file of a stack."""
    return Path(run_dir) / "guard" / "positions.json"


def load_positions(path: Path) -> dict[str, g.GuardPosition]:
    """Return the saved records by symbol ({} when the file is missing). Raises OSError or
    msgspec.DecodeError for a file that cannot be read or decoded."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    return {p.symbol: p for p in g.decode_positions(raw).positions}


class PositionFile:
    """The records of the open positions: those a restarted guard found, and those written."""

    def __init__(self, path: Path, logger: log.EventLogger) -> None:
        self.path, self.log = path, logger
        try:
            self.saved = load_positions(path)  # the last guard's, until their restore decision
        except (OSError, msgspec.DecodeError) as e:
            logger.warning("positions_file_unreadable", path=str(path), error=str(e)[:200])
            self.saved = {}
        self.written: dict[str, g.GuardPosition] = dict(self.saved)

    def take(self, symbol: str) -> g.GuardPosition | None:
        """Return (and forget) the saved record of `symbol` for its restore decision."""
        return self.saved.pop(symbol, None)

    def forget_unclaimed(self) -> None:
        """Drop the saved records no position claimed (after the first full reconcile): a later
        position in the same symbol is a new one."""
        self.saved.clear()

    def sync(self, book: Book, now_ms: int) -> None:
        """Write the records of the Book's positions if one changed enough (needs_save), one was
        added or one closed. A failed write is logged; the next change writes again."""
        current: dict[str, g.GuardPosition] = dict(self.saved)  # not decided yet: kept as read
        for s, holding in book.holdings.items():
            plan, track, signal = book.plans.get(s), book.tracks.get(s), book.signals.get(s)
            written = self.written.get(s)
            if plan is None or track is None or signal is None:
                if written is not None:
                    current[s] = written
                continue
            record = mem.record_of(
                holding,
                plan,
                track,
                signal,
                book.plan_ids.get(s, ""),
                book.exits_sent.get(s, 0),
                now_ms,
            )
            current[s] = record if written is None or mem.needs_save(written, record) else written
        if current == self.written:
            return
        data = g.encode_json(g.GuardPositions(positions=[current[s] for s in sorted(current)]))
        try:
            save_atomically(self.path, data)
        except OSError as e:
            self.log.warning("positions_file_not_written", path=str(self.path), error=str(e)[:200])
            return
        self.written = current
