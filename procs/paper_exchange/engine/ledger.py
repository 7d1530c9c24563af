"""The paper account's state: config, market view, positions, orders, trades, income, ids.

`Ledger` is the one mutable object the engine's modules share (`matching`, `algo`,
`trading`, `reports`, `settings`, `settlement`); it owns no logic beyond bookkeeping and
valuation. `to_state()` writes everything as JSON-able data (Decimals as exact strings), and
`Ledger(..., state=...)` restores it exactly (DESIGN.md "Engine").
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from procs.paper_exchange.engine.accounts import (
    AccountRisk,
    OrderNotional,
    Position,
    SymbolSettings,
    account_risk,
    break_even_price,
    unrealized_pnl,
)
from procs.paper_exchange.engine.events import BalanceChange, position_row
from procs.paper_exchange.engine.orders import AlgoOrder, Order
from procs.paper_exchange.engine.persist import record_from_state, record_state
from procs.paper_exchange.engine.specs import (
    ZERO,
    Bracket,
    SymbolSpec,
    max_leverage,
    parse_brackets,
    parse_spec,
)
from procs.paper_exchange.errors import rejected

ENGINE_STATE_VERSION = 1
DAY_MS = 24 * 3600 * 1000


class MarketView(Protocol):
    """Prices the engine trades against (implemented by `market.Market`); Decimal, sim ms."""

    def last_price(self, symbol: str, now_ms: int) -> Decimal: ...

    def mark_price(self, symbol: str, now_ms: int) -> Decimal: ...

    def book_ticker(self, symbol: str, now_ms: int) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """Return (bid, bid_qty, ask, ask_qty)."""
        ...

    def funding_rate(self, symbol: str, now_ms: int) -> Decimal: ...

    def next_funding_ms(self, now_ms: int) -> int: ...


FINAL_ALGO = ("FINISHED", "CANCELED", "REJECTED", "EXPIRED")  # algo statuses that never change


@dataclass(frozen=True)
class EngineConfig:
    """Account and matching parameters of the paper exchange."""

    initial_balance_usdt: Decimal = Decimal(10000)  # wallet of a fresh account, USDT
    maker_fee_rate: Decimal = Decimal("0.0002")  # fraction of notional
    taker_fee_rate: Decimal = Decimal("0.0004")  # fraction of notional
    rpi_fee_rate: Decimal = Decimal("0.00005")  # only reported by commissionRate
    market_slippage_bps: Decimal = Decimal(0)  # MARKET fills this far beyond the book, bps
    countdown_cancels_algo: bool = False  # countdownCancelAll also cancels algo orders (§5.16)
    max_open_algo_orders: int = 200  # across all symbols (§0.1, change-log 2025-12-29)
    legacy_conditional_on_order_endpoint: bool = False  # accept STOP* on /fapi/v1/order
    liquidation_fee_rate: Decimal | None = None  # None: the symbol's exchangeInfo liquidationFee
    margin_call_ratio: Decimal = Decimal("0.8")  # maintenance margin / margin balance
    default_leverage: int = 20  # leverage of a symbol never set (Binance's default)
    order_limit_10s: int = 300  # reported by rateLimit/order
    order_limit_1m: int = 1200
    account_alias: str = "SgsR"  # balance `accountAlias`


@dataclass
class Trade:
    """One fill, as userTrades reports it."""

    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    realized_pnl: Decimal
    commission: Decimal
    time_ms: int
    is_maker: bool


@dataclass
class Income:
    """One income history row (§5.18)."""

    tran_id: int
    symbol: str
    income_type: str
    amount: Decimal
    time_ms: int
    trade_id: str  # "" when not from a trade


class Ledger:
    """Everything the paper account holds; see the module docstring."""

    def __init__(
        self,
        specs: dict[str, dict[str, Any]],
        brackets: dict[str, list[dict[str, Any]]],
        market: MarketView,
        cfg: EngineConfig,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.specs: dict[str, SymbolSpec] = {s: parse_spec(raw) for s, raw in specs.items()}
        missing = sorted(set(self.specs) - set(brackets))
        if missing:
            raise ValueError(f"engine: no leverage brackets for {', '.join(missing)}")
        self.brackets: dict[str, tuple[Bracket, ...]] = {
            s: parse_brackets(brackets[s]) for s in self.specs
        }
        self.market = market
        self.cfg = cfg
        self.wallet = cfg.initial_balance_usdt
        self.positions = {s: Position(s) for s in self.specs}
        self.settings = {
            s: SymbolSettings(s, min(cfg.default_leverage, max_leverage(self.brackets[s])))
            for s in self.specs
        }
        self.orders: dict[int, Order] = {}
        self.algos: dict[int, AlgoOrder] = {}
        self.trades: list[Trade] = []
        self.incomes: list[Income] = []
        self.countdowns: dict[str, int] = {}  # symbol -> deadline, sim ms
        self.margin_calls: set[str] = set()  # "CROSS" or an isolated symbol already warned
        self.events: list[dict[str, Any]] = []
        self.is_started = False
        # positionSide/dual: hedge mode is held (so a client's check of it can be tested) but
        # never traded: while it is on, every order is refused -4061 (params.check_position_side).
        self.is_dual_side = False
        self.last_tick_ms = 0  # 0: no tick yet
        self.last_prune_ms = 0
        self._final_states: dict[int, tuple[Any, dict[str, Any]]] = {}  # id -> (record, state)
        self.next_order_id = 4_000_000_001
        self.next_trade_id = 300_000_001
        self.next_algo_id = 1_000_000_000_001
        self.next_tran_id = 9_000_000_001
        if state is not None:
            self._restore(state)

    # -- lookups --------------------------------------------------------------------------------

    def spec(self, symbol: str) -> SymbolSpec:
        """Return the symbol's spec; raise -1121 for a symbol the exchange does not list."""
        found = self.specs.get(symbol)
        if found is None:
            raise rejected(-1121)
        return found

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Return open regular orders, oldest first, of one symbol or all."""
        return [
            o for o in self.orders.values() if o.is_open and (symbol is None or o.symbol == symbol)
        ]

    def open_algos(self, symbol: str | None = None) -> list[AlgoOrder]:
        """Return algo orders still waiting for their trigger, oldest first."""
        return [
            a
            for a in self.algos.values()
            if a.status == "NEW" and (symbol is None or a.symbol == symbol)
        ]

    def order_notional(self, symbol: str) -> OrderNotional:
        """Return the notional of the symbol's open orders by side (limit price x remaining)."""
        bid = ask = bid_margin = ask_margin = ZERO
        for order in self.open_orders(symbol):
            notional = order.price * order.remaining_qty
            if order.side == "BUY":
                bid += notional
                bid_margin += ZERO if order.reduce_only else notional
            else:
                ask += notional
                ask_margin += ZERO if order.reduce_only else notional
        return OrderNotional(bid, ask, bid_margin, ask_margin)

    def risk(self, now_ms: int) -> AccountRisk:
        """Value the account at the current mark prices."""
        return account_risk(
            wallet=self.wallet,
            positions=self.positions,
            settings=self.settings,
            marks={s: self.market.mark_price(s, now_ms) for s in self.specs},
            orders={s: self.order_notional(s) for s in self.specs},
            brackets=self.brackets,
        )

    def cross_wallet(self) -> Decimal:
        """Return the wallet balance minus every isolated wallet."""
        return self.wallet - sum((p.isolated_wallet for p in self.positions.values()), ZERO)

    # -- bookkeeping ----------------------------------------------------------------------------

    def ensure_started(self, now_ms: int) -> None:
        """Book the initial deposit (income TRANSFER) at the first call that knows the time."""
        if self.is_started:
            return
        self.is_started = True
        self.add_income("", "TRANSFER", self.cfg.initial_balance_usdt, now_ms)

    def new_order_id(self) -> int:
        """Return the next order id: int64, increasing, persisted with the state."""
        self.next_order_id += 1
        return self.next_order_id - 1

    def new_trade_id(self) -> int:
        """Return the next trade id: int64, increasing, persisted with the state."""
        self.next_trade_id += 1
        return self.next_trade_id - 1

    def new_algo_id(self) -> int:
        """Return the next algo id: int64, increasing, persisted with the state."""
        self.next_algo_id += 1
        return self.next_algo_id - 1

    def add_income(
        self, symbol: str, income_type: str, amount: Decimal, now_ms: int, trade_id: str = ""
    ) -> None:
        """Append an income history row with the next tranId."""
        self.next_tran_id += 1
        self.incomes.append(
            Income(self.next_tran_id - 1, symbol, income_type, amount, now_ms, trade_id)
        )

    def emit(self, event: dict[str, Any]) -> None:
        """Queue a user-data event for `drain_events`."""
        self.events.append(event)

    def balance_change(self, change: Decimal) -> BalanceChange:
        """Return the ACCOUNT_UPDATE `B` row after a change of `change` (bc)."""
        return BalanceChange(self.wallet, self.cross_wallet(), change)

    def position_event_row(self, symbol: str, now_ms: int) -> dict[str, Any]:
        """Return the ACCOUNT_UPDATE `P` row of the symbol's position at the current mark."""
        pos = self.positions[symbol]
        mark = self.market.mark_price(symbol, now_ms) if pos.amount else ZERO
        return position_row(
            pos,
            is_isolated=self.settings[symbol].is_isolated,
            unrealized=unrealized_pnl(pos, mark) if pos.amount else ZERO,
            break_even=break_even_price(pos, self.cfg.taker_fee_rate),
        )

    def prune(self, now_ms: int) -> None:
        """Forget history Binance forgets (§5.9, §5.17, §5.18): unfilled canceled or expired
        orders after 3 days, any closed order and algo order, trade and income after 90 days."""
        short = now_ms - 3 * DAY_MS
        long = now_ms - 90 * DAY_MS
        self.orders = {
            i: o
            for i, o in self.orders.items()
            if o.is_open or (o.update_ms >= long and (o.executed_qty > 0 or o.update_ms >= short))
        }
        self.algos = {
            i: a
            for i, a in self.algos.items()
            if a.status == "NEW"
            or (a.update_ms >= long and (a.actual_order_id != 0 or a.update_ms >= short))
        }
        self.trades = [t for t in self.trades if t.time_ms >= long]
        self.incomes = [i for i in self.incomes if i.time_ms >= long]
        self.last_prune_ms = now_ms
        self._final_states.clear()  # forgotten records must not stay alive here

    # -- persistence ----------------------------------------------------------------------------

    def _state_of(self, record: Any, is_final: bool) -> dict[str, Any]:
        """record_state, remembered for records that can no longer change (trades, incomes,
        finished orders): the state is written before every order reply, and without this its
        cost grows with the account's history."""
        if not is_final:
            return record_state(record)
        cached = self._final_states.get(id(record))
        if cached is None or cached[0] is not record:
            cached = self._final_states[id(record)] = (record, record_state(record))
        return cached[1]

    def to_state(self) -> dict[str, Any]:
        """Return the whole account as JSON-able data."""
        return {
            "version": ENGINE_STATE_VERSION,
            "wallet": str(self.wallet),
            "positions": [record_state(p) for p in self.positions.values()],
            "settings": [record_state(s) for s in self.settings.values()],
            "orders": [self._state_of(o, not o.is_open) for o in self.orders.values()],
            "algos": [self._state_of(a, a.status in FINAL_ALGO) for a in self.algos.values()],
            "trades": [self._state_of(t, True) for t in self.trades],
            "incomes": [self._state_of(i, True) for i in self.incomes],
            "countdowns": dict(self.countdowns),
            "margin_calls": sorted(self.margin_calls),
            "events": list(self.events),
            "is_started": self.is_started,
            "last_tick_ms": self.last_tick_ms,
            "last_prune_ms": self.last_prune_ms,
            "next_ids": {
                "order": self.next_order_id,
                "trade": self.next_trade_id,
                "algo": self.next_algo_id,
                "tran": self.next_tran_id,
            },
        }

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("version") != ENGINE_STATE_VERSION:
            raise ValueError(
                f"state: version {state.get('version')!r} is not {ENGINE_STATE_VERSION}"
            )
        self.wallet = Decimal(state["wallet"])
        for raw in state["positions"]:
            pos = record_from_state(Position, raw)
            if pos.symbol in self.positions:
                self.positions[pos.symbol] = pos
        for raw in state["settings"]:
            conf = record_from_state(SymbolSettings, raw)
            if conf.symbol in self.settings:
                self.settings[conf.symbol] = conf
        self.orders = {
            o.order_id: o for o in (record_from_state(Order, r) for r in state["orders"])
        }
        self.algos = {
            a.algo_id: a for a in (record_from_state(AlgoOrder, r) for r in state["algos"])
        }
        self.trades = [record_from_state(Trade, r) for r in state["trades"]]
        self.incomes = [record_from_state(Income, r) for r in state["incomes"]]
        self.countdowns = {str(k): int(v) for k, v in state["countdowns"].items()}
        self.margin_calls = set(state["margin_calls"])
        self.events = list(state["events"])
        self.is_started = bool(state["is_started"])
        self.last_tick_ms = int(state["last_tick_ms"])
        self.last_prune_ms = int(state["last_prune_ms"])
        ids = state["next_ids"]
        self.next_order_id = int(ids["order"])
        self.next_trade_id = int(ids["trade"])
        self.next_algo_id = int(ids["algo"])
        self.next_tran_id = int(ids["tran"])
