"""Virtual positions: signals not taken, followed with the guard's own exit rules.

Pure. A virtual position is opened at the signal's price, and on each mark it is stepped
exactly as the guard steps a real one: `exits.update_track` (best mark, trailing stop), then
`exits.evaluate_exit` with the same `ExitsConfig`. Unlike the guard, any exit (a partial
take-profit included) closes the virtual position fully, at the mark. No liquidation price is
known for it (0), so the liquidation-buffer rule never fires; the emergency rule uses the
margin |qty| * entry / leverage.

Closed trade (`closed_trade`, also used for real closes), quantity |qty| in base units:
    gross = (exit - entry) * qty for a BUY, (entry - exit) * qty for a SELL
    fees  = fee_rate * qty * entry + fee_rate * qty * exit      (both legs, taker rate)
          (or the fees actually charged, when the caller knows them)
    net   = gross - fees;  is_win = net > 0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from shared.config.ops import ExitsConfig
from shared.core import exits

SIDES = ("BUY", "SELL")


@dataclass(frozen=True, slots=True)
class VirtualPosition:
    """A signal followed as if it had been entered."""

    signal_id: str
    symbol: str
    side: str  # "BUY" | "SELL"
    quantity: Decimal  # > 0, base asset
    entry_price: Decimal
    opened_ms: int  # UTC ms
    plan: exits.Plan
    track: exits.Track
    confidence: float  # model probability of the side, 0..1
    model_version: int
    features: tuple[float, ...]  # the model input row it was scored on
    leverage: int = 1  # the leverage it would have had (the emergency rule's margin)


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """A finished trade, real or virtual, with its PnL in USDT."""

    signal_id: str
    symbol: str
    side: str  # "BUY" | "SELL": the entry side
    quantity: Decimal  # > 0, base asset
    entry_price: Decimal
    exit_price: Decimal
    opened_ms: int  # UTC ms
    closed_ms: int  # UTC ms
    reason: str  # exits.REASONS for guard/virtual closes; the caller's word otherwise
    gross_pnl_usdt: Decimal
    fees_usdt: Decimal
    net_pnl_usdt: Decimal
    is_win: bool  # net_pnl_usdt > 0
    confidence: float
    model_version: int
    features: tuple[float, ...]
    is_virtual: bool


def _check_side(symbol: str, side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"virtual: {symbol} side {side!r} is not BUY or SELL")


def _holding(
    symbol: str, side: str, quantity: Decimal, entry: Decimal, leverage: int, opened_ms: int
) -> exits.Holding:
    """Return the guard's view of a position: signed quantity, no liquidation price known."""
    signed = quantity if side == "BUY" else -quantity
    return exits.Holding(symbol, signed, entry, leverage, Decimal(0), opened_ms)


def _holding_of(pos: VirtualPosition) -> exits.Holding:
    return _holding(
        pos.symbol, pos.side, pos.quantity, pos.entry_price, pos.leverage, pos.opened_ms
    )


def open_virtual(
    signal_id: str,
    symbol: str,
    side: str,
    quantity: Decimal,
    entry_price: Decimal,
    opened_ms: int,
    confidence: float,
    model_version: int,
    features: Sequence[float],
    cfg: ExitsConfig,
    tick: Decimal,
    plan: exits.Plan | None = None,
    leverage: int = 1,
) -> VirtualPosition:
    """Return a virtual position entered at `entry_price`; `plan` defaults to exits.default_plan.

    Raises ValueError for an unknown side, a quantity, price or tick not above 0, or a leverage
    below 1.
    """
    _check_side(symbol, side)
    if not quantity > 0:
        raise ValueError(f"virtual: {symbol} quantity {quantity} must be > 0")
    if leverage < 1:
        raise ValueError(f"virtual: {symbol} leverage {leverage} must be >= 1")
    holding = _holding(symbol, side, quantity, entry_price, leverage, opened_ms)
    chosen = plan if plan is not None else exits.default_plan(holding, cfg, tick)
    return VirtualPosition(
        signal_id,
        symbol,
        side,
        quantity,
        entry_price,
        opened_ms,
        chosen,
        exits.new_track(holding, chosen),
        confidence,
        model_version,
        tuple(float(f) for f in features),
        leverage,
    )


def step_virtual(
    pos: VirtualPosition,
    mark: Decimal,
    now_ms: int,
    trend: float | None,
    cfg: ExitsConfig,
    tick: Decimal,
    step: Decimal,
    fee_rate: Decimal,
) -> tuple[VirtualPosition | None, ClosedTrade | None]:
    """Return (the position after `mark`, None), or (None, its closed trade) when an exit rule
    fires: any exit closes it fully at `mark`.

    Raises ValueError for a mark, tick or step not above 0.
    """
    holding = _holding_of(pos)
    track = exits.update_track(pos.track, holding, mark, cfg, tick)
    decision = exits.evaluate_exit(holding, pos.plan, track, mark, now_ms, trend, cfg, step)
    if decision is None:
        return replace(pos, track=track), None
    trade = closed_trade(
        pos.signal_id,
        pos.symbol,
        pos.side,
        pos.quantity,
        pos.entry_price,
        mark,
        pos.opened_ms,
        now_ms,
        decision.reason,
        fee_rate,
        pos.confidence,
        pos.model_version,
        pos.features,
        is_virtual=True,
    )
    return None, trade


def closed_trade(
    signal_id: str,
    symbol: str,
    side: str,
    quantity: Decimal,
    entry_price: Decimal,
    exit_price: Decimal,
    opened_ms: int,
    closed_ms: int,
    reason: str,
    fee_rate: Decimal,
    confidence: float,
    model_version: int,
    features: Sequence[float],
    is_virtual: bool,
    fees_usdt: Decimal | None = None,
) -> ClosedTrade:
    """Return the closed trade with gross PnL, fees on both legs and net PnL, in USDT.

    `fees_usdt`, when given, replaces fee_rate * (entry + exit notional) (real commissions).
    Raises ValueError for an unknown side or a quantity not above 0.
    """
    _check_side(symbol, side)
    if not quantity > 0:
        raise ValueError(f"virtual: {symbol} quantity {quantity} must be > 0")
    move = exit_price - entry_price if side == "BUY" else entry_price - exit_price
    gross = move * quantity
    fees = (
        fee_rate * quantity * entry_price + fee_rate * quantity * exit_price
        if fees_usdt is None
        else fees_usdt
    )
    net = gross - fees
    return ClosedTrade(
        signal_id,
        symbol,
        side,
        quantity,
        entry_price,
        exit_price,
        opened_ms,
        closed_ms,
        reason,
        gross,
        fees,
        net,
        net > 0,
        confidence,
        model_version,
        tuple(float(f) for f in features),
        is_virtual,
    )
