"""PostgreSQL record schemas: one tagged union on the wire, exact amounts, NaN features kept."""

from __future__ import annotations

import math
from decimal import Decimal

import msgspec
import pytest

from shared.schemas.records import (
    SCHEMA_VERSION,
    LabelSpec,
    ModelVersionRecord,
    OrderIntent,
    PositionEntry,
    PromotionDecision,
    TradeRecord,
    decode_record,
    encode_record,
)

INTENT = OrderIntent(
    client_id="slt-8812-entry-0",
    signal_id="8812",
    symbol="BTCUSDT",
    side="BUY",
    quantity=Decimal("0.004"),
    leverage=5,
    confidence=0.71,
    model_version=3,
    status="sent",
    created_ms=1_748_217_660_000,
    updated_ms=1_748_217_660_005,
)
ENTRY = TradeRecord(
    trade_id="8812",
    is_virtual=True,
    symbol="ETHUSDT",
    side="SELL",
    quantity=Decimal("0.125"),
    entry_price=Decimal("3456.78"),
    entry_ms=1_748_217_660_000,
    confidence=0.64,
    model_version=3,
    feature_schema="0123456789abcdef",
    features=(0.5, float("nan"), -2.0),
)
POSITION = PositionEntry(signal_id="8812", symbol="ETHUSDT", entry_ms=1_748_217_660_000)
DECISION = PromotionDecision(
    decided_ms=1_748_217_660_000,
    challenger_version=4,
    champion_version=None,
    is_promoted=True,
    detail="first model",
)


@pytest.mark.parametrize("record", [INTENT, POSITION, DECISION])
def test_each_record_kind_round_trips_through_the_one_union(record: object) -> None:
    assert decode_record(encode_record(record)) == record  # type: ignore[arg-type]


def test_trade_round_trip_keeps_exact_decimals_and_nan_features() -> None:
    decoded = decode_record(encode_record(ENTRY))
    assert isinstance(decoded, TradeRecord)
    assert decoded.entry_price == Decimal("3456.78") and decoded.quantity == Decimal("0.125")
    assert decoded.features[0] == 0.5 and math.isnan(decoded.features[1])
    assert decoded.exit_ms is None and not decoded.is_closed


def test_the_kind_tag_selects_the_type() -> None:
    raw = msgspec.msgpack.decode(encode_record(POSITION))
    assert raw["kind"] == "position_entry" and raw["v"] == SCHEMA_VERSION


def test_an_unknown_kind_or_version_or_a_wrong_type_is_rejected_with_its_path() -> None:
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'fill'"):
        decode_record(msgspec.msgpack.encode({"kind": "fill"}))
    newer = msgspec.msgpack.encode(
        {**msgspec.to_builtins(POSITION), "kind": "position_entry", "v": SCHEMA_VERSION + 1}
    )
    with pytest.raises(msgspec.ValidationError, match="schema version 2"):
        decode_record(newer)
    bad = {**msgspec.msgpack.decode(encode_record(POSITION)), "entry_ms": "soon"}
    with pytest.raises(msgspec.ValidationError, match=r"\$\.entry_ms"):
        decode_record(msgspec.msgpack.encode(bad))


def test_model_version_record_defaults_to_an_unsaved_candidate() -> None:
    meta = ModelVersionRecord(
        created_ms=1,
        feature_schema="0123456789abcdef",
        sample_count=10,
        auc=0.6,
        log_loss=0.68,
        hit_rate=0.55,
        params={"max_depth": 4},
        label=LabelSpec(take_profit_pct=1.0, stop_loss_pct=0.5, horizon_bars=60),
    )
    assert (meta.version, meta.status, meta.promoted_ms, meta.is_rolled_back) == (
        0,
        "candidate",
        None,
        False,
    )
    with pytest.raises(AttributeError):
        meta.status = "champion"  # type: ignore[misc]
