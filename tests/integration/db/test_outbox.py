"""The Recorder against real servers: PostgreSQL really stopped (and Redis too), records kept in
the Redis stream or the journal file, then drained in order, each exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest

from procs.trader.outbox import Recorder
from shared.cache import Cache
from shared.log import EventLogger
from shared.schemas.records import Record, encode_record
from shared.store.db import Database, DatabaseUnavailableError
from tests.integration.db.records import (
    ENTRY_MS,
    decision,
    intent,
    position_entry,
    trade_entry,
    trade_exit,
)
from tests.services import (
    PostgresServer,
    RedisServer,
    free_port,
    postgres_server,
    redis_server,
)


class Crash(Exception):
    """Stands for the process dying between an upsert and the removal of its outbox entry."""


def life_of_one_trade(signal_id: str) -> list[Record]:
    """What the trader records for one signal, in order."""
    entry = trade_entry(signal_id)
    cid = f"slt-{signal_id}-entry-0"
    return [
        intent(cid, "intent", ENTRY_MS),
        intent(cid, "sent", ENTRY_MS + 5),
        intent(cid, "filled", ENTRY_MS + 40, detail="filled 0.004"),
        entry,
        position_entry(signal_id),
        trade_exit(entry, exit_price="97500.0"),
    ]


async def drain_until_empty(recorder: Recorder, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while await recorder.pending() > 0:
            await recorder.drain()
            await asyncio.sleep(0.05)


async def assert_final_state(db: Database, signal_ids: list[str]) -> None:
    for sid in signal_ids:
        stored = await db.load_order_intent(f"slt-{sid}-entry-0")
        assert stored is not None and stored.status == "filled"
        trade = await db.load_trade(sid)
        assert trade is not None and trade.exit_price is not None and trade.is_win is True
    assert [e.signal_id for e in await db.position_entries()] == sorted(signal_ids)
    assert await db.closed_trade_count() == len(signal_ids)


def warnings(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f" {event}" in r.getMessage()]


def test_records_wait_in_redis_while_postgres_is_stopped_then_drain_exactly_once(
    short_dir: Path, instance: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with postgres_server(short_dir) as pg, redis_server(short_dir) as rs:
        asyncio.run(_stream_outage(pg, rs, instance, short_dir / "journal"), debug=True)
    assert len(warnings(caplog, "db_unavailable")) == 1
    [recovered] = warnings(caplog, "db_recovered")
    assert "queued=12 journaled=0 drained=12" in recovered
    assert warnings(caplog, "outbox_journaling") == []


async def _stream_outage(pg: PostgresServer, rs: RedisServer, instance: str, journal: Path) -> None:
    async with (
        await Database.connect(pg.dsn, 2.0) as db,
        Cache(rs.url, instance, 1.0) as cache,
    ):
        await db.apply_migrations()
        recorder = Recorder(db, cache, EventLogger("test"), journal)
        before = life_of_one_trade("a1")
        for record in before:
            await recorder.record(record)  # written through
        assert await recorder.pending() == 0
        assert await recorder.win_stats(100) == (1, 1)
        await recorder.record(trade_entry("open9", entry_ms=ENTRY_MS + 1))

        await asyncio.to_thread(pg.stop_fast)
        with pytest.raises(DatabaseUnavailableError):
            await db.write(decision())
        during = life_of_one_trade("b2") + life_of_one_trade("c3")
        for record in during:
            await recorder.record(record)  # never raises
        assert await recorder.drain() == 0  # still down: nothing written, nothing lost
        assert await recorder.win_stats(100) == (1, 1)  # the last answer
        with pytest.raises(DatabaseUnavailableError):
            await recorder.open_trades()
        queued = await cache.read_stream(cache.keys.db_outbox(), 100)
        assert [payload for _id, payload in queued] == [encode_record(r) for r in during]
        assert not await asyncio.to_thread(journal.exists)

        await asyncio.to_thread(pg.restart)
        await drain_until_empty(recorder)
        await assert_final_state(db, ["a1", "b2", "c3"])
        assert await recorder.win_stats(100) == (3, 3)
        assert [t.trade_id for t in await recorder.open_trades()] == ["open9"]
        await recorder.record(decision())  # written through again
        assert await recorder.pending() == 0
        assert len(await db.list_decisions()) == 1


@pytest.mark.parametrize("crash_index", [0, 5])  # after the first upsert; after the exit's
def test_a_crash_between_upsert_and_delete_writes_the_record_again_as_one_row(
    database_dsn: str, redis_instance: RedisServer, instance: str, tmp_path: Path, crash_index: int
) -> None:
    async def crash_once_at(entry_index: int) -> None:
        seen: list[str] = []

        async def after_write(entry_id: str) -> None:
            seen.append(entry_id)
            if len(seen) == entry_index + 1:
                raise Crash(entry_id)

        async with (
            await Database.connect(database_dsn, 5.0) as db,
            Cache(redis_instance.url, instance, 1.0) as cache,
        ):
            await db.apply_migrations()
            records = life_of_one_trade("d4")
            for record in records:  # what a recorder left in the stream during an outage
                await cache.append_stream(cache.keys.db_outbox(), encode_record(record))
            crashing = Recorder(
                db, cache, EventLogger("test"), tmp_path / "journal", after_write=after_write
            )
            with pytest.raises(Crash):
                await crashing.drain()
            assert await crashing.pending() == len(records) - entry_index  # not yet deleted
            restarted = Recorder(db, cache, EventLogger("test"), tmp_path / "journal")
            assert await restarted.drain() == len(records) - entry_index
            assert await restarted.pending() == 0
            await assert_final_state(db, ["d4"])

    asyncio.run(crash_once_at(crash_index), debug=True)


def test_with_redis_down_too_records_go_to_the_journal_and_drain_after_the_stream(
    short_dir: Path, instance: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with postgres_server(short_dir) as pg, redis_server(short_dir) as rs:
        asyncio.run(_double_outage(pg, rs, instance, short_dir / "run" / "journal"), debug=True)
    assert len(warnings(caplog, "db_unavailable")) == 1
    assert len(warnings(caplog, "outbox_journaling")) == 1
    [pending] = warnings(caplog, "outbox_pending")  # the restarted recorder found them
    assert "stream=4 journal=12" in pending
    [recovered] = warnings(caplog, "db_recovered")
    assert "queued=2 journaled=2 drained=18" in recovered


async def _double_outage(pg: PostgresServer, rs: RedisServer, instance: str, journal: Path) -> None:
    async with (
        await Database.connect(pg.dsn, 2.0) as db,
        Cache(rs.url, instance, 1.0) as cache,
    ):
        await db.apply_migrations()
        recorder = Recorder(db, cache, EventLogger("test"), journal)
        e1, e2, e3 = life_of_one_trade("e1"), life_of_one_trade("e2"), life_of_one_trade("e3")
        await asyncio.to_thread(pg.stop_fast)
        for record in e1[:4]:
            await recorder.record(record)  # -> Redis stream
        await asyncio.to_thread(rs.stop)
        for record in e1[4:] + e2:
            await recorder.record(record)  # -> journal
        assert await asyncio.to_thread(journal.exists)
        await asyncio.to_thread(rs.restart)
        for record in e3[:4]:
            await recorder.record(record)  # -> journal still: behind what is there
        # A restarted process finds the journal and the stream where they were left.
        recorder = Recorder(db, cache, EventLogger("test"), journal)
        assert await recorder.pending() == 18 - 2
        for record in e3[4:]:
            await recorder.record(record)
        assert await recorder.pending() == 18
        await asyncio.to_thread(pg.restart)
        await drain_until_empty(recorder)
        await assert_final_state(db, ["e1", "e2", "e3"])
        assert await asyncio.to_thread(journal.read_bytes) == b""


def test_journal_written_while_both_are_down_survives_a_torn_frame_and_a_crash_in_its_drain(
    database_dsn: str, redis_instance: RedisServer, instance: str, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"

    async def crash_at_second(entry_id: str) -> None:
        if entry_id == "journal-1":
            raise Crash(entry_id)

    async def test() -> None:
        records = life_of_one_trade("f5")
        nowhere = f"127.0.0.1:{free_port()}"
        async with (
            await Database.connect(f"postgresql://x@{nowhere}/x", 1.0, probe=False) as down_db,
            Cache(f"redis://{nowhere}/0", instance, 1.0) as down_cache,
        ):
            recorder = Recorder(down_db, down_cache, EventLogger("test"), journal)
            for record in records:
                await recorder.record(record)
            assert await recorder.pending() == len(records)
        with journal.open("ab") as f:  # a crash in the middle of an append
            f.write(b"\x00\x00\x01\x00\x12\x34")
        async with (
            await Database.connect(database_dsn, 5.0) as db,
            Cache(redis_instance.url, instance, 1.0) as cache,
        ):
            await db.apply_migrations()
            crashing = Recorder(
                db, cache, EventLogger("test"), journal, after_write=crash_at_second
            )
            assert await crashing.pending() == len(records)  # the torn frame is cut off
            assert not (await asyncio.to_thread(journal.read_bytes)).endswith(b"\x12\x34")
            with pytest.raises(Crash):
                await crashing.drain()
            restarted = Recorder(db, cache, EventLogger("test"), journal)
            # The first record was removed; the second was upserted but is still there.
            assert await restarted.pending() == len(records) - 1
            assert await restarted.drain() == len(records) - 1
            assert await restarted.pending() == 0
            await assert_final_state(db, ["f5"])

    asyncio.run(test(), debug=True)


def test_run_drains_in_the_background_and_a_refused_record_is_logged_and_removed(
    database_dsn: str,
    redis_instance: RedisServer,
    instance: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)

    async def test() -> None:
        async with (
            await Database.connect(database_dsn, 5.0) as db,
            Cache(redis_instance.url, instance, 1.0) as cache,
        ):
            await db.apply_migrations()
            records = life_of_one_trade("g6")
            refused = intent("slt-g6-entry-1", status="lost")  # violates the status CHECK
            for record in [records[0], refused, *records[1:]]:
                await cache.append_stream(cache.keys.db_outbox(), encode_record(record))
            recorder = Recorder(db, cache, EventLogger("test"), tmp_path / "journal")
            task = asyncio.create_task(recorder.run(0.05))
            try:
                async with asyncio.timeout(10):
                    # Polling Redis: there is no local event to wait for.
                    while await recorder.pending() > 0:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await assert_final_state(db, ["g6"])
            assert await db.load_order_intent("slt-g6-entry-1") is None

    asyncio.run(test(), debug=True)
    [rejected] = [r.getMessage() for r in caplog.records if " record_rejected " in r.getMessage()]
    assert "kind=OrderIntent key=slt-g6-entry-1" in rejected
