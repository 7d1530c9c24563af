"""Order acceptance and matching against the replayed book: fills, fees, PnL and their events.

Liquidity model (a paper exchange has no order book of its own):
- A MARKET order fills completely in one trade at the book (BUY at the ask, SELL at the bid),
  moved `market_slippage_bps` against the taker and rounded to the tick; taker fee.
- A LIMIT order that crosses the book on arrival fills completely as taker at the book price,
  never worse than its limit; GTX (post-only) that would cross is refused with -5022, FOK that
  cannot fill with -5021, IOC that cannot fill expires. Otherwise it rests.
- A resting LIMIT order fills completely as maker at its limit price once the last price trades
  through it (BUY when last < price, SELL when last > price); touching is not enough, which
  stands in for the queue ahead of it. Checked every engine tick.
- Book quantities are not consumed; every fill is a whole order (or what reduce-only allows).

Event order per fill (BINANCE-API.md §6.5, §11.13): TRADE_LITE, ACCOUNT_UPDATE m=ORDER (the
USDT balance and the symbol's position; pa "0" once closed), ORDER_TRADE_UPDATE x=TRADE. An
accepted order first emits ORDER_TRADE_UPDATE x=NEW; cancel/expiry emit one ORDER_TRADE_UPDATE
x=X=CANCELED/EXPIRED and no ACCOUNT_UPDATE.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from procs.paper_exchange.engine.accounts import apply_fill
from procs.paper_exchange.engine.events import (
    Execution,
    account_update,
    algo_update,
    order_trade_update,
    trade_lite,
)
from procs.paper_exchange.engine.ledger import Ledger, Trade
from procs.paper_exchange.engine.orders import Order
from procs.paper_exchange.engine.specs import (
    EIGHT_PLACES,
    ZERO,
    SymbolSpec,
    max_notional,
    round_to_tick,
)
from procs.paper_exchange.errors import min_notional, rejected

BPS = Decimal(10000)


@dataclass(frozen=True)
class OrderRequest:
    """A validated order for the matching engine (from a client, an algo trigger or liquidation)."""

    symbol: str
    side: str  # BUY | SELL
    type: str  # LIMIT | MARKET
    time_in_force: str  # GTC | IOC | FOK | GTX
    qty: Decimal
    price: Decimal  # 0 for MARKET
    reduce_only: bool
    client_order_id: str | None  # None: the exchange makes one
    stp_mode: str = "NONE"
    orig_type: str = ""  # "" = same as type
    algo_id: int = 0  # the algo order placing this child
    stop_price: Decimal = ZERO
    close_position: bool = False
    working_type: str = "CONTRACT_PRICE"
    price_protect: bool = False
    activate_price: Decimal = ZERO
    callback_rate: Decimal = ZERO

    @property
    def is_child(self) -> bool:
        return self.algo_id != 0


@dataclass(frozen=True)
class Plan:
    """An order that passed every check, with its id and how it meets the book."""

    request: OrderRequest
    order_id: int
    client_order_id: str
    fill_price: Decimal | None  # taker fill price now, None when it rests or expires


def signed(side: str, qty: Decimal) -> Decimal:
    """Return qty as a position change: BUY positive, SELL negative."""
    return qty if side == "BUY" else -qty


def reducible_qty(ledger: Ledger, symbol: str, side: str) -> Decimal:
    """Return how much an order on `side` can reduce the symbol's position (0 if it cannot)."""
    amount = ledger.positions[symbol].amount
    if amount == 0 or (amount > 0) == (side == "BUY"):
        return ZERO
    return abs(amount)


def taker_price(ledger: Ledger, spec: SymbolSpec, side: str, now_ms: int) -> Decimal:
    """Return the price a taker gets now: the book side plus slippage, on the tick grid."""
    bid, _, ask, _ = ledger.market.book_ticker(spec.symbol, now_ms)
    slippage = ledger.cfg.market_slippage_bps / BPS
    if side == "BUY":
        return round_to_tick(spec, ask * (1 + slippage), up=True) if slippage else ask
    return round_to_tick(spec, bid * (1 - slippage), up=False) if slippage else bid


def prepare(ledger: Ledger, req: OrderRequest, now_ms: int) -> Plan:
    """Check an order against the account and the book; raise ApiError before any change.

    Client orders get the max-orders, duplicate-id, reduce-only, MIN_NOTIONAL (LIMIT at its
    price, MARKET at the mark: the digest leaves last-or-mark unconfirmed, §5.2), margin and
    position-limit checks; algo children skip the client-id, reduce-only and MIN_NOTIONAL checks
    (their algo order passed them at placement). Only a passing order takes an order id.
    """
    spec = ledger.spec(req.symbol)
    if len(ledger.open_orders(req.symbol)) >= spec.max_num_orders:
        raise rejected(-2025)
    if (
        not req.is_child
        and req.client_order_id is not None
        and any(o.client_order_id == req.client_order_id for o in ledger.open_orders(req.symbol))
    ):
        raise rejected(-4116)
    held = reducible_qty(ledger, req.symbol, req.side)
    if (req.reduce_only or req.close_position) and held == 0 and not req.is_child:
        raise rejected(-2022)
    bid, _, ask, _ = ledger.market.book_ticker(req.symbol, now_ms)
    fill_price: Decimal | None = None
    if req.type == "MARKET":
        fill_price = taker_price(ledger, spec, req.side, now_ms)
    else:
        crosses = req.price >= ask if req.side == "BUY" else req.price <= bid
        if crosses and req.time_in_force == "GTX":
            raise rejected(-5022)
        if not crosses and req.time_in_force == "FOK":
            raise rejected(-5021)
        if crosses:
            book = taker_price(ledger, spec, req.side, now_ms)
            fill_price = min(book, req.price) if req.side == "BUY" else max(book, req.price)
    mark = ledger.market.mark_price(req.symbol, now_ms)
    if not req.reduce_only and not req.is_child:
        reference = req.price if req.type == "LIMIT" else mark
        if req.qty * reference < spec.min_notional:
            raise min_notional(spec.min_notional_text)
    increase = req.qty if held == 0 else max(ZERO, req.qty - held)
    if increase > 0 and not (req.reduce_only or req.close_position):
        # After a reducing order only the flipped remainder is left; otherwise it adds up.
        size_after = increase if held else abs(ledger.positions[req.symbol].amount) + increase
        _check_margin(ledger, req, increase, size_after, fill_price or req.price, now_ms)
    order_id = ledger.new_order_id()
    client_id = req.client_order_id or f"paper_{order_id}"
    return Plan(req, order_id, client_id, fill_price)


def _check_margin(
    ledger: Ledger,
    req: OrderRequest,
    increase: Decimal,
    size_after: Decimal,
    price: Decimal,
    now_ms: int,
) -> None:
    """-2027 beyond the bracket's notional cap at this leverage, -2019 beyond available margin.

    The order's initial margin is the increasing part's notional at its fill (or limit) price
    over the leverage; margin freed by a reducing part is not credited, a conservative choice.
    """
    settings = ledger.settings[req.symbol]
    if size_after * price > max_notional(ledger.brackets[req.symbol], settings.leverage):
        raise rejected(-2027)
    if increase * price / settings.leverage > ledger.risk(now_ms).available:
        raise rejected(-2019)


def _new_order(plan: Plan, now_ms: int) -> Order:
    req = plan.request
    return Order(
        order_id=plan.order_id,
        symbol=req.symbol,
        client_order_id=plan.client_order_id,
        side=req.side,
        type=req.type,
        orig_type=req.orig_type or req.type,
        time_in_force=req.time_in_force,
        orig_qty=req.qty,
        price=req.price,
        reduce_only=req.reduce_only,
        status="NEW",
        time_ms=now_ms,
        update_ms=now_ms,
        stop_price=req.stop_price,
        close_position=req.close_position,
        working_type=req.working_type,
        price_protect=req.price_protect,
        stp_mode=req.stp_mode,
        algo_id=req.algo_id,
        activate_price=req.activate_price,
        callback_rate=req.callback_rate,
    )


def execute(ledger: Ledger, plan: Plan, now_ms: int) -> Order:
    """Accept a prepared order (x=NEW), fill it now if it crosses, expire an unfilled IOC/FOK."""
    order = _new_order(plan, now_ms)
    ledger.orders[order.order_id] = order
    emit_order(ledger, order, "NEW", now_ms)
    req = plan.request
    if plan.fill_price is not None:
        fill_order(ledger, order, plan.fill_price, is_maker=False, now_ms=now_ms)
    elif req.time_in_force in ("IOC", "FOK"):
        # IOC remainder (er 2, §6.5).
        finish_order(ledger, order, "EXPIRED", now_ms, reason="2")
    return order


def record_order(ledger: Ledger, plan: Plan, now_ms: int) -> Order:
    """Record an order without an x=NEW event (a liquidation order shows only as CALCULATED)."""
    order = _new_order(plan, now_ms)
    ledger.orders[order.order_id] = order
    return order


def expire_unplaced(ledger: Ledger, plan: Plan, now_ms: int, reason: str) -> Order:
    """Record an order that expires on arrival (one ORDER_TRADE_UPDATE x=X=EXPIRED, no NEW)."""
    order = _new_order(plan, now_ms)
    ledger.orders[order.order_id] = order
    finish_order(ledger, order, "EXPIRED", now_ms, reason=reason)
    return order


def emit_order(
    ledger: Ledger,
    order: Order,
    exec_type: str,
    now_ms: int,
    fill: Execution | None = None,
) -> None:
    """Queue ORDER_TRADE_UPDATE for `order` with the symbol's open-order notional."""
    book = ledger.order_notional(order.symbol)
    ledger.emit(
        order_trade_update(
            order,
            ledger.spec(order.symbol),
            exec_type=exec_type,
            now_ms=now_ms,
            fill=fill,
            bid_notional=book.bid,
            ask_notional=book.ask,
        )
    )


def fill_order(
    ledger: Ledger,
    order: Order,
    price: Decimal,
    *,
    is_maker: bool,
    now_ms: int,
    exec_type: str = "TRADE",
    clearance_fee_rate: Decimal | None = None,
) -> None:
    """Fill what is left of `order` at `price`; a reduce-only remainder that would open expires.

    `clearance_fee_rate` (liquidation only) also charges the insurance-fund clearance fee.
    """
    qty = order.remaining_qty
    if order.reduce_only or order.close_position:
        qty = min(qty, reducible_qty(ledger, order.symbol, order.side))
    if qty > 0:
        _execute_fill(ledger, order, qty, price, is_maker, now_ms, exec_type, clearance_fee_rate)
    if not order.is_open or order.remaining_qty == 0:
        return
    if order.reduce_only or order.close_position:
        # The rest would open a position: knocked out (er 4, §6.5).
        finish_order(ledger, order, "EXPIRED", now_ms, reason="4")
    elif order.type == "MARKET" or order.time_in_force in ("IOC", "FOK"):
        finish_order(ledger, order, "EXPIRED", now_ms, reason="2")


def _commission(qty: Decimal, price: Decimal, rate: Decimal) -> Decimal:
    return (qty * price * rate).quantize(EIGHT_PLACES, rounding=ROUND_HALF_UP)


def _execute_fill(
    ledger: Ledger,
    order: Order,
    qty: Decimal,
    price: Decimal,
    is_maker: bool,
    now_ms: int,
    exec_type: str,
    clearance_fee_rate: Decimal | None,
) -> None:
    symbol = order.symbol
    position = ledger.positions[symbol]
    cross_before = ledger.cross_wallet()
    effect = apply_fill(position, ledger.settings[symbol], signed(order.side, qty), price)
    position.update_ms = now_ms
    rate = ledger.cfg.maker_fee_rate if is_maker else ledger.cfg.taker_fee_rate
    commission = _commission(qty, price, rate)
    ledger.wallet += effect.realized_pnl - commission
    trade_id = ledger.new_trade_id()
    order.executed_qty += qty
    order.cum_quote += qty * price
    order.status = "FILLED" if order.remaining_qty == 0 else "PARTIALLY_FILLED"
    order.update_ms = now_ms
    ledger.trades.append(
        Trade(
            trade_id=trade_id,
            order_id=order.order_id,
            symbol=symbol,
            side=order.side,
            price=price,
            qty=qty,
            realized_pnl=effect.realized_pnl,
            commission=commission,
            time_ms=now_ms,
            is_maker=is_maker,
        )
    )
    if effect.realized_pnl:
        ledger.add_income(symbol, "REALIZED_PNL", effect.realized_pnl, now_ms, str(trade_id))
    if commission:
        ledger.add_income(symbol, "COMMISSION", -commission, now_ms, str(trade_id))
    if clearance_fee_rate is not None:
        net = effect.realized_pnl - commission
        # What the closed part gives back to the cross wallet (isolated) or what it holds (cross).
        base = (
            net - effect.isolated_delta
            if ledger.settings[symbol].is_isolated
            else cross_before + net
        )
        _clear_liquidation(ledger, symbol, qty * price * clearance_fee_rate, base, now_ms)
    fill = Execution(trade_id, qty, price, commission, effect.realized_pnl, is_maker)
    spec = ledger.spec(symbol)
    if exec_type == "TRADE":
        ledger.emit(trade_lite(order, spec, fill, now_ms))
    ledger.emit(
        account_update(
            "ORDER",
            ledger.balance_change(ZERO),
            [ledger.position_event_row(symbol, now_ms)],
            now_ms,
        )
    )
    emit_order(ledger, order, exec_type, now_ms, fill)
    if not order.is_open:
        _on_final(ledger, order, now_ms)
    _knock_out_reduce_only(ledger, symbol, order.order_id, now_ms)


def _clear_liquidation(
    ledger: Ledger, symbol: str, fee: Decimal, base: Decimal, now_ms: int
) -> None:
    """Charge the liquidation clearance fee; the insurance fund covers a loss beyond `base`.

    `base` is what the liquidated margin still holds after the fill: an isolated position can
    lose at most its isolated wallet, a cross account at most its cross wallet. The fee takes
    what is left up to its full amount; a negative remainder is credited back (INSURANCE_CLEAR).
    """
    fee = min(fee.quantize(EIGHT_PLACES, rounding=ROUND_HALF_UP), max(ZERO, base))
    if fee:
        ledger.wallet -= fee
        ledger.add_income(symbol, "INSURANCE_CLEAR", -fee, now_ms)
    shortfall = base - fee
    if shortfall < 0:
        ledger.wallet -= shortfall
        ledger.add_income(symbol, "INSURANCE_CLEAR", -shortfall, now_ms)


def _knock_out_reduce_only(ledger: Ledger, symbol: str, except_id: int, now_ms: int) -> None:
    """Expire resting reduce-only orders that can no longer reduce the position (er 4)."""
    for other in ledger.open_orders(symbol):
        if other.order_id == except_id or not (other.reduce_only or other.close_position):
            continue
        if reducible_qty(ledger, symbol, other.side) == 0:
            finish_order(ledger, other, "EXPIRED", now_ms, reason="4")


def finish_order(ledger: Ledger, order: Order, status: str, now_ms: int, reason: str = "0") -> None:
    """End an open order as CANCELED or EXPIRED: one ORDER_TRADE_UPDATE x=X=status."""
    order.status = status
    order.update_ms = now_ms
    order.expire_reason = reason
    emit_order(ledger, order, status, now_ms)
    _on_final(ledger, order, now_ms)


def _on_final(ledger: Ledger, order: Order, now_ms: int) -> None:
    """Finish the algo order whose child this is: ALGO_UPDATE FINISHED with ap / aq (§6.6)."""
    algo = ledger.algos.get(order.algo_id) if order.algo_id else None
    if algo is None or algo.status != "TRIGGERED":
        return
    algo.status = "FINISHED"
    algo.update_ms = now_ms
    ledger.emit(algo_update(algo, ledger.spec(algo.symbol), order, now_ms))


def match_resting(ledger: Ledger, now_ms: int) -> None:
    """Fill resting LIMIT orders the last price has traded through, as maker at their price."""
    last: dict[str, Decimal] = {}
    for order in ledger.open_orders():
        if order.type != "LIMIT" or not order.is_open:
            continue
        if order.symbol not in last:
            last[order.symbol] = ledger.market.last_price(order.symbol, now_ms)
        price = last[order.symbol]
        through = price < order.price if order.side == "BUY" else price > order.price
        if through:
            fill_order(ledger, order, order.price, is_maker=True, now_ms=now_ms)
