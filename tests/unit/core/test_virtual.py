"""Virtual positions follow the guard's exit rules (real ExitsConfig defaults) and close fully;
closed trades carry gross PnL, fees on both legs and net PnL.

Defaults: stop 2 %, take-profit 4 %, trailing from 1.5 % at 1 %, time stop 1 h (not in profit),
max holding 2 h. Entry 100000 with 0.010 BTC (1000 USDT notional), taker fee 0.04 %.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest

from procs.trader.logic.virtual import (
    ClosedTrade,
    VirtualPosition,
    closed_trade,
    open_virtual,
    step_virtual,
)
from shared.config.ops import ExitsConfig
from shared.core import exits

T0 = 1_700_000_040_000
CFG = ExitsConfig()
TICK = D("0.1")
STEP = D("0.001")
FEE = D("0.0004")
FEATURES = (0.25, -1.5, 3.0)
MINUTE_MS = 60_000
MAX_HOLDING_MS = 7_200_000


def position(side: str, leverage: int = 1) -> VirtualPosition:
    return open_virtual(
        "sig-42",
        "BTCUSDT",
        side,
        D("0.010"),
        D("100000"),
        T0,
        0.7,
        3,
        FEATURES,
        CFG,
        TICK,
        leverage=leverage,
    )


def step(
    pos: VirtualPosition, mark: str, now_ms: int = T0 + MINUTE_MS
) -> tuple[VirtualPosition | None, ClosedTrade | None]:
    return step_virtual(pos, D(mark), now_ms, None, CFG, TICK, STEP, FEE)


def closes(pos: VirtualPosition, mark: str, now_ms: int = T0 + MINUTE_MS) -> ClosedTrade:
    after, trade = step(pos, mark, now_ms)
    assert after is None and trade is not None
    return trade


def pnl(trade: ClosedTrade) -> tuple[str, D, D, D, D, bool]:
    return (
        trade.reason,
        trade.exit_price,
        trade.gross_pnl_usdt,
        trade.fees_usdt,
        trade.net_pnl_usdt,
        trade.is_win,
    )


# ---- opening ------------------------------------------------------------------------------------


def test_open_virtual_long_uses_the_guards_default_plan_and_a_fresh_track() -> None:
    pos = position("BUY")
    assert pos.plan == exits.Plan(stop_price=D("98000.0"), take_profit_price=D("104000.0"))
    assert pos.track == exits.Track(best_mark=D("100000"), stop_price=D("98000.0"))
    assert (pos.confidence, pos.model_version, pos.features) == (0.7, 3, FEATURES)


def test_open_virtual_short_mirrors_the_plan() -> None:
    pos = position("SELL")
    assert pos.plan == exits.Plan(stop_price=D("102000.0"), take_profit_price=D("96000.0"))


def test_open_virtual_keeps_a_plan_the_trader_sent() -> None:
    plan = exits.Plan(stop_price=D("99500.0"), take_profit_price=D("101000.0"))
    pos = open_virtual(
        "sig-1", "BTCUSDT", "BUY", D("0.010"), D("100000"), T0, 0.6, 1, (), CFG, TICK, plan=plan
    )
    assert pos.plan == plan and pos.track.stop_price == D("99500.0")


@pytest.mark.parametrize(
    ("side", "qty", "match"),
    [("LONG", "0.01", "side 'LONG'"), ("BUY", "0", "quantity 0 must be > 0")],
)
def test_open_virtual_with_a_bad_side_or_quantity_raises(side: str, qty: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        open_virtual("s", "BTCUSDT", side, D(qty), D("100000"), T0, 0.6, 1, (), CFG, TICK)


# ---- stepping: long -----------------------------------------------------------------------------


def test_virtual_long_without_an_exit_carries_the_updated_track() -> None:
    after, trade = step(position("BUY"), "101600")  # +1.6 %: trailing active
    assert trade is None and after is not None
    assert after.track == exits.Track(best_mark=D("101600"), stop_price=D("100584.0"))


def test_virtual_long_closes_at_the_stop_with_fees_on_both_legs() -> None:
    after, trade = step(position("BUY"), "99000")
    assert trade is None and after is not None
    trade = closes(after, "98000", T0 + 2 * MINUTE_MS)
    # gross (98000 - 100000) * 0.010; fees 0.0004 * (1000 + 980)
    assert pnl(trade) == ("stop_loss", D("98000"), D("-20"), D("0.792"), D("-20.792"), False)
    assert (trade.opened_ms, trade.closed_ms) == (T0, T0 + 2 * MINUTE_MS)
    assert (trade.signal_id, trade.side, trade.quantity, trade.is_virtual) == (
        "sig-42",
        "BUY",
        D("0.010"),
        True,
    )


def test_virtual_long_closes_fully_at_the_take_profit() -> None:
    trade = closes(position("BUY"), "104000")
    assert pnl(trade) == ("take_profit", D("104000"), D("40"), D("0.816"), D("39.184"), True)
    assert trade.quantity == D("0.010")  # the guard would close half; a virtual closes all


def test_virtual_long_closes_at_max_holding_in_profit() -> None:
    pos = position("BUY")
    after, trade = step(pos, "101000", T0 + MAX_HOLDING_MS - 1)
    assert trade is None and after is not None
    trade = closes(after, "101000", T0 + MAX_HOLDING_MS)
    assert pnl(trade) == ("max_holding", D("101000"), D("10"), D("0.804"), D("9.196"), True)


def test_virtual_long_closes_at_the_trailing_stop_after_a_run_up() -> None:
    after, _ = step(position("BUY"), "102000")  # trailing stop 100980.0
    assert after is not None
    trade = closes(after, "100980", T0 + 2 * MINUTE_MS)
    assert pnl(trade) == ("trailing_stop", D("100980"), D("9.8"), D("0.80392"), D("8.99608"), True)


def test_virtual_long_at_high_leverage_hits_the_emergency_rule_before_the_stop() -> None:
    trade = closes(position("BUY", leverage=100), "99000")  # -10 USDT on a 10 USDT margin
    assert trade.reason == "emergency"


# ---- stepping: short ----------------------------------------------------------------------------


def test_virtual_short_closes_at_the_stop() -> None:
    trade = closes(position("SELL"), "102000")
    assert pnl(trade) == ("stop_loss", D("102000"), D("-20"), D("0.808"), D("-20.808"), False)


def test_virtual_short_closes_fully_at_the_take_profit() -> None:
    trade = closes(position("SELL"), "96000")
    assert pnl(trade) == ("take_profit", D("96000"), D("40"), D("0.784"), D("39.216"), True)


def test_virtual_short_closes_at_max_holding_in_profit() -> None:
    after, trade = step(position("SELL"), "99000", T0 + MAX_HOLDING_MS - 1)
    assert trade is None and after is not None
    trade = closes(after, "99000", T0 + MAX_HOLDING_MS)
    assert pnl(trade) == ("max_holding", D("99000"), D("10"), D("0.796"), D("9.204"), True)


def test_virtual_short_just_inside_the_stop_stays_open() -> None:
    after, trade = step(position("SELL"), "101999.9")
    assert trade is None and after is not None and after.track.best_mark == D("100000")


# ---- closed trades ------------------------------------------------------------------------------


def test_closed_trade_with_net_exactly_zero_is_not_a_win() -> None:
    trade = closed_trade(
        "sig-7",
        "ETHUSDT",
        "BUY",
        D("1.5"),
        D("3000"),
        D("3000"),
        T0,
        T0 + 1,
        "manual",
        D("0"),
        0.6,
        2,
        (1.0,),
        is_virtual=False,
    )
    assert (trade.gross_pnl_usdt, trade.fees_usdt, trade.net_pnl_usdt, trade.is_win) == (
        D("0"),
        D("0"),
        D("0"),
        False,
    )


def test_closed_trade_for_a_real_close_uses_the_fees_actually_charged() -> None:
    trade = closed_trade(
        "sig-8",
        "ETHUSDT",
        "SELL",
        D("1.5"),
        D("3000"),
        D("2990"),
        T0,
        T0 + 1,
        "take_profit",
        FEE,
        0.6,
        2,
        (),
        is_virtual=False,
        fees_usdt=D("1.25"),
    )
    assert (trade.gross_pnl_usdt, trade.fees_usdt, trade.net_pnl_usdt, trade.is_win) == (
        D("15"),
        D("1.25"),
        D("13.75"),
        True,
    )
    assert trade.is_virtual is False


def test_closed_trade_whose_gross_profit_the_fees_eat_is_a_loss() -> None:
    trade = closed_trade(
        "sig-9",
        "BTCUSDT",
        "BUY",
        D("0.010"),
        D("100000"),
        D("100050"),
        T0,
        T0 + 1,
        "time_stop",
        FEE,
        0.6,
        2,
        (),
        is_virtual=True,
    )
    assert (trade.gross_pnl_usdt, trade.fees_usdt, trade.net_pnl_usdt, trade.is_win) == (
        D("0.5"),
        D("0.80020"),
        D("-0.30020"),
        False,
    )


def test_closed_trade_with_a_bad_side_raises() -> None:
    with pytest.raises(ValueError, match="side 'LONG'"):
        closed_trade(
            "s",
            "BTCUSDT",
            "LONG",
            D("1"),
            D("1"),
            D("1"),
            T0,
            T0,
            "x",
            FEE,
            0.6,
            1,
            (),
            is_virtual=True,
        )


def test_closed_trade_is_frozen() -> None:
    trade = closes(position("SELL"), "96000")
    with pytest.raises(AttributeError):
        trade.reason = "x"  # type: ignore[misc]
    assert replace(trade, reason="x").reason == "x"
