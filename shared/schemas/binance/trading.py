"""Binance REST replies about the account and its orders: account v3 (§5.6), positionRisk v3
(§5.8), orders (§5.9), algo orders (§5.10), userTrades (§5.17), income (§5.18).

Account and position structs require only the fields v2 and v3 share, so the documented v2
examples decode too; v3-only fields are optional.
"""

from __future__ import annotations

from decimal import Decimal

from shared.schemas.binance.base import (
    Codec,
    Readable,
    Wire,
    check_not_negative,
    check_price,
    invalid,
)

# ---- account v3 and positionRisk v3 --------------------------------------------------------------


class _AssetWire(Wire, frozen=True):
    asset: str
    walletBalance: Decimal
    unrealizedProfit: Decimal
    marginBalance: Decimal
    availableBalance: Decimal
    updateTime: int  # ms


class _AccountPositionWire(Wire, frozen=True):
    symbol: str
    positionSide: str  # BOTH (one-way) | LONG | SHORT (hedge)
    positionAmt: Decimal  # signed in one-way mode
    unrealizedProfit: Decimal
    initialMargin: Decimal
    maintMargin: Decimal
    updateTime: int  # ms
    notional: Decimal | None = None  # v3 only


class _AccountWire(Wire, frozen=True):
    totalWalletBalance: Decimal
    totalUnrealizedProfit: Decimal
    totalMarginBalance: Decimal
    totalInitialMargin: Decimal
    totalMaintMargin: Decimal
    availableBalance: Decimal
    maxWithdrawAmount: Decimal
    assets: list[_AssetWire]
    positions: list[_AccountPositionWire]


class AssetBalance(Readable, frozen=True, kw_only=True):
    asset: str
    wallet_balance: Decimal
    unrealized_pnl: Decimal
    margin_balance: Decimal
    available_balance: Decimal
    update_time_ms: int


class AccountPosition(Readable, frozen=True, kw_only=True):
    symbol: str
    position_side: str
    amount: Decimal  # signed base quantity (one-way mode)
    unrealized_pnl_usdt: Decimal
    initial_margin_usdt: Decimal
    maint_margin_usdt: Decimal
    notional_usdt: Decimal | None
    update_time_ms: int


class Account(Readable, frozen=True, kw_only=True):
    wallet_balance_usdt: Decimal
    unrealized_pnl_usdt: Decimal
    margin_balance_usdt: Decimal
    initial_margin_usdt: Decimal
    maint_margin_usdt: Decimal
    available_balance_usdt: Decimal
    max_withdraw_usdt: Decimal
    assets: tuple[AssetBalance, ...]
    positions: tuple[AccountPosition, ...]  # v3: only symbols with a position or open orders


def to_account(w: _AccountWire) -> Account:
    """Return the readable account."""
    return Account(
        wallet_balance_usdt=w.totalWalletBalance,
        unrealized_pnl_usdt=w.totalUnrealizedProfit,
        margin_balance_usdt=w.totalMarginBalance,
        initial_margin_usdt=w.totalInitialMargin,
        maint_margin_usdt=w.totalMaintMargin,
        available_balance_usdt=w.availableBalance,
        max_withdraw_usdt=w.maxWithdrawAmount,
        assets=tuple(
            AssetBalance(
                asset=a.asset,
                wallet_balance=a.walletBalance,
                unrealized_pnl=a.unrealizedProfit,
                margin_balance=a.marginBalance,
                available_balance=a.availableBalance,
                update_time_ms=a.updateTime,
            )
            for a in w.assets
        ),
        positions=tuple(
            AccountPosition(
                symbol=p.symbol,
                position_side=p.positionSide,
                amount=p.positionAmt,
                unrealized_pnl_usdt=p.unrealizedProfit,
                initial_margin_usdt=p.initialMargin,
                maint_margin_usdt=p.maintMargin,
                notional_usdt=p.notional,
                update_time_ms=p.updateTime,
            )
            for p in w.positions
        ),
    )


decode_account = Codec(_AccountWire, to_account)


class _PositionRiskWire(Wire, frozen=True):
    symbol: str
    positionSide: str  # BOTH | LONG | SHORT
    positionAmt: Decimal  # signed in one-way mode
    entryPrice: Decimal
    markPrice: Decimal
    unRealizedProfit: Decimal  # note the capital R, unlike the account reply
    liquidationPrice: Decimal  # 0 when there is no position
    updateTime: int  # ms
    breakEvenPrice: Decimal | None = None
    notional: Decimal | None = None


class Position(Readable, frozen=True, kw_only=True):
    symbol: str
    position_side: str
    amount: Decimal  # signed base quantity: > 0 long, < 0 short (one-way mode)
    entry_price: Decimal
    break_even_price: Decimal | None
    mark_price: Decimal
    unrealized_pnl_usdt: Decimal
    liquidation_price: Decimal
    notional_usdt: Decimal | None
    update_time_ms: int


def to_position(w: _PositionRiskWire, path: str = "$") -> Position:
    """Return the readable position; raises ValidationError for a price below 0. Entry, mark,
    liquidation and break-even prices are 0 when flat (or, liquidation, when no liquidation
    is possible), so 0 is valid here; an open position with entry 0 is left to the guard's
    per-symbol handling, so one such row costs its own symbol, not the reply's others.
    The amount is signed (short < 0): only finite."""
    for name in ("entryPrice", "markPrice", "liquidationPrice", "breakEvenPrice"):
        check_not_negative(getattr(w, name), f"{path}.{name}")
    return Position(
        symbol=w.symbol,
        position_side=w.positionSide,
        amount=w.positionAmt,
        entry_price=w.entryPrice,
        break_even_price=w.breakEvenPrice,
        mark_price=w.markPrice,
        unrealized_pnl_usdt=w.unRealizedProfit,
        liquidation_price=w.liquidationPrice,
        notional_usdt=w.notional,
        update_time_ms=w.updateTime,
    )


decode_positions = Codec(
    list[_PositionRiskWire], lambda ws: [to_position(w, f"$[{i}]") for i, w in enumerate(ws)]
)


# ---- orders --------------------------------------------------------------------------------------


class _OrderWire(Wire, frozen=True):
    orderId: int  # can exceed 2^53 on some symbols (§4)
    symbol: str
    status: str  # NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED, EXPIRED_IN_MATCH
    clientOrderId: str
    price: Decimal
    avgPrice: Decimal
    origQty: Decimal
    executedQty: Decimal
    cumQuote: Decimal  # filled notional, quote asset
    timeInForce: str
    type: str  # LIMIT | MARKET (conditional types live in the algo service since 2025-12)
    reduceOnly: bool
    closePosition: bool
    side: str  # BUY | SELL
    positionSide: str
    stopPrice: Decimal
    origType: str
    updateTime: int  # ms
    time: int | None = None  # creation time, ms; only GET replies carry it


class Order(Readable, frozen=True, kw_only=True):
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    order_type: str
    status: str
    time_in_force: str
    price: Decimal  # 0 for MARKET
    avg_price: Decimal  # fill VWAP, 0 before any fill
    quantity: Decimal
    executed_qty: Decimal
    cum_quote_usdt: Decimal
    is_reduce_only: bool
    is_close_position: bool
    position_side: str
    stop_price: Decimal
    update_time_ms: int
    create_time_ms: int | None


def to_order(w: _OrderWire, path: str = "$") -> Order:
    """Return the readable order; raises ValidationError for a price or quantity below 0 (each
    is 0 when it does not apply: a MARKET order's price, the average before a fill)."""
    for name in ("price", "avgPrice", "origQty", "executedQty", "cumQuote", "stopPrice"):
        check_not_negative(getattr(w, name), f"{path}.{name}")
    return Order(
        order_id=w.orderId,
        client_order_id=w.clientOrderId,
        symbol=w.symbol,
        side=w.side,
        order_type=w.type,
        status=w.status,
        time_in_force=w.timeInForce,
        price=w.price,
        avg_price=w.avgPrice,
        quantity=w.origQty,
        executed_qty=w.executedQty,
        cum_quote_usdt=w.cumQuote,
        is_reduce_only=w.reduceOnly,
        is_close_position=w.closePosition,
        position_side=w.positionSide,
        stop_price=w.stopPrice,
        update_time_ms=w.updateTime,
        create_time_ms=w.time,
    )


decode_order = Codec(_OrderWire, to_order)
decode_orders = Codec(
    list[_OrderWire], lambda ws: [to_order(w, f"$[{i}]") for i, w in enumerate(ws)]
)


class _AlgoOrderWire(Wire, frozen=True):
    algoId: int
    clientAlgoId: str
    algoType: str  # CONDITIONAL
    symbol: str
    side: str
    positionSide: str
    quantity: Decimal  # 0 with closePosition
    algoStatus: str  # NEW, TRIGGERING, TRIGGERED, FINISHED, CANCELED, REJECTED, EXPIRED
    triggerPrice: Decimal
    workingType: str  # MARK_PRICE | CONTRACT_PRICE
    reduceOnly: bool
    createTime: int  # ms
    updateTime: int  # ms
    orderType: str = ""  # STOP_MARKET, TAKE_PROFIT_MARKET, … (real replies since 2025-11)
    type: str = ""  # the older documented spelling of `orderType`
    timeInForce: str = "GTC"
    price: Decimal | None = None  # STOP / TAKE_PROFIT limit price
    closePosition: bool = False  # absent from the documented openAlgoOrders example
    triggerTime: int = 0  # ms, 0 before the trigger
    actualOrderId: str = ""  # child order id (GET algoOrder), "" before the trigger


class AlgoOrder(Readable, frozen=True, kw_only=True):
    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    order_type: str
    status: str
    position_side: str
    quantity: Decimal
    trigger_price: Decimal
    price: Decimal | None
    working_type: str
    is_reduce_only: bool
    is_close_position: bool
    create_time_ms: int
    update_time_ms: int
    trigger_time_ms: int
    child_order_id: int | None  # the matching-engine order once triggered


def to_algo_order(w: _AlgoOrderWire, path: str = "$") -> AlgoOrder:
    """Return the readable algo order; raises ValidationError without an order type, or for a
    trigger price, quantity or price below 0. Not > 0 for the trigger: an algo order placed by
    hand (a trailing stop before activation) may carry 0, and refusing the whole reply for it
    would stop every symbol's reconcile; the quantity is 0 with closePosition."""
    order_type = w.orderType or w.type
    if not order_type:
        raise invalid(path, "Object missing required field `orderType`")
    check_not_negative(w.triggerPrice, f"{path}.triggerPrice")
    check_not_negative(w.quantity, f"{path}.quantity")
    check_not_negative(w.price, f"{path}.price")
    return AlgoOrder(
        algo_id=w.algoId,
        client_algo_id=w.clientAlgoId,
        symbol=w.symbol,
        side=w.side,
        order_type=order_type,
        status=w.algoStatus,
        position_side=w.positionSide,
        quantity=w.quantity,
        trigger_price=w.triggerPrice,
        price=w.price,
        working_type=w.workingType,
        is_reduce_only=w.reduceOnly,
        is_close_position=w.closePosition,
        create_time_ms=w.createTime,
        update_time_ms=w.updateTime,
        trigger_time_ms=w.triggerTime,
        child_order_id=int(w.actualOrderId) if w.actualOrderId else None,
    )


decode_algo_order = Codec(_AlgoOrderWire, to_algo_order)
decode_algo_orders = Codec(
    list[_AlgoOrderWire], lambda ws: [to_algo_order(w, f"$[{i}]") for i, w in enumerate(ws)]
)


class _AlgoCancelWire(Wire, frozen=True):
    algoId: int
    clientAlgoId: str
    code: int | str  # "200" (a string) on success (§5.10)
    msg: str = ""


class AlgoCancel(Readable, frozen=True, kw_only=True):
    algo_id: int
    client_algo_id: str


decode_algo_cancel = Codec(
    _AlgoCancelWire, lambda w: AlgoCancel(algo_id=w.algoId, client_algo_id=w.clientAlgoId)
)


# ---- userTrades and income -----------------------------------------------------------------------


class _UserTradeWire(Wire, frozen=True):
    symbol: str
    id: int  # trade id
    orderId: int
    side: str
    price: Decimal
    qty: Decimal
    quoteQty: Decimal
    realizedPnl: Decimal
    commission: Decimal
    commissionAsset: str
    time: int  # ms
    positionSide: str
    buyer: bool
    maker: bool


class UserTrade(Readable, frozen=True, kw_only=True):
    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    quote_qty: Decimal
    realized_pnl: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    position_side: str
    is_buyer: bool
    is_maker: bool


def to_user_trade(w: _UserTradeWire, path: str = "$") -> UserTrade:
    """Return the readable fill; raises ValidationError for a fill price that is not > 0 or a
    quantity below 0 (the trader's trade record averages them). PnL and commission are signed
    (a maker rebate is negative): only finite."""
    check_price(w.price, f"{path}.price")
    check_not_negative(w.qty, f"{path}.qty")
    check_not_negative(w.quoteQty, f"{path}.quoteQty")
    return UserTrade(
        trade_id=w.id,
        order_id=w.orderId,
        symbol=w.symbol,
        side=w.side,
        price=w.price,
        quantity=w.qty,
        quote_qty=w.quoteQty,
        realized_pnl=w.realizedPnl,
        commission=w.commission,
        commission_asset=w.commissionAsset,
        time_ms=w.time,
        position_side=w.positionSide,
        is_buyer=w.buyer,
        is_maker=w.maker,
    )


decode_user_trades = Codec(
    list[_UserTradeWire], lambda ws: [to_user_trade(w, f"$[{i}]") for i, w in enumerate(ws)]
)


class _IncomeWire(Wire, frozen=True):
    symbol: str  # "" for account-wide rows (TRANSFER)
    incomeType: str  # REALIZED_PNL, FUNDING_FEE, COMMISSION, TRANSFER, …
    income: Decimal  # signed amount of `asset`
    asset: str
    info: str
    time: int  # ms
    tranId: int
    tradeId: str | int = ""  # a string, "" when not a trade (§5.18)


class Income(Readable, frozen=True, kw_only=True):
    symbol: str
    income_type: str
    amount: Decimal
    asset: str
    info: str
    time_ms: int
    transaction_id: int
    trade_id: str  # "" when the row is not about a trade


def to_income(w: _IncomeWire) -> Income:
    """Return the readable income row."""
    return Income(
        symbol=w.symbol,
        income_type=w.incomeType,
        amount=w.income,
        asset=w.asset,
        info=w.info,
        time_ms=w.time,
        transaction_id=w.tranId,
        trade_id=str(w.tradeId),
    )


decode_income = Codec(list[_IncomeWire], lambda ws: [to_income(w) for w in ws])
