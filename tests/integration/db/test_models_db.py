"""Model versions against a real PostgreSQL: save, promote, reject, rollback, decisions."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

from shared.store.db import Database, ModelStateError
from tests.integration.db.records import ENTRY_MS, model_meta, with_db


def test_saved_model_loads_back_with_its_blob_and_no_champion_before_a_promotion(
    database_dsn: str,
) -> None:
    async def test(db: Database) -> None:
        v1 = await db.save_model(model_meta(auc=0.61), b"\x00model-one\xff")
        v2 = await db.save_model(model_meta(auc=0.63), b"model-two")
        assert v2 == v1 + 1
        assert await db.champion() is None
        loaded = await db.load_model(v1)
        assert loaded is not None
        meta, blob = loaded
        assert blob == b"\x00model-one\xff"
        assert meta == replace(model_meta(auc=0.61), version=v1)
        assert await db.load_model(999) is None
        assert [m.version for m in await db.list_models()] == [v1, v2]
        with pytest.raises(ValueError, match="status 'champion'"):
            await db.save_model(replace(model_meta(), status="champion"), b"x")

    with_db(database_dsn, test)


def test_promote_keeps_one_champion_and_records_each_decision(database_dsn: str) -> None:
    async def test(db: Database) -> None:
        v1 = await db.save_model(model_meta(auc=0.60), b"one")
        v2 = await db.save_model(model_meta(auc=0.62), b"two")
        v3 = await db.save_model(model_meta(auc=0.55), b"three")
        await db.promote(v1, "first model", ENTRY_MS)
        await db.promote(v2, "auc 0.62 > 0.60", ENTRY_MS + 1)
        await db.promote(v2, "again", ENTRY_MS + 2)  # already the champion: nothing happens
        await db.reject(v3, "auc 0.55 <= 0.62", ENTRY_MS + 3)
        champion = await db.champion()
        assert champion is not None and champion[0].version == v2 and champion[1] == b"two"
        statuses = {
            m.version: (m.status, m.promoted_ms, m.retired_ms) for m in await db.list_models()
        }
        assert statuses == {
            v1: ("retired", ENTRY_MS, ENTRY_MS + 1),
            v2: ("champion", ENTRY_MS + 1, None),
            v3: ("rejected", None, None),
        }
        decisions = [
            (d.challenger_version, d.champion_version, d.is_promoted, d.is_rollback, d.detail)
            for d in await db.list_decisions()
        ]
        assert decisions == [
            (v1, None, True, False, "first model"),
            (v2, v1, True, False, "auc 0.62 > 0.60"),
            (v3, v2, False, False, "auc 0.55 <= 0.62"),
        ]
        with pytest.raises(ModelStateError, match="version 99 does not exist"):
            await db.promote(99, "x", ENTRY_MS)
        with pytest.raises(ModelStateError, match=f"version {v2} is the champion"):
            await db.reject(v2, "x", ENTRY_MS)

    with_db(database_dsn, test)


def test_rollback_walks_back_through_previous_champions_then_refuses(database_dsn: str) -> None:
    async def test(db: Database) -> None:
        with pytest.raises(ModelStateError, match="there is no champion"):
            await db.rollback(ENTRY_MS)
        v1, v2, v3 = [await db.save_model(model_meta(), bytes([i])) for i in range(3)]
        for i, v in enumerate((v1, v2, v3)):
            await db.promote(v, f"promotion {i}", ENTRY_MS + i)
        assert await db.rollback(ENTRY_MS + 10) == v2
        assert await db.rollback(ENTRY_MS + 11) == v1  # not back to v3: it was rolled back
        with pytest.raises(ModelStateError, match=f"champion {v1} has no previous champion"):
            await db.rollback(ENTRY_MS + 12)
        champion = await db.champion()
        assert champion is not None and champion[0].version == v1
        assert {m.version: m.status for m in await db.list_models()} == {
            v1: "champion",
            v2: "retired",
            v3: "retired",
        }
        rollbacks = [
            (d.challenger_version, d.champion_version, d.decided_ms)
            for d in await db.list_decisions()
            if d.is_rollback
        ]
        assert rollbacks == [(v2, v3, ENTRY_MS + 10), (v1, v2, ENTRY_MS + 11)]
        # A rolled-back model promoted again explicitly becomes restorable again.
        await db.promote(v3, "fixed", ENTRY_MS + 20)
        assert await db.rollback(ENTRY_MS + 21) == v1

    with_db(database_dsn, test)
