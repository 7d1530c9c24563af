"""Binance user-data events (§6.3-§6.8): ACCOUNT_UPDATE, ORDER_TRADE_UPDATE, ALGO_UPDATE,
TRADE_LITE, listenKeyExpired, MARGIN_CALL and ACCOUNT_CONFIG_UPDATE."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from shared.schemas.binance.base import Codec, Readable, Wire, check_not_negative, check_price

# ---- user data: ACCOUNT_UPDATE -------------------------------------------------------------------


class _BalanceWire(Wire, frozen=True):
    a: str  # asset
    wb: Decimal  # wallet balance
    cw: Decimal  # cross wallet balance
    bc: Decimal  # balance change except PnL and commission


class _PositionWire(Wire, frozen=True):
    s: str  # symbol
    pa: Decimal  # position amount, signed in one-way mode; "0" when closed
    ep: Decimal  # entry price
    cr: Decimal  # accumulated realized (pre-fee)
    up: Decimal  # unrealized PnL
    mt: str  # margin type, lower case: cross | isolated
    iw: Decimal  # isolated wallet
    ps: str  # position side BOTH | LONG | SHORT
    bep: Decimal | None = None  # break-even price (newer payloads)


class _AccountDataWire(Wire, frozen=True):
    m: str  # reason: ORDER, FUNDING_FEE, DEPOSIT, …
    B: list[_BalanceWire]  # changed balances
    P: list[_PositionWire]  # changed positions ([] when none changed)


class _AccountUpdateWire(Wire, frozen=True):
    e: str  # "ACCOUNT_UPDATE"
    E: int  # event time, ms
    T: int  # transaction time, ms
    a: _AccountDataWire


class BalanceChange(Readable, frozen=True, kw_only=True):
    asset: str
    wallet_balance: Decimal
    cross_wallet_balance: Decimal
    balance_change: Decimal


class PositionChange(Readable, frozen=True, kw_only=True):
    symbol: str
    position_side: str
    amount: Decimal
    entry_price: Decimal
    break_even_price: Decimal | None
    accumulated_realized: Decimal
    unrealized_pnl: Decimal
    margin_type: str  # cross | isolated
    isolated_wallet: Decimal


class AccountUpdate(Readable, frozen=True, kw_only=True):
    event_time_ms: int
    transaction_time_ms: int
    reason: str
    balances: tuple[BalanceChange, ...]
    positions: tuple[PositionChange, ...]


def to_account_update(w: _AccountUpdateWire) -> AccountUpdate:
    """Return the account update (only changed balances and positions); raises ValidationError
    for an entry or break-even price below 0 (0 when the position closed: the guard's fast
    protection skips it). Amounts and balances are signed: only finite (Codec)."""
    for i, p in enumerate(w.a.P):
        check_not_negative(p.ep, f"$.a.P[{i}].ep")
        check_not_negative(p.bep, f"$.a.P[{i}].bep")
    return AccountUpdate(
        event_time_ms=w.E,
        transaction_time_ms=w.T,
        reason=w.a.m,
        balances=tuple(
            BalanceChange(
                asset=b.a, wallet_balance=b.wb, cross_wallet_balance=b.cw, balance_change=b.bc
            )
            for b in w.a.B
        ),
        positions=tuple(
            PositionChange(
                symbol=p.s,
                position_side=p.ps,
                amount=p.pa,
                entry_price=p.ep,
                break_even_price=p.bep,
                accumulated_realized=p.cr,
                unrealized_pnl=p.up,
                margin_type=p.mt,
                isolated_wallet=p.iw,
            )
            for p in w.a.P
        ),
    )


# ---- ORDER_TRADE_UPDATE --------------------------------------------------------------------------


class _OrderBodyWire(Wire, frozen=True):
    s: str  # symbol
    c: str  # client order id (autoclose-… liquidation, adl_autoclose ADL)
    S: str  # side
    o: str  # order type (LIMIT, MARKET, …, LIQUIDATION)
    f: str  # time in force
    q: Decimal  # original quantity
    p: Decimal  # original price
    ap: Decimal  # average price
    sp: Decimal  # stop price
    x: str  # execution type: NEW, CANCELED, CALCULATED, EXPIRED, TRADE, AMENDMENT
    X: str  # order status
    i: int  # order id
    l: Decimal  # last filled quantity  # noqa: E741 (Binance's name)
    z: Decimal  # cumulative filled quantity
    L: Decimal  # last filled price
    T: int  # order trade time, ms
    t: int  # trade id, 0 when no trade
    m: bool  # is the fill maker side?
    R: bool  # reduce only
    wt: str  # stop price working type
    ot: str  # original order type
    ps: str  # position side
    cp: bool  # close-all (conditional)
    rp: Decimal  # realized profit of this trade
    N: str | None = None  # commission asset; omitted when no commission
    n: Decimal | None = None  # commission; omitted when no commission


class _OrderTradeUpdateWire(Wire, frozen=True):
    e: str  # "ORDER_TRADE_UPDATE"
    E: int  # event time, ms
    T: int  # transaction time, ms
    o: _OrderBodyWire


class OrderUpdate(Readable, frozen=True, kw_only=True):
    event_time_ms: int
    transaction_time_ms: int
    symbol: str
    client_order_id: str
    order_id: int
    side: str
    order_type: str
    original_order_type: str
    time_in_force: str
    execution_type: str
    status: str
    quantity: Decimal
    price: Decimal
    avg_price: Decimal
    stop_price: Decimal
    last_filled_qty: Decimal
    cum_filled_qty: Decimal
    last_filled_price: Decimal
    trade_id: int  # 0 when this update is not a trade
    trade_time_ms: int
    commission: Decimal  # 0 when the event carries none
    commission_asset: str  # "" when the event carries none
    realized_pnl: Decimal
    is_maker: bool
    is_reduce_only: bool
    is_close_position: bool
    position_side: str
    working_type: str


def to_order_update(w: _OrderTradeUpdateWire) -> OrderUpdate:
    """Return the order update; raises ValidationError for a price or quantity below 0 (each is
    0 when it does not apply: a MARKET order's price, the last fill of a NEW)."""
    o = w.o
    for name in ("q", "p", "ap", "sp", "l", "z", "L"):
        check_not_negative(getattr(o, name), f"$.o.{name}")
    return OrderUpdate(
        event_time_ms=w.E,
        transaction_time_ms=w.T,
        symbol=o.s,
        client_order_id=o.c,
        order_id=o.i,
        side=o.S,
        order_type=o.o,
        original_order_type=o.ot,
        time_in_force=o.f,
        execution_type=o.x,
        status=o.X,
        quantity=o.q,
        price=o.p,
        avg_price=o.ap,
        stop_price=o.sp,
        last_filled_qty=o.l,
        cum_filled_qty=o.z,
        last_filled_price=o.L,
        trade_id=o.t,
        trade_time_ms=o.T,
        commission=o.n if o.n is not None else Decimal(0),
        commission_asset=o.N or "",
        realized_pnl=o.rp,
        is_maker=o.m,
        is_reduce_only=o.R,
        is_close_position=o.cp,
        position_side=o.ps,
        working_type=o.wt,
    )


# ---- ALGO_UPDATE ---------------------------------------------------------------------------------


class _AlgoBodyWire(Wire, frozen=True):
    caid: str  # client algo id
    aid: int  # algo id
    at: str  # algo type: CONDITIONAL
    o: str  # order type: STOP_MARKET, TAKE_PROFIT_MARKET, …
    s: str  # symbol
    S: str  # side
    ps: str  # position side
    f: str  # time in force
    q: Decimal  # quantity
    X: str  # algo status: NEW, CANCELED, TRIGGERING, TRIGGERED, FINISHED, REJECTED, EXPIRED
    ai: str  # child order id, a string; "" until triggered
    tp: Decimal  # trigger price
    p: Decimal  # price
    wt: str  # working type
    cp: bool  # close position
    R: bool  # reduce only
    tt: int  # trigger time, ms (0 before)
    ap: Decimal | None = None  # average fill price; absent while TRIGGERING
    aq: Decimal | None = None  # executed quantity; absent while TRIGGERING
    act: str | None = None  # actual order type in the matching engine; absent while TRIGGERING
    rm: str = ""  # failure reason, e.g. "Reduce Only reject"


class _AlgoUpdateWire(Wire, frozen=True):
    e: str  # "ALGO_UPDATE"
    E: int  # event time, ms
    T: int  # transaction time, ms
    o: _AlgoBodyWire


class AlgoUpdate(Readable, frozen=True, kw_only=True):
    event_time_ms: int
    transaction_time_ms: int
    client_algo_id: str
    algo_id: int
    symbol: str
    side: str
    order_type: str
    position_side: str
    status: str
    quantity: Decimal
    trigger_price: Decimal
    price: Decimal
    working_type: str
    is_close_position: bool
    is_reduce_only: bool
    trigger_time_ms: int
    child_order_id: int | None
    avg_fill_price: Decimal | None
    filled_qty: Decimal | None
    reason: str


def to_algo_update(w: _AlgoUpdateWire) -> AlgoUpdate:
    """Return the algo-order update (a FINISHED with `filled_qty` 0: the child did not fill);
    raises ValidationError for a price or quantity below 0 (as the REST algo order)."""
    o = w.o
    for name in ("q", "tp", "p", "ap", "aq"):
        check_not_negative(getattr(o, name), f"$.o.{name}")
    return AlgoUpdate(
        event_time_ms=w.E,
        transaction_time_ms=w.T,
        client_algo_id=o.caid,
        algo_id=o.aid,
        symbol=o.s,
        side=o.S,
        order_type=o.o,
        position_side=o.ps,
        status=o.X,
        quantity=o.q,
        trigger_price=o.tp,
        price=o.p,
        working_type=o.wt,
        is_close_position=o.cp,
        is_reduce_only=o.R,
        trigger_time_ms=o.tt,
        child_order_id=int(o.ai) if o.ai else None,
        avg_fill_price=o.ap,
        filled_qty=o.aq,
        reason=o.rm,
    )


# ---- TRADE_LITE and listenKeyExpired -------------------------------------------------------------


class _TradeLiteWire(Wire, frozen=True):
    e: str  # "TRADE_LITE"
    E: int  # event time, ms
    T: int  # transaction time, ms
    s: str  # symbol
    q: Decimal  # original quantity
    p: Decimal  # original price
    m: bool  # is maker
    c: str  # client order id
    S: str  # side
    L: Decimal  # last filled price
    l: Decimal  # last filled quantity  # noqa: E741 (Binance's name)
    t: int  # trade id
    i: int  # order id (can exceed 2^53)


class TradeLite(Readable, frozen=True, kw_only=True):
    event_time_ms: int
    transaction_time_ms: int
    symbol: str
    client_order_id: str
    order_id: int
    trade_id: int
    side: str
    quantity: Decimal
    price: Decimal
    last_filled_qty: Decimal
    last_filled_price: Decimal
    is_maker: bool


def to_trade_lite(w: _TradeLiteWire) -> TradeLite:
    """Return the low-latency fill; raises ValidationError for a fill price that is not > 0 or
    a quantity below 0."""
    check_price(w.L, "$.L")
    for name in ("q", "p", "l"):
        check_not_negative(getattr(w, name), f"$.{name}")
    return TradeLite(
        event_time_ms=w.E,
        transaction_time_ms=w.T,
        symbol=w.s,
        client_order_id=w.c,
        order_id=w.i,
        trade_id=w.t,
        side=w.S,
        quantity=w.q,
        price=w.p,
        last_filled_qty=w.l,
        last_filled_price=w.L,
        is_maker=w.m,
    )


class _ListenKeyExpiredWire(Wire, frozen=True):
    e: str  # "listenKeyExpired"
    E: int | str  # event time, ms: a string on the wire, an int in the SDK model (§6.3)
    listenKey: str


class ListenKeyExpired(Readable, frozen=True, kw_only=True):
    event_time_ms: int
    listen_key: str


def to_listen_key_expired(w: _ListenKeyExpiredWire) -> ListenKeyExpired:
    """Return the expiry notice; raises ValidationError for a non-numeric `E`."""
    try:
        event_time_ms = int(w.E)
    except ValueError:
        raise msgspec.ValidationError(
            f"Expected an integer string, got {w.E!r} - at `$.E`"
        ) from None
    return ListenKeyExpired(event_time_ms=event_time_ms, listen_key=w.listenKey)


# ---- MARGIN_CALL and ACCOUNT_CONFIG_UPDATE (§6.8) ----------------------------------------------


class _MarginCallRowWire(Wire, frozen=True):
    s: str  # symbol
    ps: str  # position side
    pa: Decimal  # position amount
    mt: str  # margin type CROSSED | ISOLATED
    iw: Decimal  # isolated wallet (0 for cross)
    mp: Decimal  # mark price
    up: Decimal  # unrealized PnL
    mm: Decimal  # maintenance margin required


class _MarginCallWire(Wire, frozen=True):
    e: str  # "MARGIN_CALL"
    E: int  # event time, ms
    p: list[_MarginCallRowWire]  # the positions concerned
    cw: Decimal | None = None  # cross wallet balance: only for a cross margin call


class MarginCallPosition(Readable, frozen=True, kw_only=True):
    symbol: str
    position_side: str
    amount: Decimal
    margin_type: str  # CROSSED | ISOLATED
    isolated_wallet: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    maintenance_margin: Decimal


class MarginCall(Readable, frozen=True, kw_only=True):
    """The account's margin ratio reached the exchange's margin-call level: liquidation is near."""

    event_time_ms: int
    cross_wallet_balance: Decimal | None
    positions: tuple[MarginCallPosition, ...]


def to_margin_call(w: _MarginCallWire) -> MarginCall:
    """Return the margin call; raises ValidationError for a mark price that is not > 0 (the
    guard judges the position against it at once)."""
    for i, p in enumerate(w.p):
        check_price(p.mp, f"$.p[{i}].mp")
    return MarginCall(
        event_time_ms=w.E,
        cross_wallet_balance=w.cw,
        positions=tuple(
            MarginCallPosition(
                symbol=r.s,
                position_side=r.ps,
                amount=r.pa,
                margin_type=r.mt,
                isolated_wallet=r.iw,
                mark_price=r.mp,
                unrealized_pnl=r.up,
                maintenance_margin=r.mm,
            )
            for r in w.p
        ),
    )


class _LeverageConfigWire(Wire, frozen=True):
    s: str  # symbol
    l: int  # leverage  # noqa: E741 (Binance's name)


class _MultiAssetsConfigWire(Wire, frozen=True):
    j: bool  # multi-assets mode


class _AccountConfigUpdateWire(Wire, frozen=True):
    e: str  # "ACCOUNT_CONFIG_UPDATE"
    E: int  # event time, ms
    T: int  # transaction time, ms
    ac: _LeverageConfigWire | None = None  # after POST /fapi/v1/leverage
    ai: _MultiAssetsConfigWire | None = None  # after a multi-assets mode change


class AccountConfigUpdate(Readable, frozen=True, kw_only=True):
    """A symbol's leverage (or the multi-assets mode) changed."""

    event_time_ms: int
    transaction_time_ms: int
    symbol: str | None
    leverage: int | None
    is_multi_assets: bool | None


def to_account_config_update(w: _AccountConfigUpdateWire) -> AccountConfigUpdate:
    """Return the configuration change; raises ValidationError when it names neither kind."""
    if w.ac is None and w.ai is None:
        raise msgspec.ValidationError("Object has neither `ac` nor `ai` - at `$`")
    return AccountConfigUpdate(
        event_time_ms=w.E,
        transaction_time_ms=w.T,
        symbol=w.ac.s if w.ac else None,
        leverage=w.ac.l if w.ac else None,
        is_multi_assets=w.ai.j if w.ai else None,
    )


USER_DATA_CODECS: dict[str, Codec[Any, Any]] = {
    "ACCOUNT_UPDATE": Codec(_AccountUpdateWire, to_account_update),
    "ORDER_TRADE_UPDATE": Codec(_OrderTradeUpdateWire, to_order_update),
    "ALGO_UPDATE": Codec(_AlgoUpdateWire, to_algo_update),
    "TRADE_LITE": Codec(_TradeLiteWire, to_trade_lite),
    "listenKeyExpired": Codec(_ListenKeyExpiredWire, to_listen_key_expired),
    "MARGIN_CALL": Codec(_MarginCallWire, to_margin_call),
    "ACCOUNT_CONFIG_UPDATE": Codec(_AccountConfigUpdateWire, to_account_config_update),
}
