"""Recorder: write records through to PostgreSQL, and keep them durably in order while it is down.

    record(r):  nothing pending            -> upsert into PostgreSQL
                PostgreSQL unavailable,
                or something pending        -> XADD msgpack(r) to the Redis stream Keys.db_outbox()
                Redis unavailable too,
                or the journal is not empty -> append a frame to the local journal file (fsync)
    drain():    stream entries oldest first: upsert, then XDEL that entry, only after the upsert
                committed; then the journal's records in order (the file is rewritten atomically
                afterwards). When both are empty, record() writes directly again.

Order: once anything is pending every new record goes behind it, and the journal is used only when
Redis failed (and then until it is drained), so every journal record is newer than every stream
entry and draining stream-then-journal replays the original order.

Exactly once: a crash between an upsert and its XDEL (or the journal rewrite) writes the record
again on the next drain; `Database.write` is an idempotent, monotone upsert, so there is still one
row in its final state. Several processes may drain the same stream: each entry is upserted at
least once, never reorders a row backwards (monotone), and is deleted by whoever finishes first.
(A consumer group, DESIGN-RULES 17, would split the stream between consumers and lose the order.)

Logs: one WARNING per transition (`db_unavailable`, `outbox_journaling`, `outbox_pending` when a
restart finds records left behind, `db_recovered` with counts), never one per record. record()
never raises for an outage; it raises DatabaseRejectedError for a record PostgreSQL refuses (a
bug). drain() logs such a record as `record_rejected` (ERROR) and removes it, so one bad record
cannot block the outbox.

Journal frame: 4-byte big-endian length, 4-byte CRC-32 of the payload, msgpack payload. A torn
last frame (a crash mid-append) is cut off at load with one `bad_message` line.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from shared.cache import Cache, CacheUnavailableError
from shared.log import EventLogger
from shared.schemas.records import (
    OrderIntent,
    PositionEntry,
    PromotionDecision,
    Record,
    TradeRecord,
    decode_record,
    encode_record,
)
from shared.store.db import Database, DatabaseRejectedError, DatabaseUnavailableError
from shared.store.durable import save_atomically

_FRAME = struct.Struct(">II")  # payload length, CRC-32 of the payload

AfterWrite = Callable[[str], Awaitable[None]]


def _frame(payload: bytes) -> bytes:
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _record_key(record: Record) -> str:
    match record:
        case OrderIntent():
            return record.client_id
        case TradeRecord():
            return record.trade_id
        case PositionEntry():
            return record.signal_id
        case PromotionDecision():
            return f"{record.challenger_version}@{record.decided_ms}"


def _decode_or_none(payload: bytes) -> Record | None:
    try:
        return decode_record(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # drain() logs and removes it


class Recorder:
    """Durable, ordered, exactly-once recording of records into PostgreSQL."""

    def __init__(
        self,
        db: Database,
        cache: Cache,
        log: EventLogger,
        journal_path: Path,
        *,
        batch: int = 100,
        after_write: AfterWrite | None = None,
    ) -> None:
        """`after_write(entry_id)` runs after each drained upsert committed and before its entry
        is removed (a test raises there to act out a crash between the two)."""
        self.db = db
        self.cache = cache
        self.log = log
        self.journal_path = journal_path
        self.batch = batch
        self._after_write = after_write
        self._key = cache.keys.db_outbox()
        self._lock = asyncio.Lock()  # enqueue vs. the drain's final "everything is empty" check
        self._drain_lock = asyncio.Lock()
        self._is_backlogged: bool | None = None  # None: the stream was not looked at yet
        self._stream_length = 0  # last known length of the stream
        self._outage_since: float | None = None  # monotonic s of db_unavailable, else None
        self._queued = 0  # records queued since the outage began
        self._journaled = 0  # of those, into the journal
        self._drained = 0  # records drained since the outage began
        self._win_stats = (0, 0)  # last answer of win_stats
        self._journal: list[Record] = self._load_journal()

    def _load_journal(self) -> list[Record]:
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return []
        records: list[Record] = []
        offset = 0
        while offset < len(data):
            header = data[offset : offset + _FRAME.size]
            length, crc = _FRAME.unpack(header) if len(header) == _FRAME.size else (-1, 0)
            payload = data[offset + _FRAME.size : offset + _FRAME.size + length]
            if length < 0 or len(payload) != length or zlib.crc32(payload) != crc:
                self.log.warning(
                    "bad_message",
                    source="journal",
                    reason="torn frame",
                    data=data[offset : offset + 200].hex(),
                )
                # Cut it off, or the next append would land behind it and be unreadable.
                save_atomically(self.journal_path, data[:offset])
                break
            try:
                records.append(decode_record(payload))
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                self.log.warning(
                    "bad_message", source="journal", reason=str(e), data=payload[:200].hex()
                )
            offset += _FRAME.size + length
        return records

    def _append_journal(self, record: Record) -> None:
        self.journal_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, _frame(encode_record(record)))
            os.fsync(fd)
        finally:
            os.close(fd)
        self._journal.append(record)

    def _save_journal(self) -> None:
        save_atomically(
            self.journal_path, b"".join(_frame(encode_record(r)) for r in self._journal)
        )

    async def _has_backlog(self) -> bool:
        if self._is_backlogged is None:  # first look: what did an earlier run leave behind?
            try:
                self._stream_length = await self.cache.stream_length(self._key)
            except CacheUnavailableError:
                # Unknown: write through; drain() still empties the stream once Redis is back,
                # and replaying an older entry after a newer row changes nothing (monotone).
                self._stream_length = 0
            self._is_backlogged = self._stream_length > 0 or bool(self._journal)
            if self._is_backlogged:
                self._outage_since = time.monotonic()
                self.log.warning(
                    "outbox_pending", stream=self._stream_length, journal=len(self._journal)
                )
        return self._is_backlogged or bool(self._journal)

    async def record(self, record: Record) -> None:
        """Write `record` to PostgreSQL, or queue it durably behind what is pending.

        Never raises for an outage of PostgreSQL or Redis; raises DatabaseRejectedError when
        PostgreSQL refuses the record. On cancellation the record may or may not be stored.
        """
        if not await self._has_backlog():
            try:
                await self.db.write(record)
                return
            except DatabaseUnavailableError as e:
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    self._queued = self._journaled = self._drained = 0
                    self.log.warning("db_unavailable", error=str(e), action="outbox")
        async with self._lock:
            await self._enqueue(record)

    async def _enqueue(self, record: Record) -> None:
        self._is_backlogged = True
        self._queued += 1
        if not self._journal:
            try:
                await self.cache.append_stream(self._key, encode_record(record))
                self._stream_length += 1
                return
            except CacheUnavailableError as e:
                self.log.warning("outbox_journaling", error=str(e), path=str(self.journal_path))
        try:
            self._append_journal(record)
            self._journaled += 1
        except OSError as e:
            self.log.error(
                "record_lost", kind=type(record).__name__, key=_record_key(record), error=str(e)
            )

    async def pending(self) -> int:
        """Return how many records wait in the stream and the journal (the stream's last known
        length when Redis does not answer)."""
        try:
            self._stream_length = await self.cache.stream_length(self._key)
        except CacheUnavailableError:
            pass
        return self._stream_length + len(self._journal)

    async def drain(self) -> int:
        """Write pending records in order, removing each only after its upsert committed; return
        how many were written. Stops quietly at an outage (the next call resumes)."""
        async with self._drain_lock:
            written = 0
            try:
                await self._has_backlog()
                written += await self._drain_stream()
                written += await self._drain_journal()
                async with self._lock:
                    self._stream_length = await self.cache.stream_length(self._key)
                    if self._stream_length == 0 and not self._journal:
                        self._recovered(written)
                        return written
            except (DatabaseUnavailableError, CacheUnavailableError):
                pass
            self._drained += written
            return written

    def _recovered(self, written: int) -> None:
        self._is_backlogged = False
        if self._outage_since is not None:
            self.log.warning(
                "db_recovered",
                queued=self._queued,
                journaled=self._journaled,
                drained=self._drained + written,
                outage_s=round(time.monotonic() - self._outage_since, 3),
            )
            self._outage_since = None

    async def _write_queued(self, record: Record) -> None:
        try:
            await self.db.write(record)
        except DatabaseRejectedError as e:
            self.log.error(
                "record_rejected", kind=type(record).__name__, key=_record_key(record), error=str(e)
            )

    async def _drain_stream(self) -> int:
        written = 0
        while entries := await self.cache.read_stream(self._key, self.batch):
            for entry_id, payload in entries:
                try:
                    record = decode_record(payload)
                except (msgspec.DecodeError, msgspec.ValidationError) as e:
                    self.log.warning(
                        "bad_message", source="outbox", reason=str(e), data=payload[:200].hex()
                    )
                else:
                    await self._write_queued(record)
                    if self._after_write is not None:
                        await self._after_write(entry_id)
                    written += 1
                await self.cache.delete_stream_entries(self._key, [entry_id])
        return written

    async def _drain_journal(self) -> int:
        written = 0
        try:
            while self._journal:
                await self._write_queued(self._journal[0])
                if self._after_write is not None:
                    await self._after_write(f"journal-{written}")
                self._journal.pop(0)
                written += 1
        finally:
            if written:
                self._save_journal()
        return written

    async def win_stats(self, limit: int) -> tuple[int, int]:
        """Return Database.win_stats(limit); while PostgreSQL is unavailable, the last answer
        (or (0, 0) before the first one), so sizing goes on with what was known."""
        try:
            self._win_stats = await self.db.win_stats(limit)
        except DatabaseUnavailableError:
            pass
        return self._win_stats

    async def open_trades(self) -> list[TradeRecord]:
        """Return the real trades not closed yet: PostgreSQL's, updated by the records still
        pending in the outbox (drained first when possible), oldest entry first.

        Raises DatabaseUnavailableError while PostgreSQL is unavailable (the answer would be
        incomplete); CacheUnavailableError when the stream cannot be read.
        """
        await self.drain()
        trades = {t.trade_id: t for t in await self.db.open_trades()}
        pending = [payload for _id, payload in await self.cache.read_stream(self._key, 1 << 20)]
        for record in [*map(_decode_or_none, pending), *self._journal]:
            if isinstance(record, TradeRecord) and not record.is_virtual:
                if record.is_closed:
                    trades.pop(record.trade_id, None)
                else:
                    trades[record.trade_id] = record
        return sorted(trades.values(), key=lambda t: (t.entry_ms, t.trade_id))

    async def run(self, interval_s: float) -> None:
        """Drain every `interval_s` seconds until cancelled."""
        while True:
            try:
                await self.drain()
            except Exception:  # a bug: log it with its traceback and keep recording
                self.log.exception("outbox_drain_failed")
            await asyncio.sleep(interval_s)
