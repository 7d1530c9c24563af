"""PostgreSQL: trading records and model versions over an asyncpg pool, a deadline on every call.

Class tree:
    Exception
    ├── DatabaseError
    │   ├── DatabaseUnavailableError   connection refused or lost, server shutting down, or
    │   │                              the deadline passed: retry later (procs/trader/outbox.py
    does)
    │   ├── DatabaseRejectedError      the server refused the statement (bug, bad data): no retry
    │   └── ModelStateError            promote/reject/rollback asked for an impossible transition
    └── MigrationError                 (shared.store.migrations) a migration failed or a file
    changed

Rules:
- `write(record)` is an idempotent upsert by the record's primary key, and monotone, so a replayed
  older record never undoes a newer one: an order intent moves only to an equal or later
  (updated_ms, status rank intent < sent < unknown < filled < rejected); a closed trade is never
  reopened by its entry record; a promotion decision is keyed by (challenger_version, decided_ms).
- Models: at most one champion (also a unique index). promote(v) retires the champion and records
  a PromotionDecision; rollback() demotes the champion (retired, is_rolled_back) and restores the
  most recently retired previous champion not itself rolled back, so repeated rollbacks walk back
  through history instead of swapping two versions.
- Deadlines: every statement has `command_timeout_s` (asyncpg's command_timeout) and every public
  call, including pool acquire and connect, runs under `asyncio.timeout(command_timeout_s)`.
  On timeout or cancellation asyncpg cancels the running query and resets the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
import msgspec

from shared.config import Config
from shared.log import EventLogger
from shared.schemas.records import (
    LabelSpec,
    ModelVersionRecord,
    OrderIntent,
    PositionEntry,
    PromotionDecision,
    Record,
    TradeRecord,
)
from shared.stack import database_user
from shared.store.migrations import MigrationError, load_migrations

T = TypeVar("T")
Connection = Any  # asyncpg.Connection (untyped)

_MIGRATION_LOCK = 0x534C_5400_0001  # pg advisory lock keys ("SLT" + purpose)
_MODEL_LOCK = 0x534C_5400_0002

_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,  # closed pool or connection
    asyncpg.PostgresConnectionError,  # class 08: connection lost or refused
    asyncpg.OperatorInterventionError,  # class 57: shutdown, restart, query cancelled
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk full
    # 3D000: the database is not created yet (scripts/run-paper creates it once PostgreSQL is up,
    # while the trader may already be connecting): wait for it like for a server that is down.
    asyncpg.InvalidCatalogNameError,
)


class DatabaseError(Exception):
    """Base of the PostgreSQL errors."""


class DatabaseUnavailableError(DatabaseError):
    """PostgreSQL did not answer in time or the connection failed; retry later."""


class DatabaseRejectedError(DatabaseError):
    """PostgreSQL refused the statement (constraint, type, SQL); retrying will not help."""


class ModelStateError(DatabaseError):
    """A model transition is impossible (unknown version, no champion, nothing to restore)."""


def postgres_dsn(cfg: Config) -> str:
    """Return cfg.postgres.dsn, or the DSN of the stack's private instance when it is empty."""
    pg = cfg.postgres
    return pg.dsn or f"postgresql://{database_user()}@127.0.0.1:{pg.private_port}/{pg.database}"


def _translate(what: str, e: BaseException) -> DatabaseError:
    text = f"postgres: {what} failed ({type(e).__name__}: {e})"
    if isinstance(e, _UNAVAILABLE):
        return DatabaseUnavailableError(text)
    return DatabaseRejectedError(text)


def _json_text(value: Any) -> str:
    return msgspec.json.encode(value).decode()


async def _init_connection(conn: Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=_json_text, decoder=msgspec.json.decode, schema="pg_catalog"
    )


# Upserts: see the module docstring for why each is monotone.
_UPSERT_INTENT = """
INSERT INTO order_intents (client_id, signal_id, symbol, side, quantity, leverage, confidence,
                           model_version, status, detail, created_ms, updated_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (client_id) DO UPDATE SET
    quantity = EXCLUDED.quantity, leverage = EXCLUDED.leverage, status = EXCLUDED.status,
    detail = EXCLUDED.detail, updated_ms = EXCLUDED.updated_ms
WHERE (order_intents.updated_ms,
       array_position(ARRAY['intent', 'sent', 'unknown', 'filled', 'rejected'],
                      order_intents.status))
   <= (EXCLUDED.updated_ms,
       array_position(ARRAY['intent', 'sent', 'unknown', 'filled', 'rejected'], EXCLUDED.status))
"""

_TRADE_COLUMNS = (
    "trade_id, is_virtual, symbol, side, quantity, entry_price, entry_ms, exit_price, exit_ms, "
    "exit_reason, gross_pnl_usdt, fees_usdt, funding_usdt, net_pnl_usdt, is_win, confidence, "
    "model_version, feature_schema, features"
)
_TRADE_UPDATES = ", ".join(
    f"{c} = EXCLUDED.{c}" for c in _TRADE_COLUMNS.replace(" ", "").split(",")[1:]
)
_UPSERT_TRADE = f"""
INSERT INTO trades ({_TRADE_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
ON CONFLICT (trade_id) DO UPDATE SET {_TRADE_UPDATES}
WHERE trades.exit_ms IS NULL OR EXCLUDED.exit_ms IS NOT NULL
"""

_UPSERT_ENTRY = """
INSERT INTO position_entries (signal_id, symbol, entry_ms) VALUES ($1, $2, $3)
ON CONFLICT (signal_id) DO UPDATE SET symbol = EXCLUDED.symbol, entry_ms = EXCLUDED.entry_ms
"""

_UPSERT_DECISION = """
INSERT INTO promotion_decisions (decided_ms, challenger_version, champion_version, is_promoted,
                                 is_rollback, detail)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (challenger_version, decided_ms) DO UPDATE SET
    champion_version = EXCLUDED.champion_version, is_promoted = EXCLUDED.is_promoted,
    is_rollback = EXCLUDED.is_rollback, detail = EXCLUDED.detail
"""

_MODEL_COLUMNS = (
    "version, created_ms, feature_schema, sample_count, auc, log_loss, hit_rate, params, label, "
    "status, promoted_ms, retired_ms, is_rolled_back"
)


def trade_of(row: Any) -> TradeRecord:
    values = dict(row)
    values["features"] = tuple(values["features"])
    return TradeRecord(**values)


def _model(row: Any) -> ModelVersionRecord:
    values = {k: v for k, v in dict(row).items() if k != "blob"}
    values["label"] = msgspec.convert(values["label"], LabelSpec)
    return ModelVersionRecord(**values)


class Database:
    """An asyncpg pool with a deadline on every call: `async with await Database.connect(...)`."""

    def __init__(self, pool: Any, command_timeout_s: float) -> None:
        self._pool = pool
        self.timeout_s = command_timeout_s

    @classmethod
    async def connect(
        cls, dsn: str, command_timeout_s: float, *, max_connections: int = 4, probe: bool = True
    ) -> Database:
        """Create the pool (connections open lazily) and, with `probe`, check the server answers.

        Raises DatabaseUnavailableError when `probe` finds the server down.
        """
        pool = asyncpg.create_pool(
            dsn,
            min_size=0,  # a process may start while PostgreSQL is down (the outbox covers it)
            max_size=max_connections,
            command_timeout=command_timeout_s,
            timeout=command_timeout_s,  # connect deadline
            init=_init_connection,
        )
        await pool  # with min_size=0 this opens no connection
        db = cls(pool, command_timeout_s)
        if probe:
            try:
                await db._run("connect", lambda conn: conn.fetchval("SELECT 1"))
            except DatabaseError:
                await db.close()
                raise
        return db

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pool gracefully within the deadline, else terminate its connections."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._pool.close()
        except (TimeoutError, *_UNAVAILABLE):
            self._pool.terminate()

    async def _run(
        self,
        what: str,
        op: Callable[[Connection], Awaitable[T]],
        timeout_s: float | None = None,
    ) -> T:
        try:
            async with asyncio.timeout(timeout_s or self.timeout_s):
                async with self._pool.acquire() as conn:
                    return await op(conn)
        except (*_UNAVAILABLE, asyncpg.PostgresError) as e:
            raise _translate(what, e) from e

    async def fetch(self, what: str, sql: str, *args: object) -> list[Any]:
        """Run one query within the deadline and return its rows (for the query modules beside
        this one, e.g. procs/reporter/reportdb.py). Raises
        DatabaseUnavailableError/RejectedError."""
        rows: list[Any] = await self._run(what, lambda conn: conn.fetch(sql, *args))
        return rows

    async def execute(self, what: str, sql: str, *args: object) -> None:
        """Run one statement within the deadline. Raises DatabaseUnavailableError/RejectedError."""
        await self._run(what, lambda conn: conn.execute(sql, *args))

    async def apply_migrations(
        self, directory: Path | None = None, timeout_s: float = 60.0
    ) -> list[int]:
        """Apply the migrations not yet applied, each in a transaction, under an advisory lock so
        concurrent starters apply each once; return the versions applied now (oldest first).

        Raises MigrationError when an applied file changed, a migration fails, or the database
        holds a version the files do not; DatabaseUnavailableError as any call.
        """
        migrations = load_migrations(directory)

        async def apply(conn: Connection) -> list[int]:
            await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK, timeout=timeout_s)
            try:
                return await _apply_locked(conn)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)

        async def _apply_locked(conn: Connection) -> list[int]:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, checksum text NOT NULL, applied_ms bigint NOT NULL)"
            )
            applied = {
                r["version"]: r["checksum"]
                for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
            }
            unknown = sorted(set(applied) - {m.version for m in migrations})
            if unknown:
                raise MigrationError(
                    f"migrations: the database holds version(s) {unknown} that these files lack"
                )
            done = []
            for m in migrations:
                if m.version in applied:
                    if applied[m.version] != m.checksum:
                        raise MigrationError(
                            f"migrations: {m.file} changed after it was applied (checksum "
                            f"{m.checksum[:12]} != recorded {applied[m.version][:12]}); "
                            "add a new migration instead"
                        )
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(m.sql, timeout=timeout_s)
                        await conn.execute(
                            "INSERT INTO schema_migrations VALUES ($1, $2, $3, "
                            "(extract(epoch FROM clock_timestamp()) * 1000)::bigint)",
                            m.version,
                            m.name,
                            m.checksum,
                        )
                except asyncpg.PostgresError as e:
                    if isinstance(e, _UNAVAILABLE):
                        raise
                    raise MigrationError(f"migrations: {m.file} failed ({e})") from e
                done.append(m.version)
            return done

        return await self._run("apply_migrations", apply, timeout_s)

    async def write(self, record: Record) -> None:
        """Upsert one record by its primary key (idempotent and monotone, see the docstring).

        Raises DatabaseUnavailableError (retry) or DatabaseRejectedError.
        """
        match record:
            case OrderIntent():
                r = record
                args: tuple[Any, ...] = (
                    _UPSERT_INTENT,
                    r.client_id,
                    r.signal_id,
                    r.symbol,
                    r.side,
                    r.quantity,
                    r.leverage,
                    r.confidence,
                    r.model_version,
                    r.status,
                    r.detail,
                    r.created_ms,
                    r.updated_ms,
                )
            case TradeRecord():
                t = record
                args = (
                    _UPSERT_TRADE,
                    t.trade_id,
                    t.is_virtual,
                    t.symbol,
                    t.side,
                    t.quantity,
                    t.entry_price,
                    t.entry_ms,
                    t.exit_price,
                    t.exit_ms,
                    t.exit_reason,
                    t.gross_pnl_usdt,
                    t.fees_usdt,
                    t.funding_usdt,
                    t.net_pnl_usdt,
                    t.is_win,
                    t.confidence,
                    t.model_version,
                    t.feature_schema,
                    list(t.features),
                )
            case PositionEntry():
                args = (_UPSERT_ENTRY, record.signal_id, record.symbol, record.entry_ms)
            case PromotionDecision():
                d = record
                args = (
                    _UPSERT_DECISION,
                    d.decided_ms,
                    d.challenger_version,
                    d.champion_version,
                    d.is_promoted,
                    d.is_rollback,
                    d.detail,
                )
        await self._run(f"write {type(record).__name__}", lambda conn: conn.execute(*args))

    async def load_order_intent(self, client_id: str) -> OrderIntent | None:
        """Return the order intent with this client id, or None."""
        row = await self._run(
            "load_order_intent",
            lambda conn: conn.fetchrow(
                "SELECT * FROM order_intents WHERE client_id = $1", client_id
            ),
        )
        return None if row is None else OrderIntent(**dict(row))

    async def unsettled_intents(self) -> list[OrderIntent]:
        """Return the order intents whose fate is not settled (status intent, sent or unknown),
        oldest first: the trader asks the exchange what became of each."""
        rows = await self._run(
            "unsettled_intents",
            lambda conn: conn.fetch(
                "SELECT * FROM order_intents WHERE status IN ('intent', 'sent', 'unknown') "
                "ORDER BY created_ms"
            ),
        )
        return [OrderIntent(**dict(row)) for row in rows]

    async def real_trades_between(
        self, symbol: str, start_ms: int, end_ms: int
    ) -> list[TradeRecord]:
        """Return the real trades of `symbol` entered within [start_ms, end_ms], oldest first."""
        sql = (
            "SELECT * FROM trades WHERE NOT is_virtual AND symbol = $1 "
            "AND entry_ms BETWEEN $2 AND $3 ORDER BY entry_ms, trade_id"
        )
        rows = await self._run(
            "real_trades_between", lambda conn: conn.fetch(sql, symbol, start_ms, end_ms)
        )
        return [trade_of(r) for r in rows]

    async def load_trade(self, trade_id: str) -> TradeRecord | None:
        """Return the trade with this id (signal id), or None."""
        row = await self._run(
            "load_trade",
            lambda conn: conn.fetchrow("SELECT * FROM trades WHERE trade_id = $1", trade_id),
        )
        return None if row is None else trade_of(row)

    async def position_entries(self) -> list[PositionEntry]:
        """Return every position entry, oldest first."""
        rows = await self._run(
            "position_entries",
            lambda conn: conn.fetch("SELECT * FROM position_entries ORDER BY entry_ms, signal_id"),
        )
        return [PositionEntry(**dict(r)) for r in rows]

    async def open_trades(self, include_virtual: bool = False) -> list[TradeRecord]:
        """Return the trades not closed yet (real ones only unless `include_virtual`), oldest
        entry first."""
        sql = (
            "SELECT * FROM trades WHERE exit_ms IS NULL AND (is_virtual = false OR $1) "
            "ORDER BY entry_ms, trade_id"
        )
        rows = await self._run("open_trades", lambda conn: conn.fetch(sql, include_virtual))
        return [trade_of(r) for r in rows]

    async def closed_trade_count(self, include_virtual: bool = True) -> int:
        """Return how many trades are closed (real ones only unless `include_virtual`)."""
        sql = "SELECT count(*) FROM trades WHERE exit_ms IS NOT NULL AND (is_virtual = false OR $1)"
        count: int = await self._run(
            "closed_trade_count", lambda conn: conn.fetchval(sql, include_virtual)
        )
        return count

    async def trade_samples(self, limit: int) -> list[TradeRecord]:
        """Return the `limit` most recently closed trades (real and virtual), newest first."""
        sql = (
            "SELECT * FROM trades WHERE exit_ms IS NOT NULL "
            "ORDER BY exit_ms DESC, trade_id DESC LIMIT $1"
        )
        rows = await self._run("trade_samples", lambda conn: conn.fetch(sql, limit))
        return [trade_of(r) for r in rows]

    async def win_stats(self, limit: int) -> tuple[int, int]:
        """Return (wins, total) over the `limit` most recently closed trades (real and virtual)."""
        sql = (
            "SELECT count(*) FILTER (WHERE is_win), count(*) FROM (SELECT is_win FROM trades "
            "WHERE exit_ms IS NOT NULL ORDER BY exit_ms DESC LIMIT $1) newest"
        )
        row = await self._run("win_stats", lambda conn: conn.fetchrow(sql, limit))
        assert row is not None  # an aggregate always returns one row
        return int(row[0]), int(row[1])

    async def save_model(self, meta: ModelVersionRecord, blob: bytes) -> int:
        """Store a trained model as a new version (status candidate or rejected); return it.

        Raises ValueError for another status: a champion is made only by promote().
        """
        if meta.status not in ("candidate", "rejected"):
            raise ValueError(f"model save: status {meta.status!r} is not candidate or rejected")
        sql = (
            "INSERT INTO model_versions (created_ms, feature_schema, sample_count, auc, log_loss, "
            "hit_rate, params, label, status, blob) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
            "$10) RETURNING version"
        )
        m = meta
        values = (
            m.created_ms,
            m.feature_schema,
            m.sample_count,
            m.auc,
            m.log_loss,
            m.hit_rate,
            m.params,
            m.label,
            m.status,
            blob,
        )
        version: int = await self._run("save_model", lambda conn: conn.fetchval(sql, *values))
        return version

    async def _load(
        self, what: str, where: str, *args: Any
    ) -> tuple[ModelVersionRecord, bytes] | None:
        sql = f"SELECT {_MODEL_COLUMNS}, blob FROM model_versions WHERE {where}"
        row = await self._run(what, lambda conn: conn.fetchrow(sql, *args))
        return None if row is None else (_model(row), bytes(row["blob"]))

    async def champion(self) -> tuple[ModelVersionRecord, bytes] | None:
        """Return the champion's (metadata, blob), or None before the first promotion."""
        return await self._load("champion", "status = 'champion'")

    async def load_model(self, version: int) -> tuple[ModelVersionRecord, bytes] | None:
        """Return (metadata, blob) of a version, or None when it does not exist."""
        return await self._load("load_model", "version = $1", version)

    async def list_models(self) -> list[ModelVersionRecord]:
        """Return every version's metadata (no blobs), oldest first."""
        sql = f"SELECT {_MODEL_COLUMNS} FROM model_versions ORDER BY version"
        rows = await self._run("list_models", lambda conn: conn.fetch(sql))
        return [_model(r) for r in rows]

    async def list_decisions(self) -> list[PromotionDecision]:
        """Return every promotion decision, oldest first."""
        sql = (
            "SELECT decided_ms, challenger_version, champion_version, is_promoted, is_rollback, "
            "detail FROM promotion_decisions ORDER BY id"
        )
        rows = await self._run("list_decisions", lambda conn: conn.fetch(sql))
        return [PromotionDecision(**dict(r)) for r in rows]

    async def _transition(self, what: str, op: Callable[[Connection], Awaitable[T]]) -> T:
        async def locked(conn: Connection) -> T:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MODEL_LOCK)
                return await op(conn)

        return await self._run(what, locked)

    async def promote(self, version: int, detail: str, now_ms: int) -> None:
        """Make `version` the champion (the previous one retired) and record the decision.

        Promoting the current champion again does nothing. Raises ModelStateError for an
        unknown version.
        """

        async def op(conn: Connection) -> None:
            status = await conn.fetchval(
                "SELECT status FROM model_versions WHERE version = $1", version
            )
            if status is None:
                raise ModelStateError(f"model promote: version {version} does not exist")
            if status == "champion":
                return
            previous = await conn.fetchval(
                "UPDATE model_versions SET status = 'retired', retired_ms = $1 "
                "WHERE status = 'champion' RETURNING version",
                now_ms,
            )
            await conn.execute(
                "UPDATE model_versions SET status = 'champion', promoted_ms = $2, "
                "is_rolled_back = false WHERE version = $1",
                version,
                now_ms,
            )
            await conn.execute(_UPSERT_DECISION, now_ms, version, previous, True, False, detail)

        await self._transition("promote", op)

    async def reject(self, version: int, detail: str, now_ms: int) -> None:
        """Mark a challenger rejected and record the decision (the champion stays).

        Raises ModelStateError for an unknown version or the champion itself.
        """

        async def op(conn: Connection) -> None:
            status = await conn.fetchval(
                "SELECT status FROM model_versions WHERE version = $1", version
            )
            if status is None or status == "champion":
                what = "does not exist" if status is None else "is the champion"
                raise ModelStateError(f"model reject: version {version} {what}")
            champion = await conn.fetchval(
                "SELECT version FROM model_versions WHERE status = 'champion'"
            )
            await conn.execute(
                "UPDATE model_versions SET status = 'rejected' WHERE version = $1", version
            )
            await conn.execute(_UPSERT_DECISION, now_ms, version, champion, False, False, detail)

        await self._transition("reject", op)

    async def rollback(self, now_ms: int) -> int:
        """Demote the champion (retired, never restored again) and restore the most recently
        retired previous champion; record the decision and return the restored version.

        Raises ModelStateError when there is no champion or no previous champion to restore.
        """

        async def op(conn: Connection) -> int:
            current = await conn.fetchval(
                "SELECT version FROM model_versions WHERE status = 'champion'"
            )
            if current is None:
                raise ModelStateError("model rollback: there is no champion to roll back")
            restored: int | None = await conn.fetchval(
                "SELECT version FROM model_versions WHERE status = 'retired' "
                "AND NOT is_rolled_back ORDER BY retired_ms DESC NULLS LAST, version DESC LIMIT 1"
            )
            if restored is None:
                raise ModelStateError(
                    f"model rollback: champion {current} has no previous champion to restore"
                )
            await conn.execute(
                "UPDATE model_versions SET status = 'retired', retired_ms = $2, "
                "is_rolled_back = true WHERE version = $1",
                current,
                now_ms,
            )
            await conn.execute(
                "UPDATE model_versions SET status = 'champion', promoted_ms = $2 "
                "WHERE version = $1",
                restored,
                now_ms,
            )
            detail = f"rollback: version {current} demoted, version {restored} restored"
            await conn.execute(_UPSERT_DECISION, now_ms, restored, current, True, True, detail)
            return restored

        return await self._transition("rollback", op)


async def connect_until_up(
    dsn: str,
    command_timeout_s: float,
    logger: EventLogger,
    retry_s: float,
    on_wait: Callable[[], object] | None = None,
) -> Database:
    """Connect and apply the migrations, retrying every `retry_s` while PostgreSQL is unavailable
    (down, starting, or its database not created yet). `on_wait` runs after each failed attempt.
    Raises DatabaseRejectedError / MigrationError, which retrying cannot fix."""
    while True:
        db: Database | None = None
        try:
            db = await Database.connect(dsn, command_timeout_s)
            await db.apply_migrations()
            return db
        except DatabaseUnavailableError as e:
            if db is not None:
                await db.close()
            if on_wait is not None:
                on_wait()
            logger.warning("db_unavailable", error=str(e)[:200], retry_in_s=retry_s)
            await asyncio.sleep(retry_s)
