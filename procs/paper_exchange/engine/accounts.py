"""Positions, margin and PnL of a one-way USDT-M account: the money arithmetic, pure.

Model (BINANCE-API.md §5.6-5.8, §6.4):
- One position per symbol (`positionSide` BOTH), signed amount, average entry price.
- Wallet balance W includes every isolated wallet; the cross wallet is W minus them. Opening or
  increasing an isolated position moves notional / leverage from the cross wallet into its
  isolated wallet; reducing it moves the same fraction back.
- Realized PnL of a reducing fill = closed qty x (fill price - entry) x direction; it and the
  commission settle in W (the cross wallet), never in the isolated wallet.
- Unrealized PnL = amount x (mark - entry); position initial margin = |amount| x mark / leverage;
  maintenance margin = |amount| x mark x maintMarginRatio - cum of the bracket holding that
  notional.
- Open-order initial margin per symbol = max(bid side, ask side) / leverage, where reduce-only
  orders do not count and orders against the position first use up its notional.
- Available balance = cross wallet + cross unrealized PnL - cross position margin - open-order
  margin (USDT-M single-asset mode lets unrealized profit back new positions).
- Liquidation price, Binance's one-way formula:
      LP = (WB - TMM1 + UPNL1 + cumB - side x size x EP) / (size x MMR_B - side x size)
  with side +1 long / -1 short, size = |amount|, EP the entry price, WB the cross wallet (cross)
  or the isolated wallet (isolated), TMM1 / UPNL1 the maintenance margin and unrealized PnL of the
  other cross positions (0 for isolated), and MMR_B / cumB the bracket of the current notional at
  mark (Binance iterates over brackets; the current bracket is the same unless the liquidation
  price crosses a bracket boundary). A result at or below zero is written "0".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from procs.paper_exchange.engine.specs import ZERO, Bracket, bracket_for, max_notional


@dataclass
class Position:
    """The BOTH position of one symbol."""

    symbol: str
    amount: Decimal = ZERO  # signed base quantity: > 0 long, < 0 short
    entry_price: Decimal = ZERO  # volume-weighted average of the opening fills
    isolated_wallet: Decimal = ZERO  # margin held by an isolated position, USDT
    realized_total: Decimal = ZERO  # accumulated pre-fee realized PnL (ACCOUNT_UPDATE `cr`)
    update_ms: int = 0


@dataclass
class SymbolSettings:
    """Per-symbol account settings (`symbolConfig`)."""

    symbol: str
    leverage: int
    is_isolated: bool = False


@dataclass(frozen=True)
class FillEffect:
    """What a fill did to a position."""

    realized_pnl: Decimal  # pre-fee realized PnL of the reducing part, USDT
    closed_qty: Decimal  # how much of the previous position the fill closed
    isolated_delta: Decimal  # change of the isolated wallet (from or to the cross wallet), USDT


def apply_fill(
    position: Position, settings: SymbolSettings, signed_qty: Decimal, price: Decimal
) -> FillEffect:
    """Apply a fill of `signed_qty` (BUY > 0, SELL < 0) at `price` to `position` in place."""
    amount = position.amount
    new_amount = amount + signed_qty
    realized = ZERO
    closed = ZERO
    isolated_delta = ZERO
    if amount == 0 or (amount > 0) == (signed_qty > 0):
        position.entry_price = (abs(amount) * position.entry_price + abs(signed_qty) * price) / abs(
            new_amount
        )
        if settings.is_isolated:
            isolated_delta = abs(signed_qty) * price / settings.leverage
    else:
        closed = min(abs(signed_qty), abs(amount))
        direction = 1 if amount > 0 else -1
        realized = closed * (price - position.entry_price) * direction
        if settings.is_isolated:
            isolated_delta = -(position.isolated_wallet * closed / abs(amount))
        opened = abs(signed_qty) - closed
        if new_amount == 0:
            position.entry_price = ZERO
        elif opened > 0:
            # A flip: the remainder opens a new position at the fill price.
            position.entry_price = price
            if settings.is_isolated:
                isolated_delta += opened * price / settings.leverage
    position.amount = new_amount
    position.isolated_wallet += isolated_delta
    position.realized_total += realized
    return FillEffect(realized_pnl=realized, closed_qty=closed, isolated_delta=isolated_delta)


def unrealized_pnl(position: Position, mark: Decimal) -> Decimal:
    """Return amount x (mark - entry), USDT."""
    return position.amount * (mark - position.entry_price)


def maint_margin(brackets: tuple[Bracket, ...], notional: Decimal) -> Decimal:
    """Return the maintenance margin of a position of absolute `notional`, USDT."""
    if notional == 0:
        return ZERO
    bracket = bracket_for(brackets, notional)
    return max(ZERO, notional * bracket.maint_margin_ratio - bracket.cum)


def break_even_price(position: Position, taker_fee_rate: Decimal) -> Decimal:
    """Return the price at which closing at the taker rate breaks even.

    The real v3 positionRisk capture (§5.8) has entry 67445.9 and breakEvenPrice 67479.62295,
    i.e. entry x (1 + 0.0005) for a long at Binance's 0.05 % taker rate.
    """
    if position.amount == 0:
        return ZERO
    sign = 1 if position.amount > 0 else -1
    return position.entry_price * (1 + sign * taker_fee_rate)


def liquidation_price(
    *,
    position: Position,
    balance: Decimal,
    other_maint: Decimal,
    other_unrealized: Decimal,
    brackets: tuple[Bracket, ...],
    mark: Decimal,
) -> Decimal:
    """Return Binance's one-way liquidation price (module docstring), 0 when there is none."""
    if position.amount == 0:
        return ZERO
    size = abs(position.amount)
    side = 1 if position.amount > 0 else -1
    bracket = bracket_for(brackets, size * mark)
    denominator = size * bracket.maint_margin_ratio - side * size
    if denominator == 0:
        return ZERO
    numerator = (
        balance - other_maint + other_unrealized + bracket.cum - side * size * position.entry_price
    )
    return max(ZERO, numerator / denominator)


@dataclass(frozen=True)
class OrderNotional:
    """Notional of a symbol's open orders, by side."""

    bid: Decimal = ZERO  # every open BUY (ORDER_TRADE_UPDATE `b`, positionRisk bidNotional)
    ask: Decimal = ZERO  # every open SELL
    bid_margin: Decimal = ZERO  # open BUYs that may increase a position (not reduce-only)
    ask_margin: Decimal = ZERO


@dataclass(frozen=True)
class PositionRisk:
    """One symbol's position valued at mark."""

    symbol: str
    position: Position
    settings: SymbolSettings
    mark: Decimal
    unrealized: Decimal
    notional: Decimal  # signed amount x mark
    position_im: Decimal
    open_order_im: Decimal
    maint_margin: Decimal
    orders: OrderNotional
    max_notional: Decimal
    liquidation_price: Decimal


@dataclass(frozen=True)
class AccountRisk:
    """The account valued at mark: what account, balance and positionRisk report."""

    wallet: Decimal
    cross_wallet: Decimal
    total_unrealized: Decimal
    cross_unrealized: Decimal
    position_im: Decimal
    open_order_im: Decimal
    maint_margin: Decimal
    cross_maint_margin: Decimal
    available: Decimal
    max_withdraw: Decimal
    positions: dict[str, PositionRisk]

    @property
    def margin_balance(self) -> Decimal:
        return self.wallet + self.total_unrealized

    @property
    def initial_margin(self) -> Decimal:
        return self.position_im + self.open_order_im

    @property
    def cross_margin_balance(self) -> Decimal:
        return self.cross_wallet + self.cross_unrealized


def _open_order_im(
    position: Position, orders: OrderNotional, mark: Decimal, leverage: int
) -> Decimal:
    held = abs(position.amount) * mark
    bid, ask = orders.bid_margin, orders.ask_margin
    if position.amount > 0:
        ask = max(ZERO, ask - held)
    elif position.amount < 0:
        bid = max(ZERO, bid - held)
    return max(bid, ask) / leverage


def account_risk(
    *,
    wallet: Decimal,
    positions: Mapping[str, Position],
    settings: Mapping[str, SymbolSettings],
    marks: Mapping[str, Decimal],
    orders: Mapping[str, OrderNotional],
    brackets: Mapping[str, tuple[Bracket, ...]],
) -> AccountRisk:
    """Value every symbol in `marks` and the account; see the module docstring for formulas."""
    rows: dict[str, PositionRisk] = {}
    partial: dict[str, tuple[Decimal, Decimal, Decimal, Decimal]] = {}
    for symbol, mark in marks.items():
        pos = positions.get(symbol) or Position(symbol)
        conf = settings[symbol]
        notional = pos.amount * mark
        book = orders.get(symbol, OrderNotional())
        partial[symbol] = (
            unrealized_pnl(pos, mark),
            abs(notional) / conf.leverage,
            _open_order_im(pos, book, mark, conf.leverage),
            maint_margin(brackets[symbol], abs(notional)),
        )
    cross = [s for s in partial if not settings[s].is_isolated]
    isolated_wallets = sum((p.isolated_wallet for p in positions.values()), ZERO)
    cross_wallet = wallet - isolated_wallets
    cross_unrealized = sum((partial[s][0] for s in cross), ZERO)
    cross_maint = sum((partial[s][3] for s in cross), ZERO)
    cross_position_im = sum((partial[s][1] for s in cross), ZERO)
    open_order_im = sum((p[2] for p in partial.values()), ZERO)
    for symbol, (upnl, pos_im, ord_im, mm) in partial.items():
        pos = positions.get(symbol) or Position(symbol)
        conf = settings[symbol]
        if conf.is_isolated:
            liq = liquidation_price(
                position=pos,
                balance=pos.isolated_wallet,
                other_maint=ZERO,
                other_unrealized=ZERO,
                brackets=brackets[symbol],
                mark=marks[symbol],
            )
        else:
            liq = liquidation_price(
                position=pos,
                balance=cross_wallet,
                other_maint=cross_maint - mm,
                other_unrealized=cross_unrealized - upnl,
                brackets=brackets[symbol],
                mark=marks[symbol],
            )
        rows[symbol] = PositionRisk(
            symbol=symbol,
            position=pos,
            settings=conf,
            mark=marks[symbol],
            unrealized=upnl,
            notional=pos.amount * marks[symbol],
            position_im=pos_im,
            open_order_im=ord_im,
            maint_margin=mm,
            orders=orders.get(symbol, OrderNotional()),
            max_notional=max_notional(brackets[symbol], conf.leverage),
            liquidation_price=liq,
        )
    available = cross_wallet + cross_unrealized - cross_position_im - open_order_im
    withdrawable = cross_wallet - cross_position_im - open_order_im
    return AccountRisk(
        wallet=wallet,
        cross_wallet=cross_wallet,
        total_unrealized=sum((p[0] for p in partial.values()), ZERO),
        cross_unrealized=cross_unrealized,
        position_im=sum((p[1] for p in partial.values()), ZERO),
        open_order_im=open_order_im,
        maint_margin=sum((p[3] for p in partial.values()), ZERO),
        cross_maint_margin=cross_maint,
        available=available,
        max_withdraw=max(ZERO, min(available, withdrawable)),
        positions=rows,
    )
