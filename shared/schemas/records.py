"""PostgreSQL rows as frozen msgspec Structs: what `shared/store/db.py` writes and reads.

`OrderIntent`, `TradeRecord`, `PositionEntry` and `PromotionDecision` form the tagged union
`Record` (tag field `kind`), so one outbox stream and one journal carry all of them
(`encode_record` / `decode_record`, msgpack, which keeps NaN features and exact Decimals).
Each is an idempotent upsert by its primary key:

    OrderIntent        client_id                 (status moves intent -> sent -> filled|rejected)
    TradeRecord        trade_id (= signal id)    (exit fields None until closed)
    PositionEntry      signal_id
    PromotionDecision  (challenger_version, decided_ms)

`ModelVersionRecord` is the metadata of a saved model; its blob travels beside it, never in a
stream. Money and exchange amounts are Decimal (numeric columns); times are UTC milliseconds.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

SCHEMA_VERSION = 1

ORDER_STATUSES = ("intent", "sent", "unknown", "filled", "rejected")
MODEL_STATUSES = ("candidate", "champion", "retired", "rejected")


class OrderIntent(msgspec.Struct, frozen=True, kw_only=True, tag="order_intent", tag_field="kind"):
    """An entry order the trader means to send, then its fate; keyed by client_id."""

    v: int = SCHEMA_VERSION
    client_id: str  # slt-<signal_id>-<purpose>-<attempt>
    signal_id: str
    symbol: str
    side: str  # "BUY" | "SELL"
    quantity: Decimal  # base asset
    leverage: int
    confidence: float  # model probability of the side, 0..1
    model_version: int
    status: str  # one of ORDER_STATUSES
    detail: str = ""  # exchange reply or reason, one sentence
    created_ms: int
    updated_ms: int  # a row only moves to a record with an equal or later updated_ms


class TradeRecord(msgspec.Struct, frozen=True, kw_only=True, tag="trade", tag_field="kind"):
    """One trade, real or virtual, keyed by its signal id; exit fields are None until closed."""

    v: int = SCHEMA_VERSION
    trade_id: str  # the entry's signal id
    is_virtual: bool
    symbol: str
    side: str  # "BUY" | "SELL"
    quantity: Decimal  # base asset
    entry_price: Decimal
    entry_ms: int
    exit_price: Decimal | None = None
    exit_ms: int | None = None
    exit_reason: str | None = None
    gross_pnl_usdt: Decimal | None = None
    fees_usdt: Decimal | None = None  # both legs
    funding_usdt: Decimal | None = None  # received minus paid
    net_pnl_usdt: Decimal | None = None  # gross - fees + funding
    is_win: bool | None = None  # net_pnl_usdt > 0
    confidence: float
    model_version: int
    feature_schema: str  # shared.core.features.FEATURE_SCHEMA of `features`
    features: tuple[float, ...]  # the feature row the decision saw, FEATURE_NAMES order

    @property
    def is_closed(self) -> bool:
        """Return True once the exit is recorded."""
        return self.exit_ms is not None


class PositionEntry(
    msgspec.Struct, frozen=True, kw_only=True, tag="position_entry", tag_field="kind"
):
    """Which signal opened a position on a symbol, and when; keyed by signal_id."""

    v: int = SCHEMA_VERSION
    signal_id: str
    symbol: str
    entry_ms: int


class PromotionDecision(
    msgspec.Struct, frozen=True, kw_only=True, tag="promotion_decision", tag_field="kind"
):
    """A champion/challenger verdict (or a rollback); keyed by (challenger_version, decided_ms)."""

    v: int = SCHEMA_VERSION
    decided_ms: int
    challenger_version: int
    champion_version: int | None  # None when there was no champion
    is_promoted: bool
    is_rollback: bool = False  # the challenger is a previous champion restored by rollback
    detail: str = ""  # the metrics compared, one sentence


class LabelSpec(msgspec.Struct, frozen=True, kw_only=True):
    """The barrier labelling a model was trained on (shared.core.labels.barrier_outcomes)."""

    take_profit_pct: float
    stop_loss_pct: float
    horizon_bars: int


class ModelVersionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A saved model's metadata; `version` is 0 until save_model assigns one."""

    v: int = SCHEMA_VERSION
    version: int = 0
    created_ms: int
    feature_schema: str
    sample_count: int
    auc: float  # holdout ROC AUC
    log_loss: float  # holdout log loss
    hit_rate: float  # holdout share of correct calls at the decision threshold
    params: dict[str, Any]  # training parameters (JSON-compatible values)
    label: LabelSpec
    status: str = "candidate"  # one of MODEL_STATUSES
    promoted_ms: int | None = None  # last time it became the champion
    retired_ms: int | None = None  # last time it stopped being the champion
    is_rolled_back: bool = False  # demoted by a rollback: never restored by another rollback


Record = OrderIntent | TradeRecord | PositionEntry | PromotionDecision

_msgpack_encoder = msgspec.msgpack.Encoder()
_msgpack_decoder = msgspec.msgpack.Decoder(Record)


def encode_record(record: Record) -> bytes:
    """Encode a record as msgpack (tagged with its kind)."""
    return _msgpack_encoder.encode(record)


def decode_record(data: bytes) -> Record:
    """Decode msgpack bytes into a record; raises msgspec.ValidationError/DecodeError."""
    record: Record = _msgpack_decoder.decode(data)
    _check_version(record)
    return record


def _check_version(record: Record) -> None:
    if record.v != SCHEMA_VERSION:
        raise msgspec.ValidationError(
            f"records: schema version {record.v} is not the supported {SCHEMA_VERSION}"
        )
