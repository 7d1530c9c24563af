"""The status snapshot: what the status page, `/api/status`, `/metrics` and `slt status` show,
one frozen msgspec Struct per part, JSON-encodable as is (Decimals become strings)."""

from __future__ import annotations

from decimal import Decimal

import msgspec


class ProgramStatus(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    state: str  # supervisord's state name; UNKNOWN when only the heartbeat table knows it
    pid: int  # 0 when not running
    uptime_s: float  # since supervisord's last start; 0 when not running
    heartbeat_age_s: float | None  # None: no heartbeat slot
    loop_lag_ms: float | None
    restarts: int | None  # re-claims of its heartbeat slot (incarnation - 1)


class StopOrder(msgspec.Struct, frozen=True, kw_only=True):
    client_id: str
    trigger_price: Decimal


class PositionStatus(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    amount: Decimal  # signed: > 0 long, < 0 short
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl_usdt: Decimal
    liquidation_price: Decimal  # 0: none (Binance reports 0 when it cannot be reached)
    liquidation_distance_pct: float | None  # |mark - liquidation| / mark * 100
    stops: list[StopOrder]
    is_protected: bool


class OrderStatus(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    client_id: str
    side: str
    type: str
    price: Decimal  # limit price, or the trigger price of a conditional order
    quantity: Decimal  # 0 for a closePosition order


class StatusSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    ts_ms: int
    mode: str
    instance: str
    programs: list[ProgramStatus] = []
    positions: list[PositionStatus] = []
    open_orders: list[OrderStatus] = []
    equity_usdt: Decimal | None = None  # margin balance: wallet + unrealized PnL
    wallet_usdt: Decimal | None = None
    feed: dict[str, float | int] = {}
    model_version: int | None = None
    model_auc: float | None = None
    halted: bool = False
    halt_reason: str = ""
    errors: list[str] = []
