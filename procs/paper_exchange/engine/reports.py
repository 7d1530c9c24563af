"""Read-only account endpoints: account, balance, positionRisk (v2, v3), userTrades, income.

Shapes and key order follow BINANCE-API.md §5.6-5.8, §5.17, §5.18 and the real captures in
tests/fixtures/binance/ (ccxt-extracted account v2/v3, positionRisk v3, userTrades). v2 lists every
symbol; v3 only symbols with a position or open orders (§5.6, §5.8).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from procs.paper_exchange.engine import params as p
from procs.paper_exchange.engine.accounts import AccountRisk, PositionRisk, break_even_price
from procs.paper_exchange.engine.ledger import Income, Ledger, Trade
from procs.paper_exchange.engine.specs import (
    ZERO,
    fmt_derived_price,
    fmt_money,
    fmt_money_or_zero,
    fmt_plain,
    fmt_price,
    fmt_qty,
    fmt_quote,
)

WEEK_MS = 7 * 24 * 3600 * 1000


def _update_ms(ledger: Ledger) -> int:
    # Every balance change writes an income row, so the latest row dates the balance.
    return ledger.incomes[-1].time_ms if ledger.incomes else 0


def _totals(risk: AccountRisk) -> dict[str, Any]:
    return {
        "totalInitialMargin": fmt_money(risk.initial_margin),
        "totalMaintMargin": fmt_money(risk.maint_margin),
        "totalWalletBalance": fmt_money(risk.wallet),
        "totalUnrealizedProfit": fmt_money(risk.total_unrealized),
        "totalMarginBalance": fmt_money(risk.margin_balance),
        "totalPositionInitialMargin": fmt_money(risk.position_im),
        "totalOpenOrderInitialMargin": fmt_money(risk.open_order_im),
        "totalCrossWalletBalance": fmt_money(risk.cross_wallet),
        "totalCrossUnPnl": fmt_money(risk.cross_unrealized),
        "availableBalance": fmt_money(risk.available),
        "maxWithdrawAmount": fmt_money(risk.max_withdraw),
    }


def _asset(risk: AccountRisk, update_ms: int, *, is_v2: bool) -> dict[str, Any]:
    head = {
        "asset": "USDT",
        "walletBalance": fmt_money(risk.wallet),
        "unrealizedProfit": fmt_money(risk.total_unrealized),
        "marginBalance": fmt_money(risk.margin_balance),
        "maintMargin": fmt_money(risk.maint_margin),
        "initialMargin": fmt_money(risk.initial_margin),
        "positionInitialMargin": fmt_money(risk.position_im),
        "openOrderInitialMargin": fmt_money(risk.open_order_im),
    }
    if is_v2:
        # v2 puts maxWithdrawAmount before the cross fields and adds marginAvailable (§5.6).
        return {
            **head,
            "maxWithdrawAmount": fmt_money(risk.max_withdraw),
            "crossWalletBalance": fmt_money(risk.cross_wallet),
            "crossUnPnl": fmt_money(risk.cross_unrealized),
            "availableBalance": fmt_money(risk.available),
            "marginAvailable": True,
            "updateTime": update_ms,
        }
    return {
        **head,
        "crossWalletBalance": fmt_money(risk.cross_wallet),
        "crossUnPnl": fmt_money(risk.cross_unrealized),
        "availableBalance": fmt_money(risk.available),
        "maxWithdrawAmount": fmt_money(risk.max_withdraw),
        "updateTime": update_ms,
    }


def _amount(ledger: Ledger, row: PositionRisk) -> str:
    amount = row.position.amount
    return fmt_qty(ledger.spec(row.symbol), amount) if amount else "0"


def _entry(row: PositionRisk) -> str:
    return fmt_derived_price(row.position.entry_price) if row.position.entry_price else "0.00000"


def _is_active(ledger: Ledger, row: PositionRisk) -> bool:
    return row.position.amount != 0 or bool(ledger.open_orders(row.symbol))


def _isolated_margin(row: PositionRisk) -> Decimal:
    # isolatedMargin is the isolated position's margin balance: wallet + unrealized PnL.
    return row.position.isolated_wallet + row.unrealized if row.settings.is_isolated else ZERO


def get_account(ledger: Ledger, params: p.Params, now_ms: int, *, is_v2: bool) -> dict[str, Any]:
    """GET /fapi/v2/account and /fapi/v3/account."""
    ledger.ensure_started(now_ms)
    risk = ledger.risk(now_ms)
    update_ms = _update_ms(ledger)
    reply: dict[str, Any] = {}
    if is_v2:
        reply.update(
            {
                "feeTier": 0,
                "canTrade": True,
                "canDeposit": True,
                "canWithdraw": True,
                "tradeGroupId": -1,
                "updateTime": 0,
                "multiAssetsMargin": False,
            }
        )
    reply.update(_totals(risk))
    reply["assets"] = [_asset(risk, update_ms, is_v2=is_v2)]
    if is_v2:
        reply["positions"] = [
            {
                "symbol": row.symbol,
                "initialMargin": fmt_money_or_zero(row.position_im + row.open_order_im),
                "maintMargin": fmt_money_or_zero(row.maint_margin),
                "unrealizedProfit": fmt_money(row.unrealized),
                "positionInitialMargin": fmt_money_or_zero(row.position_im),
                "openOrderInitialMargin": fmt_money_or_zero(row.open_order_im),
                "leverage": str(row.settings.leverage),
                "isolated": row.settings.is_isolated,
                "entryPrice": _entry(row),
                "maxNotional": fmt_plain(row.max_notional),
                "bidNotional": fmt_plain(row.orders.bid),
                "askNotional": fmt_plain(row.orders.ask),
                "positionSide": "BOTH",
                "positionAmt": _amount(ledger, row),
                "updateTime": row.position.update_ms,
            }
            for row in risk.positions.values()
        ]
    else:
        reply["positions"] = [
            {
                "symbol": row.symbol,
                "positionSide": "BOTH",
                "positionAmt": _amount(ledger, row),
                "unrealizedProfit": fmt_money(row.unrealized),
                "isolatedMargin": fmt_money_or_zero(_isolated_margin(row)),
                "notional": fmt_money_or_zero(row.notional),
                "isolatedWallet": fmt_money_or_zero(row.position.isolated_wallet),
                "initialMargin": fmt_money_or_zero(row.position_im + row.open_order_im),
                "maintMargin": fmt_money_or_zero(row.maint_margin),
                "updateTime": row.position.update_ms,
            }
            for row in risk.positions.values()
            if _is_active(ledger, row)
        ]
    return reply


def get_balance(ledger: Ledger, params: p.Params, now_ms: int) -> list[dict[str, Any]]:
    """GET /fapi/v2/balance and /fapi/v3/balance (same shape, §5.7)."""
    ledger.ensure_started(now_ms)
    risk = ledger.risk(now_ms)
    return [
        {
            "accountAlias": ledger.cfg.account_alias,
            "asset": "USDT",
            "balance": fmt_money(risk.wallet),
            "crossWalletBalance": fmt_money(risk.cross_wallet),
            "crossUnPnl": fmt_money(risk.cross_unrealized),
            "availableBalance": fmt_money(risk.available),
            "maxWithdrawAmount": fmt_money(risk.max_withdraw),
            "marginAvailable": True,
            "updateTime": _update_ms(ledger),
        }
    ]


def get_position_risk(
    ledger: Ledger, params: p.Params, now_ms: int, *, is_v2: bool
) -> list[dict[str, Any]]:
    """GET /fapi/v2/positionRisk (every symbol) and /fapi/v3/positionRisk (active symbols)."""
    ledger.ensure_started(now_ms)
    symbol = p.text(params, "symbol")
    if symbol is not None:
        ledger.spec(symbol)
    risk = ledger.risk(now_ms)
    rows = [r for r in risk.positions.values() if symbol is None or r.symbol == symbol]
    if is_v2:
        return [_position_risk_v2(ledger, r) for r in rows]
    return [_position_risk_v3(ledger, r) for r in rows if _is_active(ledger, r)]


def _break_even(ledger: Ledger, row: PositionRisk) -> Decimal:
    return break_even_price(row.position, ledger.cfg.taker_fee_rate)


def _position_risk_v2(ledger: Ledger, row: PositionRisk) -> dict[str, Any]:
    spec = ledger.spec(row.symbol)
    break_even = _break_even(ledger, row)
    return {
        "entryPrice": _entry(row),
        "breakEvenPrice": fmt_derived_price(break_even) if break_even else "0.0",
        "marginType": "isolated" if row.settings.is_isolated else "cross",
        "isAutoAddMargin": "false",
        "isolatedMargin": fmt_money(_isolated_margin(row)),
        "leverage": str(row.settings.leverage),
        "liquidationPrice": fmt_money_or_zero(row.liquidation_price),
        "markPrice": fmt_money(row.mark),
        "maxNotionalValue": fmt_plain(row.max_notional),
        "positionAmt": fmt_qty(spec, row.position.amount),
        "notional": fmt_money_or_zero(row.notional),
        "isolatedWallet": fmt_money_or_zero(row.position.isolated_wallet),
        "symbol": row.symbol,
        "unRealizedProfit": fmt_money(row.unrealized),
        "positionSide": "BOTH",
        "updateTime": row.position.update_ms,
    }


def _position_risk_v3(ledger: Ledger, row: PositionRisk) -> dict[str, Any]:
    spec = ledger.spec(row.symbol)
    break_even = _break_even(ledger, row)
    return {
        "symbol": row.symbol,
        "positionSide": "BOTH",
        "positionAmt": fmt_qty(spec, row.position.amount),
        "entryPrice": _entry(row),
        "breakEvenPrice": fmt_derived_price(break_even) if break_even else "0.0",
        "markPrice": fmt_money(row.mark),
        "unRealizedProfit": fmt_money(row.unrealized),
        "liquidationPrice": fmt_money_or_zero(row.liquidation_price),
        "isolatedMargin": fmt_money_or_zero(_isolated_margin(row)),
        "notional": fmt_money_or_zero(row.notional),
        "marginAsset": "USDT",
        "isolatedWallet": fmt_money_or_zero(row.position.isolated_wallet),
        "initialMargin": fmt_money_or_zero(row.position_im + row.open_order_im),
        "maintMargin": fmt_money_or_zero(row.maint_margin),
        "positionInitialMargin": fmt_money_or_zero(row.position_im),
        "openOrderInitialMargin": fmt_money_or_zero(row.open_order_im),
        "adl": 0,  # auto-deleveraging is not simulated
        "bidNotional": fmt_plain(row.orders.bid),
        "askNotional": fmt_plain(row.orders.ask),
        "updateTime": row.position.update_ms,
    }


def _window(params: p.Params, now_ms: int) -> tuple[int, int]:
    """Return [start, end] from startTime/endTime; 7 days when one or both are missing."""
    start = p.integer(params, "startTime")
    end = p.integer(params, "endTime")
    if start is None and end is None:
        return now_ms - WEEK_MS, now_ms
    if start is None:
        assert end is not None
        return end - WEEK_MS, end
    return start, end if end is not None else start + WEEK_MS


def _trade_row(ledger: Ledger, trade: Trade) -> dict[str, Any]:
    spec = ledger.spec(trade.symbol)
    return {
        "symbol": trade.symbol,
        "id": trade.trade_id,
        "orderId": trade.order_id,
        "side": trade.side,
        "price": fmt_price(spec, trade.price),
        "qty": fmt_qty(spec, trade.qty),
        "realizedPnl": fmt_money_or_zero(trade.realized_pnl),
        "marginAsset": "USDT",
        "quoteQty": fmt_quote(spec, trade.qty * trade.price),
        "commission": fmt_money(trade.commission),
        "commissionAsset": "USDT",
        "time": trade.time_ms,
        "positionSide": "BOTH",
        "buyer": trade.side == "BUY",
        "maker": trade.is_maker,
    }


def get_user_trades(ledger: Ledger, params: p.Params, now_ms: int) -> list[dict[str, Any]]:
    """GET /fapi/v1/userTrades: one symbol; fromId, orderId or a time window (7 days default)."""
    ledger.ensure_started(now_ms)
    symbol = p.required(params, "symbol")
    ledger.spec(symbol)
    order_id = p.integer(params, "orderId")
    from_id = p.integer(params, "fromId")
    count = p.limit(params, 500, 1000)
    rows = [t for t in ledger.trades if t.symbol == symbol]
    if order_id is not None:
        rows = [t for t in rows if t.order_id == order_id]
    elif from_id is not None:
        rows = [t for t in rows if t.trade_id >= from_id][:count]
    else:
        start, end = _window(params, now_ms)
        rows = [t for t in rows if start <= t.time_ms <= end]
    return [_trade_row(ledger, t) for t in rows[-count:]]


def _income_row(income: Income) -> dict[str, Any]:
    return {
        "symbol": income.symbol,
        "incomeType": income.income_type,
        "income": fmt_money(income.amount),
        "asset": "USDT",
        "info": income.income_type,
        "time": income.time_ms,
        "tranId": income.tran_id,
        "tradeId": income.trade_id,
    }


def get_income(ledger: Ledger, params: p.Params, now_ms: int) -> list[dict[str, Any]]:
    """GET /fapi/v1/income: oldest first within the window (7 days default), paged by `limit`."""
    ledger.ensure_started(now_ms)
    symbol = p.text(params, "symbol")
    if symbol is not None:
        ledger.spec(symbol)
    income_type = p.text(params, "incomeType")
    start, end = _window(params, now_ms)
    count = p.limit(params, 100, 1000)
    page = max(1, p.integer(params, "page") or 1)
    rows = [
        i
        for i in ledger.incomes
        if (symbol is None or i.symbol == symbol)
        and (income_type is None or i.income_type == income_type)
        and start <= i.time_ms <= end
    ]
    return [_income_row(i) for i in rows[(page - 1) * count : page * count]]
