"""Funding, margin calls and liquidation, run by the engine tick (BINANCE-API.md §6.4, §6.8).

Funding: at every funding time the tick passes (00:00, 08:00, 16:00 UTC, as `next_funding_ms`
of the market says), each open position pays FUNDING_FEE = -positionAmt x mark x rate (a long
pays a positive rate), rounded to 8 decimals, at that time's mark and rate. It settles in the
wallet (and the isolated wallet of an isolated position), writes an income row, and pushes
ACCOUNT_UPDATE m=FUNDING_FEE: only `B` for a cross position, `B` and that `P` for an isolated
one (§6.4).

Liquidation: a cross account whose cross margin balance (cross wallet + cross unrealized PnL)
falls below the cross maintenance margin has every cross position closed; an isolated position
whose isolated wallet + unrealized PnL falls below its maintenance margin is closed alone. First
the symbol's open orders are canceled, then a LIMIT IOC reduce-only order `autoclose-<orderId>`
fills at the mark price (rounded against the account) as taker, reported as
ORDER_TRADE_UPDATE x=CALCULATED (fixture rs_user_data_json_order_update_calculated.json), and
the clearance fee (liquidationFee of the symbol, or the config's rate) x notional goes to the
insurance fund, which also absorbs any loss beyond the liquidated margin (INSURANCE_CLEAR).

Margin call: once per episode, when maintenance margin / margin balance reaches
`margin_call_ratio` (cross: the cross totals, isolated: per symbol), MARGIN_CALL lists the
positions concerned; the flag clears when the ratio drops back below.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from procs.paper_exchange.engine.accounts import AccountRisk, PositionRisk
from procs.paper_exchange.engine.events import account_update, margin_call, margin_call_row
from procs.paper_exchange.engine.ledger import Ledger
from procs.paper_exchange.engine.matching import (
    OrderRequest,
    Plan,
    fill_order,
    finish_order,
    record_order,
)
from procs.paper_exchange.engine.specs import EIGHT_PLACES, round_to_tick

FUNDING_INTERVAL_MS = 8 * 3600 * 1000


def _next_funding(ledger: Ledger, after_ms: int) -> int:
    """Return the first funding time strictly after `after_ms`."""
    candidate = ledger.market.next_funding_ms(after_ms)
    if candidate > after_ms:
        return candidate
    # A market that answers "now" at a boundary would loop forever; fall back to the 8 h grid.
    return (after_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS


def settle_funding(ledger: Ledger, since_ms: int, now_ms: int) -> None:
    """Charge or pay funding for every funding time in (since_ms, now_ms]."""
    funding_ms = _next_funding(ledger, since_ms)
    while funding_ms <= now_ms:
        for symbol, position in ledger.positions.items():
            if position.amount:
                _pay_funding(ledger, symbol, funding_ms)
        funding_ms = _next_funding(ledger, funding_ms)


def _pay_funding(ledger: Ledger, symbol: str, funding_ms: int) -> None:
    position = ledger.positions[symbol]
    mark = ledger.market.mark_price(symbol, funding_ms)
    rate = ledger.market.funding_rate(symbol, funding_ms)
    fee = (-position.amount * mark * rate).quantize(EIGHT_PLACES, rounding=ROUND_HALF_UP)
    if fee == 0:
        return
    is_isolated = ledger.settings[symbol].is_isolated
    ledger.wallet += fee
    if is_isolated:
        position.isolated_wallet += fee
    ledger.add_income(symbol, "FUNDING_FEE", fee, funding_ms)
    rows = [ledger.position_event_row(symbol, funding_ms)] if is_isolated else []
    ledger.emit(account_update("FUNDING_FEE", ledger.balance_change(fee), rows, funding_ms))


def _is_isolated_failing(row: PositionRisk) -> bool:
    return row.position.isolated_wallet + row.unrealized < row.maint_margin


def check_margins(ledger: Ledger, now_ms: int) -> None:
    """Liquidate what falls below maintenance margin, then send due margin calls."""
    risk = ledger.risk(now_ms)
    failing = [
        row.symbol
        for row in risk.positions.values()
        if row.position.amount and row.settings.is_isolated and _is_isolated_failing(row)
    ]
    cross = [r for r in risk.positions.values() if r.position.amount and not r.settings.is_isolated]
    if cross and risk.cross_margin_balance < risk.cross_maint_margin:
        failing += [row.symbol for row in cross]
    for symbol in failing:
        liquidate(ledger, symbol, now_ms)
    if failing:
        risk = ledger.risk(now_ms)
    _margin_calls(ledger, risk, now_ms)


def liquidate(ledger: Ledger, symbol: str, now_ms: int) -> None:
    """Close the symbol's position with an `autoclose-` order at mark (module docstring)."""
    for order in ledger.open_orders(symbol):
        finish_order(ledger, order, "CANCELED", now_ms)
    position = ledger.positions[symbol]
    if position.amount == 0:
        return
    spec = ledger.spec(symbol)
    side = "SELL" if position.amount > 0 else "BUY"
    mark = ledger.market.mark_price(symbol, now_ms)
    price = round_to_tick(spec, mark, up=side == "BUY")
    request = OrderRequest(
        symbol=symbol,
        side=side,
        type="LIMIT",
        time_in_force="IOC",
        qty=abs(position.amount),
        price=price,
        reduce_only=True,
        client_order_id=None,
    )
    order_id = ledger.new_order_id()
    order = record_order(ledger, Plan(request, order_id, f"autoclose-{order_id}", price), now_ms)
    order.is_liquidation = True
    rate = ledger.cfg.liquidation_fee_rate
    fill_order(
        ledger,
        order,
        price,
        is_maker=False,
        now_ms=now_ms,
        exec_type="CALCULATED",
        clearance_fee_rate=rate if rate is not None else spec.liquidation_fee,
    )
    ledger.margin_calls.discard("CROSS")
    ledger.margin_calls.discard(symbol)


def _margin_calls(ledger: Ledger, risk: AccountRisk, now_ms: int) -> None:
    ratio = ledger.cfg.margin_call_ratio
    cross = [r for r in risk.positions.values() if r.position.amount and not r.settings.is_isolated]
    balance = risk.cross_margin_balance
    is_due = bool(cross) and (balance <= 0 or risk.cross_maint_margin / balance >= ratio)
    _flag(ledger, "CROSS", is_due, risk.cross_wallet, cross, now_ms)
    for row in risk.positions.values():
        if not row.settings.is_isolated:
            continue
        balance = row.position.isolated_wallet + row.unrealized
        is_due = bool(row.position.amount) and (balance <= 0 or row.maint_margin / balance >= ratio)
        _flag(ledger, row.symbol, is_due, None, [row], now_ms)


def _flag(
    ledger: Ledger,
    key: str,
    is_due: bool,
    cross_wallet: Decimal | None,
    rows: list[PositionRisk],
    now_ms: int,
) -> None:
    if not is_due:
        ledger.margin_calls.discard(key)
        return
    if key in ledger.margin_calls:
        return
    ledger.margin_calls.add(key)
    entries = [
        margin_call_row(
            r.position,
            is_isolated=r.settings.is_isolated,
            mark=r.mark,
            unrealized=r.unrealized,
            maint=r.maint_margin,
        )
        for r in rows
    ]
    ledger.emit(margin_call(cross_wallet, entries, now_ms))
