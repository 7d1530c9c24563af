"""Account settings endpoints and the countdownCancelAll timers (BINANCE-API.md §5.13-5.16).

leverage (1..the first bracket's initialLeverage, -4028; -2027 when the open position exceeds the
new leverage's notional cap; -2028 when a cross position's extra margin is not available; -4161
when lowering an isolated position's leverage), marginType (-4046 unchanged, -4047 open orders,
-4048 position), positionSide/dual (-4059 unchanged, -4067 open orders, -4068 position; hedge
mode is held but not traded: every order in it is -4061), symbolConfig,
accountConfig, multiAssetsMargin, commissionRate, rateLimit/order, countdownCancelAll.

countdownCancelAll keeps one deadline per symbol; the engine tick cancels the symbol's open
regular orders when it passes (ORDER_TRADE_UPDATE CANCELED each), algo orders too only with
`EngineConfig.countdown_cancels_algo` (Binance does not document it, §5.16), never positions.
"""

from __future__ import annotations

from typing import Any

from procs.paper_exchange.engine import params as p
from procs.paper_exchange.engine.algo import cancel_algo
from procs.paper_exchange.engine.events import account_update, leverage_update
from procs.paper_exchange.engine.ledger import Ledger
from procs.paper_exchange.engine.specs import fmt_plain, max_leverage, max_notional
from procs.paper_exchange.engine.trading import cancel_all
from procs.paper_exchange.errors import (
    ApiError,
    invalid_leverage,
    invalid_value,
    missing_param,
    rejected,
)

SUCCESS = {"code": 200, "msg": "success"}


def post_leverage(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """POST /fapi/v1/leverage; emits ACCOUNT_CONFIG_UPDATE `ac`."""
    ledger.ensure_started(now_ms)
    symbol = p.required(params, "symbol")
    ledger.spec(symbol)
    raw = p.required(params, "leverage")
    leverage = p.required_integer(params, "leverage")
    brackets = ledger.brackets[symbol]
    if not 1 <= leverage <= max_leverage(brackets):
        raise invalid_leverage(raw)
    settings = ledger.settings[symbol]
    position = ledger.positions[symbol]
    if position.amount:
        notional = abs(position.amount) * ledger.market.mark_price(symbol, now_ms)
        if notional > max_notional(brackets, leverage):
            raise rejected(-2027)
        if settings.is_isolated and leverage < settings.leverage:
            raise ApiError(
                400,
                -4161,
                "Leverage reduction is not supported in Isolated Margin Mode with open positions",
            )
        extra = notional / leverage - notional / settings.leverage
        if not settings.is_isolated and extra > 0 and extra > ledger.risk(now_ms).available:
            raise rejected(-2028)
    settings.leverage = leverage
    ledger.emit(leverage_update(symbol, leverage, now_ms))
    return {
        "leverage": leverage,
        "maxNotionalValue": fmt_plain(max_notional(brackets, leverage)),
        "symbol": symbol,
    }


def post_margin_type(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """POST /fapi/v1/marginType (ISOLATED | CROSSED).

    Emits ACCOUNT_UPDATE m=MARGIN_TYPE_CHANGE with the symbol's (empty) position row; the
    digest marks this event unconfirmed (§5.14).
    """
    ledger.ensure_started(now_ms)
    symbol = p.required(params, "symbol")
    ledger.spec(symbol)
    margin_type = p.required(params, "marginType").upper()
    if margin_type not in ("ISOLATED", "CROSSED"):
        raise invalid_value("marginType")
    settings = ledger.settings[symbol]
    is_isolated = margin_type == "ISOLATED"
    if settings.is_isolated == is_isolated:
        raise rejected(-4046)
    if ledger.open_orders(symbol):
        raise rejected(-4047)
    if ledger.positions[symbol].amount:
        raise rejected(-4048)
    settings.is_isolated = is_isolated
    row = ledger.position_event_row(symbol, now_ms)
    ledger.emit(account_update("MARGIN_TYPE_CHANGE", None, [row], now_ms))
    return dict(SUCCESS)


def get_position_side(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """GET /fapi/v1/positionSide/dual: true in hedge mode, false in one-way mode."""
    ledger.ensure_started(now_ms)
    return {"dualSidePosition": ledger.is_dual_side}


def post_position_side(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """POST /fapi/v1/positionSide/dual: -4059 unchanged, -4067 with open orders (regular or
    algo), -4068 with a position."""
    ledger.ensure_started(now_ms)
    if p.text(params, "dualSidePosition") is None:
        raise missing_param("dualSidePosition")
    is_dual_side = p.boolean(params, "dualSidePosition")
    if is_dual_side == ledger.is_dual_side:
        raise rejected(-4059)
    if ledger.open_orders() or ledger.open_algos():
        raise rejected(-4067)
    if any(position.amount for position in ledger.positions.values()):
        raise rejected(-4068)
    ledger.is_dual_side = is_dual_side
    return dict(SUCCESS)


def get_symbol_config(ledger: Ledger, params: p.Params, now_ms: int) -> list[dict[str, Any]]:
    """GET /fapi/v1/symbolConfig (symbol optional)."""
    ledger.ensure_started(now_ms)
    symbol = p.text(params, "symbol")
    if symbol is not None:
        ledger.spec(symbol)
    return [
        {
            "symbol": s.symbol,
            "marginType": "ISOLATED" if s.is_isolated else "CROSSED",
            "isAutoAddMargin": False,
            "leverage": s.leverage,
            "maxNotionalValue": fmt_plain(max_notional(ledger.brackets[s.symbol], s.leverage)),
        }
        for s in ledger.settings.values()
        if symbol is None or s.symbol == symbol
    ]


def get_account_config(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """GET /fapi/v1/accountConfig (§5.6)."""
    ledger.ensure_started(now_ms)
    return {
        "feeTier": 0,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "dualSidePosition": ledger.is_dual_side,
        "updateTime": 0,
        "multiAssetsMargin": False,
        "tradeGroupId": -1,
    }


def get_multi_assets_margin(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """GET /fapi/v1/multiAssetsMargin: single-asset mode."""
    ledger.ensure_started(now_ms)
    return {"multiAssetsMargin": False}


def get_commission_rate(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """GET /fapi/v1/commissionRate (symbol required)."""
    ledger.ensure_started(now_ms)
    symbol = p.required(params, "symbol")
    ledger.spec(symbol)
    return {
        "symbol": symbol,
        "makerCommissionRate": fmt_plain(ledger.cfg.maker_fee_rate),
        "takerCommissionRate": fmt_plain(ledger.cfg.taker_fee_rate),
        "rpiCommissionRate": fmt_plain(ledger.cfg.rpi_fee_rate),
    }


def get_order_rate_limit(ledger: Ledger, params: p.Params, now_ms: int) -> list[dict[str, Any]]:
    """GET /fapi/v1/rateLimit/order: the ORDERS limits from the config."""
    ledger.ensure_started(now_ms)
    return [
        {
            "rateLimitType": "ORDERS",
            "interval": "SECOND",
            "intervalNum": 10,
            "limit": ledger.cfg.order_limit_10s,
        },
        {
            "rateLimitType": "ORDERS",
            "interval": "MINUTE",
            "intervalNum": 1,
            "limit": ledger.cfg.order_limit_1m,
        },
    ]


def post_countdown_cancel_all(ledger: Ledger, params: p.Params, now_ms: int) -> dict[str, Any]:
    """POST /fapi/v1/countdownCancelAll: (re)arm the symbol's timer; 0 disarms it."""
    ledger.ensure_started(now_ms)
    symbol = p.required(params, "symbol")
    ledger.spec(symbol)
    countdown_ms = p.required_integer(params, "countdownTime")
    if countdown_ms < 0:
        raise invalid_value("countdownTime")
    if countdown_ms == 0:
        ledger.countdowns.pop(symbol, None)
    else:
        ledger.countdowns[symbol] = now_ms + countdown_ms
    # countdownTime is a string in the reply (§4).
    return {"symbol": symbol, "countdownTime": str(countdown_ms)}


def run_countdowns(ledger: Ledger, now_ms: int) -> None:
    """Cancel the open orders of every symbol whose countdown has passed (engine tick)."""
    for symbol, deadline in sorted(ledger.countdowns.items()):
        if now_ms < deadline:
            continue
        del ledger.countdowns[symbol]
        cancel_all(ledger, symbol, now_ms)
        if ledger.cfg.countdown_cancels_algo:
            for algo in ledger.open_algos(symbol):
                cancel_algo(ledger, algo, now_ms)
