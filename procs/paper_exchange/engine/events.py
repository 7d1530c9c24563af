"""User-data events in Binance's wire shape (BINANCE-API.md §6.4-6.8).

Key order and JSON types follow the captured fixtures in tests/fixtures/binance/: the real
ALGO_UPDATE and TRADE_LITE captures, and the docs-derived ORDER_TRADE_UPDATE / ACCOUNT_UPDATE
examples (`e`, `T`, `E` first), plus the `pm`, `gtd`, `er` keys §6.5 lists after `V`.
Event numbers are written the way those payloads write them: "0" for a zero price or quantity,
otherwise the symbol's precision; commissions, balances and PnL with 8 decimals.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from procs.paper_exchange.engine.accounts import Position
from procs.paper_exchange.engine.orders import AlgoOrder, Order
from procs.paper_exchange.engine.specs import (
    SymbolSpec,
    fmt_derived_price,
    fmt_money,
    fmt_money_or_zero,
    fmt_plain,
    fmt_price,
    fmt_qty,
)


@dataclass(frozen=True)
class Execution:
    """One fill of an order, as ORDER_TRADE_UPDATE and TRADE_LITE report it."""

    trade_id: int
    qty: Decimal
    price: Decimal
    commission: Decimal
    realized_pnl: Decimal
    is_maker: bool


def _price(spec: SymbolSpec, value: Decimal) -> str:
    return "0" if value == 0 else fmt_price(spec, value)


def _qty(spec: SymbolSpec, value: Decimal) -> str:
    return "0" if value == 0 else fmt_qty(spec, value)


def order_trade_update(
    order: Order,
    spec: SymbolSpec,
    *,
    exec_type: str,
    now_ms: int,
    fill: Execution | None,
    bid_notional: Decimal,
    ask_notional: Decimal,
) -> dict[str, Any]:
    """Return ORDER_TRADE_UPDATE for `order` after `exec_type` (NEW, TRADE, CANCELED, ...).

    `N`/`n` are present only when the event carries a commission (§6.5, §11.13).
    """
    body: dict[str, Any] = {
        "s": order.symbol,
        "c": order.client_order_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force,
        "q": _qty(spec, order.orig_qty),
        "p": _price(spec, order.price),
        "ap": _price(spec, order.avg_price),
        "sp": _price(spec, order.stop_price),
        "x": exec_type,
        "X": order.status,
        "i": order.order_id,
        "l": _qty(spec, fill.qty) if fill else "0",
        "z": _qty(spec, order.executed_qty),
        "L": _price(spec, fill.price) if fill else "0",
    }
    if fill is not None and fill.commission != 0:
        body["N"] = "USDT"
        body["n"] = fmt_money(fill.commission)
    body.update(
        {
            "T": now_ms,
            "t": fill.trade_id if fill else 0,
            "b": fmt_plain(bid_notional),
            "a": fmt_plain(ask_notional),
            "m": fill.is_maker if fill else False,
            "R": order.reduce_only,
            "wt": order.working_type,
            "ot": order.orig_type,
            "ps": "BOTH",
            "cp": order.close_position,
            "AP": _price(spec, order.activate_price),
            "cr": f"{order.callback_rate:f}" if order.callback_rate else "0",
            "pP": order.price_protect,
            "si": 0,
            "ss": 0,
            "rp": fmt_money_or_zero(fill.realized_pnl) if fill else "0",
            "V": order.stp_mode,
            "pm": "NONE",
            "gtd": 0,
            "er": order.expire_reason,
        }
    )
    return {"e": "ORDER_TRADE_UPDATE", "T": now_ms, "E": now_ms, "o": body}


def trade_lite(order: Order, spec: SymbolSpec, fill: Execution, now_ms: int) -> dict[str, Any]:
    """Return TRADE_LITE for one fill (§6.7; sent only for x=TRADE)."""
    return {
        "e": "TRADE_LITE",
        "E": now_ms,
        "T": now_ms,
        "s": order.symbol,
        "q": _qty(spec, order.orig_qty),
        "p": _price(spec, order.price),
        "m": fill.is_maker,
        "c": order.client_order_id,
        "S": order.side,
        "L": _price(spec, fill.price),
        "l": _qty(spec, fill.qty),
        "t": fill.trade_id,
        "i": order.order_id,
    }


@dataclass(frozen=True)
class BalanceChange:
    """The USDT row of ACCOUNT_UPDATE `B`."""

    wallet: Decimal
    cross_wallet: Decimal
    change: Decimal  # balance change except PnL and commission (`bc`)


def position_row(
    position: Position, *, is_isolated: bool, unrealized: Decimal, break_even: Decimal
) -> dict[str, Any]:
    """Return one ACCOUNT_UPDATE `P` row; a closed position has `pa` "0" (§6.4)."""
    return {
        "s": position.symbol,
        "pa": fmt_plain(position.amount),
        "ep": fmt_derived_price(position.entry_price) if position.entry_price else "0.00000",
        "bep": fmt_derived_price(break_even),
        "cr": fmt_money_or_zero(position.realized_total),
        "up": fmt_money_or_zero(unrealized),
        "mt": "isolated" if is_isolated else "cross",
        "iw": fmt_money(position.isolated_wallet),
        "ps": "BOTH",
    }


def account_update(
    reason: str,
    balance: BalanceChange | None,
    positions: list[dict[str, Any]],
    now_ms: int,
) -> dict[str, Any]:
    """Return ACCOUNT_UPDATE with reason `m`, the changed balance and the changed positions."""
    balances = (
        [
            {
                "a": "USDT",
                "wb": fmt_money(balance.wallet),
                "cw": fmt_money(balance.cross_wallet),
                "bc": fmt_money_or_zero(balance.change),
            }
        ]
        if balance is not None
        else []
    )
    return {
        "e": "ACCOUNT_UPDATE",
        "T": now_ms,
        "E": now_ms,
        "a": {"m": reason, "B": balances, "P": positions},
    }


def algo_update(
    algo: AlgoOrder, spec: SymbolSpec, child: Order | None, now_ms: int
) -> dict[str, Any]:
    """Return ALGO_UPDATE for the algo order's current status (§6.6, real Dec 2025 captures).

    TRIGGERING carries no `ap`/`aq`/`act`; TRIGGERED and FINISHED carry the child's fills and
    type; the other statuses carry them as "0" (docs example). `rm` appears with a failure
    reason, `ia` on trailing orders.
    """
    body: dict[str, Any] = {
        "caid": algo.client_algo_id,
        "aid": algo.algo_id,
        "at": "CONDITIONAL",
        "o": algo.order_type,
        "s": algo.symbol,
        "S": algo.side,
        "ps": "BOTH",
        "f": algo.time_in_force,
        "q": fmt_plain(algo.quantity),
        "X": algo.status,
        "ai": str(algo.actual_order_id) if algo.actual_order_id else "",
    }
    if algo.status in ("TRIGGERED", "FINISHED"):
        body["ap"] = fmt_plain(child.avg_price) if child is not None else "0"
        body["aq"] = fmt_plain(child.executed_qty) if child is not None else "0"
        body["act"] = algo.child_type
    elif algo.status != "TRIGGERING":
        body.update({"ap": "0", "aq": "0", "act": "0"})
    body.update(
        {
            "tp": fmt_plain(algo.trigger_price),
            "p": fmt_plain(algo.price),
            "V": algo.stp_mode,
            "wt": algo.working_type,
            "pm": "NONE",
            "cp": algo.close_position,
            "pP": algo.price_protect,
            "R": algo.reduce_only,
            "tt": algo.trigger_ms,
            "gtd": 0,
        }
    )
    if algo.fail_reason:
        body["rm"] = algo.fail_reason
    if algo.is_trailing:
        body["ia"] = algo.is_activated
    return {"e": "ALGO_UPDATE", "T": now_ms, "E": now_ms, "o": body}


def margin_call(
    cross_wallet: Decimal | None, rows: list[dict[str, Any]], now_ms: int
) -> dict[str, Any]:
    """Return MARGIN_CALL; `cw` only for a cross margin call (§6.8)."""
    event: dict[str, Any] = {"e": "MARGIN_CALL", "E": now_ms}
    if cross_wallet is not None:
        event["cw"] = fmt_money(cross_wallet)
    event["p"] = rows
    return event


def margin_call_row(
    position: Position,
    *,
    is_isolated: bool,
    mark: Decimal,
    unrealized: Decimal,
    maint: Decimal,
) -> dict[str, Any]:
    """Return one MARGIN_CALL `p` row (`mt` upper-case CROSSED / ISOLATED, §4)."""
    return {
        "s": position.symbol,
        "ps": "BOTH",
        "pa": fmt_plain(position.amount),
        "mt": "ISOLATED" if is_isolated else "CROSSED",
        "iw": fmt_money(position.isolated_wallet),
        "mp": fmt_money(mark),
        "up": fmt_money(unrealized),
        "mm": fmt_money(maint),
    }


def leverage_update(symbol: str, leverage: int, now_ms: int) -> dict[str, Any]:
    """Return ACCOUNT_CONFIG_UPDATE `ac` after POST /fapi/v1/leverage (§6.8)."""
    return {
        "e": "ACCOUNT_CONFIG_UPDATE",
        "E": now_ms,
        "T": now_ms,
        "ac": {"s": symbol, "l": leverage},
    }
