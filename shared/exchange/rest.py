"""`ExchangeClient`: the typed async REST client for Binance USDT-M futures (and the paper
exchange, which speaks the same protocol; only the base URL and credentials differ).

    async with ExchangeClient(cfg.exchange, cache, is_guard=True) as client:
        positions = await client.position_risk()

Each method names its endpoint (BINANCE-API.md §5-§6), returns readable structs from
`shared.schemas.binance` (Decimal prices and quantities) and raises the errors of
`shared.exchange.errors`. Conditional orders go to the algo service (`new_algo_order`, §0.1).
Order placements are never re-sent blindly: on `ExecutionUnknownError`, call
`fetch_order_by_client_id` / `fetch_algo_order_by_client_id` with the same deterministic client
id (`shared.core.ids`) to learn whether the order exists before placing it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from types import TracebackType
from typing import TypeVar

import msgspec
import numpy

from shared import log
from shared.cache import Cache
from shared.config import ExchangeConfig
from shared.exchange.errors import (
    ExchangeError,
    ExecutionUnknownError,
    ProtocolError,
    RejectedError,
    TransientError,
    UnknownOrderError,
)
from shared.exchange.ratelimit import BudgetSettings, WeightBudget
from shared.exchange.transport import NONE, SIGNED, USER_STREAM, Endpoint, Params, Transport
from shared.schemas import binance as b

T = TypeVar("T")

_MARGIN_TYPE_UNCHANGED = -4046  # "No need to change margin type." (§5.14): already as asked


def _ep(method: str, path: str, security: str = SIGNED, is_idempotent: bool = True) -> Endpoint:
    return Endpoint(method, path, security, is_idempotent)


EXCHANGE_INFO = _ep("GET", "/fapi/v1/exchangeInfo", NONE)
KLINES = _ep("GET", "/fapi/v1/klines", NONE)
PREMIUM_INDEX = _ep("GET", "/fapi/v1/premiumIndex", NONE)
ACCOUNT = _ep("GET", "/fapi/v3/account")
POSITION_RISK = _ep("GET", "/fapi/v3/positionRisk")
ORDER_GET = _ep("GET", "/fapi/v1/order")
ORDER_NEW = _ep("POST", "/fapi/v1/order", is_idempotent=False)
ORDER_CANCEL = _ep("DELETE", "/fapi/v1/order")
OPEN_ORDERS = _ep("GET", "/fapi/v1/openOrders")
ALL_OPEN_ORDERS_CANCEL = _ep("DELETE", "/fapi/v1/allOpenOrders")
ALGO_GET = _ep("GET", "/fapi/v1/algoOrder")
ALGO_NEW = _ep("POST", "/fapi/v1/algoOrder", is_idempotent=False)
ALGO_CANCEL = _ep("DELETE", "/fapi/v1/algoOrder")
OPEN_ALGO_ORDERS = _ep("GET", "/fapi/v1/openAlgoOrders")
ALGO_OPEN_ORDERS_CANCEL = _ep("DELETE", "/fapi/v1/algoOpenOrders")
LEVERAGE = _ep("POST", "/fapi/v1/leverage")  # sets a value: repeating it is harmless
MARGIN_TYPE = _ep("POST", "/fapi/v1/marginType")
LEVERAGE_BRACKET = _ep("GET", "/fapi/v1/leverageBracket")
POSITION_MODE = _ep("GET", "/fapi/v1/positionSide/dual")
USER_TRADES = _ep("GET", "/fapi/v1/userTrades")
INCOME = _ep("GET", "/fapi/v1/income")
COUNTDOWN = _ep("POST", "/fapi/v1/countdownCancelAll")  # replaces the timer: idempotent
LISTEN_KEY_NEW = _ep("POST", "/fapi/v1/listenKey", USER_STREAM)  # returns the active key
LISTEN_KEY_KEEPALIVE = _ep("PUT", "/fapi/v1/listenKey", USER_STREAM)
LISTEN_KEY_CLOSE = _ep("DELETE", "/fapi/v1/listenKey", USER_STREAM)


def _num(value: Decimal) -> str:
    """Format a Decimal as Binance expects: plain notation, never an exponent."""
    return f"{value:f}"


def _opt(params: Params, name: str, value: object) -> None:
    if value is not None:
        params.append((name, _num(value) if isinstance(value, Decimal) else str(value)))


class ExchangeClient:
    """Typed REST client; an async context manager owning its HTTP session."""

    def __init__(
        self,
        cfg: ExchangeConfig,
        cache: Cache | None = None,
        *,
        is_guard: bool = False,
        rng: numpy.random.Generator | None = None,
        logger: log.EventLogger | None = None,
    ) -> None:
        self._log = logger or log.get()
        settings = BudgetSettings(
            limit_1m=cfg.weight_limit_1m,
            reserved_share=cfg.guard_reserved_share,
            expected_processes=cfg.expected_processes,
            is_guard=is_guard,
            max_wait_s=cfg.rate_limit_max_wait_s,
            redis_retry_s=cfg.budget_redis_retry_s,
        )
        self.budget = WeightBudget(settings, cache, self._log)
        self.transport = Transport(cfg, self.budget, rng or numpy.random.default_rng(), self._log)

    async def __aenter__(self) -> ExchangeClient:
        """Open the session and sync the server-time offset.

        An unreachable exchange is logged and tolerated (signed calls sync first); a fatal
        reply (a wrong URL: 404) closes the session and raises FatalError.
        """
        await self.transport.open()
        try:
            await self.transport.sync_time()
        except TransientError as e:  # start anyway: signed calls retry the sync first
            self.transport.warn_time_sync_failed(e)
        except BaseException:
            await self.transport.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.transport.close()

    async def _get(
        self, endpoint: Endpoint, params: Params, decode: Callable[[bytes], T], client_id: str = ""
    ) -> T:
        body = await self.transport.call(endpoint, params, client_id)
        try:
            return decode(body)
        except msgspec.DecodeError as e:  # ValidationError included; the message has the path
            what = f"{endpoint.method} {endpoint.path} reply does not match the schema: {e}"
            if not endpoint.is_idempotent:  # it executed, but we cannot tell how: reconcile
                raise ExecutionUnknownError(
                    what,
                    client_id=client_id,
                    http_status=200,
                    may_have_executed=True,
                    method=endpoint.method,
                    path=endpoint.path,
                ) from e
            raise ProtocolError(what, method=endpoint.method, path=endpoint.path) from e

    # ---- market data ----------------------------------------------------------------------------

    async def exchange_info(self) -> b.ExchangeInfo:
        """Return symbols, filters and rate limits (`GET /fapi/v1/exchangeInfo`, weight 1)."""
        return await self._get(EXCHANGE_INFO, [], b.decode_exchange_info)

    async def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> list[b.Kline]:
        """Return klines, oldest first; the last one may still be open (`is_closed`).

        Weight 1/2/5/10 for limit < 100 / < 500 / <= 1000 / > 1000 (default 500, max 1500).
        """
        params: Params = [("symbol", symbol), ("interval", interval)]
        _opt(params, "startTime", start_ms)
        _opt(params, "endTime", end_ms)
        _opt(params, "limit", limit)
        rows = await self._get(KLINES, params, b.decode_kline_rows)
        return b.to_klines(rows, symbol, interval, self.transport.server_now_ms())

    async def mark_prices(self, symbol: str | None = None) -> list[b.MarkPrice]:
        """Return mark price and funding of one symbol or all (`premiumIndex`, weight 1/10)."""
        if symbol is None:
            return await self._get(PREMIUM_INDEX, [], b.decode_mark_prices)
        return [await self._get(PREMIUM_INDEX, [("symbol", symbol)], b.decode_mark_price)]

    # ---- account --------------------------------------------------------------------------------

    async def account(self) -> b.Account:
        """Return balances and positions (`GET /fapi/v3/account`, weight 5)."""
        return await self._get(ACCOUNT, [], b.decode_account)

    async def position_risk(self, symbol: str | None = None) -> list[b.Position]:
        """Return open positions (v3 lists symbols with a position or orders; weight 5)."""
        params: Params = [("symbol", symbol)] if symbol else []
        return await self._get(POSITION_RISK, params, b.decode_positions)

    async def user_trades(
        self,
        symbol: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        from_id: int | None = None,
        limit: int | None = None,
    ) -> list[b.UserTrade]:
        """Return the account's fills of one symbol (window <= 7 days; weight 5)."""
        params: Params = [("symbol", symbol)]
        for name, value in (
            ("startTime", start_ms),
            ("endTime", end_ms),
            ("fromId", from_id),
            ("limit", limit),
        ):
            _opt(params, name, value)
        return await self._get(USER_TRADES, params, b.decode_user_trades)

    async def income(
        self,
        symbol: str | None = None,
        income_type: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> list[b.Income]:
        """Return income rows: REALIZED_PNL, FUNDING_FEE, COMMISSION, … (weight 30)."""
        params: Params = []
        pairs = (
            ("symbol", symbol),
            ("incomeType", income_type),
            ("startTime", start_ms),
            ("endTime", end_ms),
            ("limit", limit),
        )
        for name, value in pairs:
            _opt(params, name, value)
        return await self._get(INCOME, params, b.decode_income)

    async def set_leverage(self, symbol: str, leverage: int) -> b.Leverage:
        """Set the symbol's leverage (1-125); raises RejectedError -4028 when invalid."""
        params: Params = [("symbol", symbol), ("leverage", str(leverage))]
        return await self._get(LEVERAGE, params, b.decode_leverage)

    async def leverage_brackets(self, symbol: str) -> b.SymbolBrackets:
        """Return the symbol's leverage tiers (`GET /fapi/v1/leverageBracket`, weight 1)."""
        return await self._get(LEVERAGE_BRACKET, [("symbol", symbol)], b.decode_symbol_brackets)

    async def is_hedge_mode(self) -> bool:
        """Return whether the account is in hedge mode (`GET /fapi/v1/positionSide/dual`,
        weight 30); False means one-way mode."""
        return await self._get(POSITION_MODE, [], b.decode_is_hedge_mode)

    async def set_margin_type(self, symbol: str, margin_type: str) -> bool:
        """Set ISOLATED or CROSSED; return False when it already was (-4046 is success)."""
        params: Params = [("symbol", symbol), ("marginType", margin_type)]
        try:
            await self._get(MARGIN_TYPE, params, b.decode_code_reply)
        except RejectedError as e:
            if e.code == _MARGIN_TYPE_UNCHANGED:
                return False
            raise
        return True

    # ---- orders ---------------------------------------------------------------------------------

    async def new_order(
        self,
        symbol: str,
        side: str,
        order_type: str,
        quantity: Decimal,
        client_order_id: str,
        *,
        price: Decimal | None = None,
        time_in_force: str | None = None,
        is_reduce_only: bool = False,
        response_type: str = "RESULT",
    ) -> b.Order:
        """Place a MARKET or LIMIT order (`POST /fapi/v1/order`).

        RESULT returns a MARKET order's final state. Raises RejectedError (e.g. -2019, -2022,
        -4164) or ExecutionUnknownError: then look the order up by `client_order_id`.
        """
        params: Params = [
            ("symbol", symbol),
            ("side", side),
            ("type", order_type),
            ("quantity", _num(quantity)),
        ]
        _opt(params, "price", price)
        _opt(params, "timeInForce", time_in_force or ("GTC" if order_type == "LIMIT" else None))
        if is_reduce_only:
            params.append(("reduceOnly", "true"))
        params += [("newClientOrderId", client_order_id), ("newOrderRespType", response_type)]
        return await self._get(ORDER_NEW, params, b.decode_order, client_order_id)

    async def new_algo_order(
        self,
        symbol: str,
        side: str,
        order_type: str,
        trigger_price: Decimal,
        client_algo_id: str,
        *,
        quantity: Decimal | None = None,
        is_close_position: bool = False,
        is_reduce_only: bool = False,
        working_type: str = "MARK_PRICE",
    ) -> b.AlgoOrder:
        """Place a conditional order (STOP_MARKET, TAKE_PROFIT_MARKET) in the algo service.

        Either `is_close_position` (closes the whole position; no quantity) or a `quantity`,
        usually with `is_reduce_only`. Raises RejectedError (-2021 would trigger at once) or
        ExecutionUnknownError: then look it up by `client_algo_id`.
        """
        if is_close_position == (quantity is not None):
            raise ValueError("new_algo_order: give either quantity or is_close_position")
        params: Params = [
            ("algoType", "CONDITIONAL"),
            ("symbol", symbol),
            ("side", side),
            ("type", order_type),
            ("triggerPrice", _num(trigger_price)),
            ("workingType", working_type),
        ]
        if is_close_position:
            params.append(("closePosition", "true"))
        else:
            _opt(params, "quantity", quantity)
            if is_reduce_only:
                params.append(("reduceOnly", "true"))
        params.append(("clientAlgoId", client_algo_id))
        return await self._get(ALGO_NEW, params, b.decode_algo_order, client_algo_id)

    async def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> b.Order | None:
        """Return the order with this client id (open or recently final), or None (-2013)."""
        params: Params = [("symbol", symbol), ("origClientOrderId", client_order_id)]
        try:
            return await self._get(ORDER_GET, params, b.decode_order)
        except UnknownOrderError:
            return None

    async def fetch_algo_order_by_client_id(self, client_algo_id: str) -> b.AlgoOrder | None:
        """Return the algo order with this client id, or None when the exchange has none."""
        try:
            return await self._get(
                ALGO_GET, [("clientAlgoId", client_algo_id)], b.decode_algo_order
            )
        except UnknownOrderError:
            return None

    async def open_orders(self, symbol: str | None = None) -> list[b.Order]:
        """Return open regular orders (weight 1 with a symbol, 40 without)."""
        params: Params = [("symbol", symbol)] if symbol else []
        return await self._get(OPEN_ORDERS, params, b.decode_orders)

    async def open_algo_orders(self, symbol: str | None = None) -> list[b.AlgoOrder]:
        """Return open conditional orders (weight 1 with a symbol, 40 without)."""
        params: Params = [("symbol", symbol)] if symbol else []
        return await self._get(OPEN_ALGO_ORDERS, params, b.decode_algo_orders)

    async def cancel_order(self, symbol: str, client_order_id: str) -> b.Order:
        """Cancel an order by client id; raises UnknownOrderError (-2011) if it is not open."""
        params: Params = [("symbol", symbol), ("origClientOrderId", client_order_id)]
        return await self._get(ORDER_CANCEL, params, b.decode_order)

    async def cancel_algo_order(self, client_algo_id: str) -> b.AlgoCancel:
        """Cancel a conditional order; raises UnknownOrderError (-2011) if it is not waiting."""
        return await self._get(
            ALGO_CANCEL, [("clientAlgoId", client_algo_id)], b.decode_algo_cancel
        )

    async def cancel_all_open_orders(self, symbol: str) -> None:
        """Cancel every open regular order of the symbol (not the algo orders, §5.11)."""
        await self._get(ALL_OPEN_ORDERS_CANCEL, [("symbol", symbol)], b.decode_code_reply)

    async def cancel_all_algo_orders(self, symbol: str) -> None:
        """Cancel every open conditional order of the symbol (`DELETE algoOpenOrders`)."""
        await self._get(ALGO_OPEN_ORDERS_CANCEL, [("symbol", symbol)], b.decode_code_reply)

    async def countdown_cancel_all(self, symbol: str, countdown_ms: int) -> b.Countdown:
        """Arm (or with 0, disarm) the symbol's cancel-all timer (weight 10; rule 21)."""
        params: Params = [("symbol", symbol), ("countdownTime", str(countdown_ms))]
        return await self._get(COUNTDOWN, params, b.decode_countdown)

    # ---- user data stream -----------------------------------------------------------------------

    async def listen_key_create(self) -> str:
        """Return the account's listenKey (the active one, extended, if there is one)."""
        return await self._get(LISTEN_KEY_NEW, [], b.decode_listen_key)

    async def listen_key_keepalive(self, listen_key: str) -> None:
        """Extend the listenKey by 60 minutes; raises UnknownListenKeyError (-1125)."""
        await self._get(LISTEN_KEY_KEEPALIVE, [("listenKey", listen_key)], b.decode_listen_key)

    async def listen_key_close(self, listen_key: str) -> None:
        """Invalidate the listenKey; its stream stops."""
        await self._get(LISTEN_KEY_CLOSE, [("listenKey", listen_key)], lambda _body: None)


async def load_specs(
    client: ExchangeClient,
    logger: log.EventLogger,
    retry_s: float = 2.0,
    on_wait: Callable[[], object] | None = None,
) -> dict[str, b.SymbolSpec]:
    """Fetch the exchange filters, retrying every `retry_s` until the exchange answers.

    `on_wait` runs after each failed attempt (a process marks progress there: an exchange outage
    is degraded mode, not a hang, DESIGN-RULES 5). Cancellation ends the wait.
    """
    while True:
        try:
            return {s.symbol: s for s in (await client.exchange_info()).symbols}
        except ExchangeError as e:
            if on_wait is not None:
                on_wait()
            logger.warning("exchange_info_failed", error=str(e)[:300], retry_in_s=retry_s)
            await asyncio.sleep(retry_s)
