"""The paper exchange's trading engine: one USDT-M account in one-way mode, no I/O.

`Engine` answers every signed endpoint the project's clients use (BINANCE-API.md §5.6-5.18) as a
method taking the merged request parameters (`dict[str, str]`, exactly as received) and the
simulated time `now_ms`, returning the JSON-able reply body or raising `ApiError(http_status,
code, msg)` with Binance's code and message. `routes()` maps `(method, path)` to those methods for
the server. `tick(now_ms)` advances the account: algo triggers, resting LIMIT fills, funding,
liquidation and margin calls, countdownCancelAll timers. `drain_events()` hands over the
user-data events in Binance's order and wire shape (§6.4-6.8); `to_state()` and the constructor's
`state=` round-trip everything through JSON.

Where the logic lives: `ledger` (state, ids, valuation), `accounts` (PnL and margin math),
`matching` (acceptance, fills, fees), `trading` (regular-order endpoints), `algo` (conditional
orders), `reports` (account, balance, positions, trades, income), `settings` (leverage, margin
type, configs, countdownCancelAll), `settlement` (funding, liquidation, margin calls).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from procs.paper_exchange.engine import algo, reports, settings, settlement, trading
from procs.paper_exchange.engine.ledger import EngineConfig, Ledger, MarketView
from procs.paper_exchange.engine.matching import match_resting
from procs.paper_exchange.errors import ApiError

__all__ = ["ApiError", "Engine", "EngineConfig", "Handler", "MarketView"]

Handler = Callable[[dict[str, str], int], Any]
PRUNE_INTERVAL_MS = 3600 * 1000


class Engine:
    """One paper account: endpoints, tick, user-data events, JSON state."""

    def __init__(
        self,
        specs: dict[str, dict[str, Any]],
        brackets: dict[str, list[dict[str, Any]]],
        market: MarketView,
        cfg: EngineConfig,
        state: dict[str, Any] | None = None,
    ) -> None:
        """Build the account from raw exchangeInfo symbol objects (by symbol) and each symbol's
        leverageBracket `brackets` list; `state` restores a `to_state()` snapshot.

        Raises ValueError when a symbol has no brackets or `state` is not a valid snapshot.
        """
        self._ledger = Ledger(specs, brackets, market, cfg, state)

    def routes(self) -> dict[tuple[str, str], Handler]:
        """Return the signed endpoints by (HTTP method, path)."""
        return {
            ("GET", "/fapi/v2/account"): self.get_account_v2,
            ("GET", "/fapi/v3/account"): self.get_account_v3,
            ("GET", "/fapi/v2/balance"): self.get_balance,
            ("GET", "/fapi/v3/balance"): self.get_balance,
            ("GET", "/fapi/v2/positionRisk"): self.get_position_risk_v2,
            ("GET", "/fapi/v3/positionRisk"): self.get_position_risk_v3,
            ("POST", "/fapi/v1/order"): self.post_order,
            ("GET", "/fapi/v1/order"): self.get_order,
            ("DELETE", "/fapi/v1/order"): self.delete_order,
            ("GET", "/fapi/v1/openOrder"): self.get_open_order,
            ("GET", "/fapi/v1/openOrders"): self.get_open_orders,
            ("GET", "/fapi/v1/allOrders"): self.get_all_orders,
            ("DELETE", "/fapi/v1/allOpenOrders"): self.delete_all_open_orders,
            ("POST", "/fapi/v1/batchOrders"): self.post_batch_orders,
            ("DELETE", "/fapi/v1/batchOrders"): self.delete_batch_orders,
            ("POST", "/fapi/v1/algoOrder"): self.post_algo_order,
            ("GET", "/fapi/v1/algoOrder"): self.get_algo_order,
            ("DELETE", "/fapi/v1/algoOrder"): self.delete_algo_order,
            ("GET", "/fapi/v1/openAlgoOrders"): self.get_open_algo_orders,
            ("GET", "/fapi/v1/allAlgoOrders"): self.get_all_algo_orders,
            ("DELETE", "/fapi/v1/algoOpenOrders"): self.delete_algo_open_orders,
            ("POST", "/fapi/v1/leverage"): self.post_leverage,
            ("POST", "/fapi/v1/marginType"): self.post_margin_type,
            ("GET", "/fapi/v1/positionSide/dual"): self.get_position_side_dual,
            ("POST", "/fapi/v1/positionSide/dual"): self.post_position_side_dual,
            ("GET", "/fapi/v1/symbolConfig"): self.get_symbol_config,
            ("GET", "/fapi/v1/accountConfig"): self.get_account_config,
            ("GET", "/fapi/v1/multiAssetsMargin"): self.get_multi_assets_margin,
            ("GET", "/fapi/v1/commissionRate"): self.get_commission_rate,
            ("GET", "/fapi/v1/rateLimit/order"): self.get_order_rate_limit,
            ("POST", "/fapi/v1/countdownCancelAll"): self.post_countdown_cancel_all,
            ("GET", "/fapi/v1/userTrades"): self.get_user_trades,
            ("GET", "/fapi/v1/income"): self.get_income,
        }

    # -- clock, events, state -------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Advance the account to `now_ms` (simulated): funding, triggers, fills, margin, timers.

        The server calls it for every 250 ms step in order, so no trigger is skipped (DESIGN.md).
        """
        ledger = self._ledger
        ledger.ensure_started(now_ms)
        # Funding first: its times lie in (last tick, now], before anything that happens at
        # `now`, so event times stay in order (§11.13).
        if 0 < ledger.last_tick_ms < now_ms:
            settlement.settle_funding(ledger, ledger.last_tick_ms, now_ms)
        algo.trigger_algos(ledger, now_ms)
        match_resting(ledger, now_ms)
        settlement.check_margins(ledger, now_ms)
        settings.run_countdowns(ledger, now_ms)
        if now_ms - ledger.last_prune_ms >= PRUNE_INTERVAL_MS:
            ledger.prune(now_ms)
        ledger.last_tick_ms = max(ledger.last_tick_ms, now_ms)

    def drain_events(self) -> list[dict[str, Any]]:
        """Return and forget the queued user-data events, oldest first."""
        events, self._ledger.events = self._ledger.events, []
        return events

    def to_state(self) -> dict[str, Any]:
        """Return the whole account as JSON-able data (Decimals as exact strings)."""
        return self._ledger.to_state()

    # -- account --------------------------------------------------------------------------------

    def get_account_v2(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """GET /fapi/v2/account."""
        return reports.get_account(self._ledger, params, now_ms, is_v2=True)

    def get_account_v3(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """GET /fapi/v3/account."""
        return reports.get_account(self._ledger, params, now_ms, is_v2=False)

    def get_balance(self, params: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        """GET /fapi/v2/balance and /fapi/v3/balance."""
        return reports.get_balance(self._ledger, params, now_ms)

    def get_position_risk_v2(self, params: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        """GET /fapi/v2/positionRisk."""
        return reports.get_position_risk(self._ledger, params, now_ms, is_v2=True)

    def get_position_risk_v3(self, params: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        """GET /fapi/v3/positionRisk."""
        return reports.get_position_risk(self._ledger, params, now_ms, is_v2=False)

    def get_user_trades(self, params: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        """GET /fapi/v1/userTrades."""
        return reports.get_user_trades(self._ledger, params, now_ms)

    def get_income(self, params: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        """GET /fapi/v1/income."""
        return reports.get_income(self._ledger, params, now_ms)

    # -- regular orders -------------------------------------------------------------------------

    def post_order(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """POST /fapi/v1/order (LIMIT, MARKET)."""
        return trading.post_order(self._ledger, params, now_ms)

    def get_order(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """GET /fapi/v1/order."""
        return trading.get_order(self._ledger, params, now_ms)

    def delete_order(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """DELETE /fapi/v1/order."""
        return trading.delete_order(self._ledger, params, now_ms)

    def get_open_order(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """GET /fapi/v1/openOrder."""
        return trading.get_open_order(self._ledger, params, now_ms)

    def get_open_orders(self, params: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        """GET /fapi/v1/openOrders."""
        return trading.get_open_orders(self._ledger, params, now_ms)

    def get_all_orders(self, params: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        """GET /fapi/v1/allOrders."""
        return trading.get_all_orders(self._ledger, params, now_ms)

    def delete_all_open_orders(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """DELETE /fapi/v1/allOpenOrders."""
        return trading.delete_all_open_orders(self._ledger, params, now_ms)

    def post_batch_orders(self, params: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        """POST /fapi/v1/batchOrders."""
        return trading.post_batch_orders(self._ledger, params, now_ms)

    def delete_batch_orders(self, params: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        """DELETE /fapi/v1/batchOrders."""
        return trading.delete_batch_orders(self._ledger, params, now_ms)

    # -- algo orders ----------------------------------------------------------------------------

    def post_algo_order(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """POST /fapi/v1/algoOrder."""
        return algo.post_algo_order(self._ledger, params, now_ms)

    def get_algo_order(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """GET /fapi/v1/algoOrder."""
        return algo.get_algo_order(self._ledger, params, now_ms)

    def delete_algo_order(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """DELETE /fapi/v1/algoOrder."""
        return algo.delete_algo_order(self._ledger, params, now_ms)

    def get_open_algo_orders(self, params: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        """GET /fapi/v1/openAlgoOrders."""
        return algo.open_algo_orders(self._ledger, params, now_ms)

    def get_all_algo_orders(self, params: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        """GET /fapi/v1/allAlgoOrders."""
        return algo.all_algo_orders(self._ledger, params, now_ms)

    def delete_algo_open_orders(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """DELETE /fapi/v1/algoOpenOrders."""
        return algo.delete_algo_open_orders(self._ledger, params, now_ms)

    # -- settings -------------------------------------------------------------------------------

    def post_leverage(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """POST /fapi/v1/leverage."""
        return settings.post_leverage(self._ledger, params, now_ms)

    def post_margin_type(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """POST /fapi/v1/marginType."""
        return settings.post_margin_type(self._ledger, params, now_ms)

    def get_position_side_dual(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """GET /fapi/v1/positionSide/dual."""
        return settings.get_position_side(self._ledger, params, now_ms)

    def post_position_side_dual(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """POST /fapi/v1/positionSide/dual."""
        return settings.post_position_side(self._ledger, params, now_ms)

    def get_symbol_config(self, params: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        """GET /fapi/v1/symbolConfig."""
        return settings.get_symbol_config(self._ledger, params, now_ms)

    def get_account_config(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """GET /fapi/v1/accountConfig."""
        return settings.get_account_config(self._ledger, params, now_ms)

    def get_multi_assets_margin(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """GET /fapi/v1/multiAssetsMargin."""
        return settings.get_multi_assets_margin(self._ledger, params, now_ms)

    def get_commission_rate(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """GET /fapi/v1/commissionRate."""
        return settings.get_commission_rate(self._ledger, params, now_ms)

    def get_order_rate_limit(self, params: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        """GET /fapi/v1/rateLimit/order."""
        return settings.get_order_rate_limit(self._ledger, params, now_ms)

    def post_countdown_cancel_all(self, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        """POST /fapi/v1/countdownCancelAll."""
        return settings.post_countdown_cancel_all(self._ledger, params, now_ms)
