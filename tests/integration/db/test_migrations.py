"""Versioned migrations against a real PostgreSQL: applied once, idempotent, changes refused."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from shared.store.db import Database
from shared.store.migrations import MigrationError, load_migrations

MIGRATIONS = Path(__file__).resolve().parents[3] / "shared" / "store" / "migrations"


def run(coro: object) -> None:
    asyncio.run(coro, debug=True)  # type: ignore[arg-type]


def test_migrations_apply_once_and_a_second_start_applies_nothing(database_dsn: str) -> None:
    async def test() -> None:
        versions = [m.version for m in load_migrations()]
        async with await Database.connect(database_dsn, 5.0) as db:
            assert await db.apply_migrations() == versions
        async with await Database.connect(database_dsn, 5.0) as db:
            assert await db.apply_migrations() == []
        conn = await asyncpg.connect(database_dsn, timeout=5)
        try:
            rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
            indexes = {r[0] for r in await conn.fetch("SELECT indexname FROM pg_indexes")}
        finally:
            await conn.close()
        assert sorted((r["version"], r["name"]) for r in rows) == [
            (m.version, m.name) for m in load_migrations()
        ]
        assert rows[0]["checksum"] == load_migrations()[0].checksum
        assert {
            "trades_is_win",
            "trades_entry_ms",
            "trades_exit_ms",
            "trades_symbol",
            "trades_net_pnl_usdt",
            "trades_stats",
        } <= indexes

    run(test())


def test_concurrent_starters_apply_each_migration_once(database_dsn: str) -> None:
    async def test() -> None:
        dbs = [await Database.connect(database_dsn, 5.0) for _ in range(3)]
        try:
            applied = await asyncio.gather(*(db.apply_migrations() for db in dbs))
        finally:
            for db in dbs:
                await db.close()
        assert sorted(applied) == [[], [], [m.version for m in load_migrations()]]

    run(test())


def test_a_changed_applied_migration_is_refused(database_dsn: str, tmp_path: Path) -> None:
    shutil.copytree(
        MIGRATIONS, tmp_path / "m", ignore=shutil.ignore_patterns("*.py", "__pycache__")
    )
    directory = tmp_path / "m"

    async def test() -> None:
        async with await Database.connect(database_dsn, 5.0) as db:
            assert await db.apply_migrations(directory) == [m.version for m in load_migrations()]
            first = directory / "0001_init.sql"
            first.write_text(first.read_text() + "\n-- edited after it was applied\n")
            with pytest.raises(
                MigrationError, match=r"0001_init\.sql changed after it was applied"
            ):
                await db.apply_migrations(directory)

    run(test())


def test_a_new_migration_is_applied_after_the_old_ones(database_dsn: str, tmp_path: Path) -> None:
    shutil.copytree(
        MIGRATIONS, tmp_path / "m", ignore=shutil.ignore_patterns("*.py", "__pycache__")
    )
    directory = tmp_path / "m"

    async def test() -> None:
        async with await Database.connect(database_dsn, 5.0) as db:
            shipped = [m.version for m in load_migrations()]
            assert await db.apply_migrations(directory) == shipped
            n = shipped[-1]
            (directory / f"{n + 1:04d}_note.sql").write_text(
                "ALTER TABLE trades ADD COLUMN note text;"
            )
            assert await db.apply_migrations(directory) == [n + 1]
            broken = directory / f"{n + 2:04d}_broken.sql"
            broken.write_text("ALTER TABLE nowhere ADD COLUMN x int;")
            with pytest.raises(MigrationError, match=rf"{n + 2:04d}_broken\.sql failed"):
                await db.apply_migrations(directory)
            broken.unlink()
            assert await db.apply_migrations(directory) == []  # the broken one rolled back whole

    run(test())
