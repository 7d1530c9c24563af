"""Records for the database tests: one trade's life and one order's life, with exact amounts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

from shared.schemas.records import (
    LabelSpec,
    ModelVersionRecord,
    OrderIntent,
    PositionEntry,
    PromotionDecision,
    TradeRecord,
)
from shared.store.db import Database

ENTRY_MS = 1_748_217_660_000
FEATURES = (0.25, -1.5, float("nan"), 3.0)


def intent(
    client_id: str = "slt-sig1-entry-0",
    status: str = "intent",
    updated_ms: int = ENTRY_MS,
    detail: str = "",
) -> OrderIntent:
    return OrderIntent(
        client_id=client_id,
        signal_id="sig1",
        symbol="BTCUSDT",
        side="BUY",
        quantity=Decimal("0.004"),
        leverage=5,
        confidence=0.71,
        model_version=3,
        status=status,
        detail=detail,
        created_ms=ENTRY_MS,
        updated_ms=updated_ms,
    )


def trade_entry(
    trade_id: str = "sig1",
    is_virtual: bool = False,
    entry_ms: int = ENTRY_MS,
    symbol: str = "BTCUSDT",
) -> TradeRecord:
    return TradeRecord(
        trade_id=trade_id,
        is_virtual=is_virtual,
        symbol=symbol,
        side="BUY",
        quantity=Decimal("0.004"),
        entry_price=Decimal("97012.5"),
        entry_ms=entry_ms,
        confidence=0.71,
        model_version=3,
        feature_schema="0123456789abcdef",
        features=FEATURES,
    )


def trade_exit(
    entry: TradeRecord,
    exit_price: str = "97500.0",
    exit_ms: int | None = None,
    reason: str = "take_profit",
) -> TradeRecord:
    """Close `entry` at `exit_price` with taker fees 0.05 % on both legs and no funding."""
    price = Decimal(exit_price)
    sign = 1 if entry.side == "BUY" else -1
    gross = (price - entry.entry_price) * entry.quantity * sign
    fees = (price + entry.entry_price) * entry.quantity * Decimal("0.0005")
    net = gross - fees
    return TradeRecord(
        trade_id=entry.trade_id,
        is_virtual=entry.is_virtual,
        symbol=entry.symbol,
        side=entry.side,
        quantity=entry.quantity,
        entry_price=entry.entry_price,
        entry_ms=entry.entry_ms,
        exit_price=price,
        exit_ms=entry.entry_ms + 600_000 if exit_ms is None else exit_ms,
        exit_reason=reason,
        gross_pnl_usdt=gross,
        fees_usdt=fees,
        funding_usdt=Decimal("0"),
        net_pnl_usdt=net,
        is_win=net > 0,
        confidence=entry.confidence,
        model_version=entry.model_version,
        feature_schema=entry.feature_schema,
        features=entry.features,
    )


def position_entry(signal_id: str = "sig1") -> PositionEntry:
    return PositionEntry(signal_id=signal_id, symbol="BTCUSDT", entry_ms=ENTRY_MS)


def decision(challenger: int = 2, decided_ms: int = ENTRY_MS) -> PromotionDecision:
    return PromotionDecision(
        decided_ms=decided_ms,
        challenger_version=challenger,
        champion_version=1,
        is_promoted=False,
        detail="challenger auc 0.55 <= champion auc 0.58",
    )


def model_meta(auc: float = 0.6, created_ms: int = ENTRY_MS) -> ModelVersionRecord:
    return ModelVersionRecord(
        created_ms=created_ms,
        feature_schema="0123456789abcdef",
        sample_count=5000,
        auc=auc,
        log_loss=0.66,
        hit_rate=0.57,
        params={"max_depth": 4, "eta": 0.1, "objective": "binary"},
        label=LabelSpec(take_profit_pct=1.0, stop_loss_pct=0.5, horizon_bars=60),
    )


def with_db(dsn: str, test: Callable[[Database], Awaitable[None]]) -> None:
    """Run `test` with a migrated Database on `dsn` (asyncio debug mode)."""

    async def main() -> None:
        async with await Database.connect(dsn, 5.0) as db:
            await db.apply_migrations()
            await test(db)

    asyncio.run(main(), debug=True)
