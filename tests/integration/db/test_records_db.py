"""Record upserts against a real PostgreSQL: idempotent, monotone, exact amounts, typed errors."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal

import asyncpg
import msgspec
import pytest

from shared.config import load_config
from shared.schemas.records import OrderIntent
from shared.stack import database_user
from shared.store.db import Database, DatabaseRejectedError, DatabaseUnavailableError, postgres_dsn
from tests.integration.db.records import (
    ENTRY_MS,
    decision,
    intent,
    position_entry,
    trade_entry,
    trade_exit,
    with_db,
)
from tests.services import free_port


async def count(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        n: int = await conn.fetchval(f"SELECT count(*) FROM {table}")
        return n
    finally:
        await conn.close()


def test_writing_the_same_records_twice_leaves_one_row_each(database_dsn: str) -> None:
    async def test(db: Database) -> None:
        for _ in range(2):
            for record in (intent(), trade_entry(), position_entry(), decision()):
                await db.write(record)
        for table in ("order_intents", "trades", "position_entries", "promotion_decisions"):
            assert await count(database_dsn, table) == 1
        assert await db.load_order_intent("slt-sig1-entry-0") == intent()
        assert await db.position_entries() == [position_entry()]
        assert await db.list_decisions() == [decision()]

    with_db(database_dsn, test)


def test_trade_entry_then_exit_updates_one_row_and_a_replayed_entry_does_not_reopen_it(
    database_dsn: str,
) -> None:
    async def test(db: Database) -> None:
        entry = trade_entry()
        closed = trade_exit(entry, exit_price="97500.0")
        await db.write(entry)
        stored = await db.load_trade("sig1")
        assert stored is not None and not stored.is_closed
        await db.write(closed)
        await db.write(entry)  # a replay of the older record
        stored = await db.load_trade("sig1")
        assert await count(database_dsn, "trades") == 1
        assert stored is not None
        assert stored.exit_price == Decimal("97500.0")
        assert stored.net_pnl_usdt == closed.net_pnl_usdt == Decimal("1.560975")  # exact
        assert stored.is_win is True
        assert stored.features[:2] == (0.25, -1.5) and math.isnan(stored.features[2])

    with_db(database_dsn, test)


def test_order_intent_moves_forward_and_a_replayed_older_status_is_ignored(
    database_dsn: str,
) -> None:
    async def test(db: Database) -> None:
        await db.write(intent(status="intent", updated_ms=ENTRY_MS))
        await db.write(intent(status="sent", updated_ms=ENTRY_MS))
        await db.write(intent(status="filled", updated_ms=ENTRY_MS + 40, detail="filled 0.004"))
        await db.write(intent(status="sent", updated_ms=ENTRY_MS))
        await db.write(intent(status="intent", updated_ms=ENTRY_MS))
        stored = await db.load_order_intent("slt-sig1-entry-0")
        assert stored is not None
        assert (stored.status, stored.updated_ms, stored.detail) == (
            "filled",
            ENTRY_MS + 40,
            "filled 0.004",
        )
        assert stored.created_ms == ENTRY_MS

    with_db(database_dsn, test)


def test_stats_count_newest_closed_trades_only(database_dsn: str) -> None:
    async def test(db: Database) -> None:
        await db.write(trade_entry("open1"))
        prices = ["97500.0", "96000.0", "98000.0", "97100.0"]  # win, loss, win, loss (fees)
        for i, price in enumerate(prices):
            entry = trade_entry(f"t{i}", is_virtual=i % 2 == 1, entry_ms=ENTRY_MS + i * 1000)
            await db.write(trade_exit(entry, exit_price=price))
        assert await db.closed_trade_count() == 4
        assert await db.closed_trade_count(include_virtual=False) == 2
        assert await db.win_stats(100) == (2, 4)
        assert await db.win_stats(2) == (1, 2)  # t3 loss, t2 win
        samples = await db.trade_samples(3)
        assert [t.trade_id for t in samples] == ["t3", "t2", "t1"]
        assert all(t.is_closed for t in samples)

    with_db(database_dsn, test)


def test_a_record_the_server_refuses_raises_rejected(database_dsn: str) -> None:
    async def test(db: Database) -> None:
        with pytest.raises(DatabaseRejectedError, match="write OrderIntent failed"):
            await db.write(intent(status="lost"))  # violates the status CHECK

    with_db(database_dsn, test)


def test_an_unreachable_server_raises_unavailable_within_the_deadline() -> None:
    async def test() -> None:
        dsn = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
        with pytest.raises(DatabaseUnavailableError, match="connect failed"):
            await Database.connect(dsn, 2.0)
        db = await Database.connect(dsn, 2.0, probe=False)
        try:
            with pytest.raises(DatabaseUnavailableError, match="write TradeRecord failed"):
                await db.write(trade_entry())
        finally:
            await db.close()

    asyncio.run(test(), debug=True)


def test_postgres_dsn_is_the_configured_one_or_the_private_instance() -> None:
    cfg = load_config("paper", env={})
    private = f"postgresql://{database_user()}@127.0.0.1:{cfg.postgres.private_port}/slt"
    assert postgres_dsn(cfg) == private
    external = load_config(
        "paper", overlay={"postgres": {"dsn": "postgresql://a@db:5432/x"}}, env={}
    )
    assert postgres_dsn(external) == "postgresql://a@db:5432/x"


def test_unsettled_intents_are_those_whose_fate_is_not_recorded_oldest_first(
    database_dsn: str,
) -> None:
    def made(client_id: str, status: str, created_ms: int) -> OrderIntent:
        return msgspec.structs.replace(
            intent(client_id, status), created_ms=created_ms, updated_ms=created_ms
        )

    async def test(db: Database) -> None:
        await db.write(made("slt-b-entry-0", "sent", ENTRY_MS + 2))
        await db.write(made("slt-a-entry-0", "intent", ENTRY_MS + 1))
        await db.write(made("slt-c-entry-0", "filled", ENTRY_MS + 3))
        await db.write(made("slt-d-entry-0", "rejected", ENTRY_MS + 4))
        unsettled = await db.unsettled_intents()
        assert [i.client_id for i in unsettled] == ["slt-a-entry-0", "slt-b-entry-0"]

    with_db(database_dsn, test)
