"""The hand-built day of the daily report's tests (test_daily.py, test_render.py).

The day 2026-11-22 starts at 1795305600000 ms. Its real trades, in exit order:
    BTCUSDT  +1 h  gross 10  fees 1    funding 0.5   net  9.5   win
    ETHUSDT  +2 h  gross -4  fees 0.5  funding -0.1  net -4.6   loss
    BTCUSDT  +3 h  gross 6   fees 0.6  funding None  net  5.4   win
    ETHUSDT  +4 h  gross -2  fees 0.4  funding 0     net -2.4   loss
plus three virtual trades (two wins), and trades outside the day or still open.
"""

from __future__ import annotations

from decimal import Decimal as D

import msgspec

from shared.report.daily import NOT_CHECKED, Audit, DailyReport, build_daily_report
from shared.schemas.binance.trading import Income, UserTrade
from shared.schemas.guard import Alert
from shared.schemas.records import LabelSpec, ModelVersionRecord, TradeRecord

DAY = "2026-11-22"
START_MS = 1_795_305_600_000
END_MS = START_MS + 86_400_000
HOUR_MS = 3_600_000
MODEL = ModelVersionRecord(
    version=7,
    created_ms=START_MS - HOUR_MS,
    feature_schema="f1",
    sample_count=5000,
    auc=0.612,
    log_loss=0.671,
    hit_rate=0.55,
    params={},
    label=LabelSpec(take_profit_pct=1.0, stop_loss_pct=0.5, horizon_bars=30),
)


def trade(
    trade_id: str,
    symbol: str,
    exit_ms: int | None,
    gross: str,
    fees: str,
    funding: str | None,
    is_virtual: bool = False,
) -> TradeRecord:
    gross_d, fees_d = D(gross), D(fees)
    funding_d = None if funding is None else D(funding)
    net = gross_d - fees_d + (funding_d or D(0))
    closed = exit_ms is not None
    return TradeRecord(
        trade_id=trade_id,
        is_virtual=is_virtual,
        symbol=symbol,
        side="BUY",
        quantity=D("0.01"),
        entry_price=D("100000"),
        entry_ms=START_MS - HOUR_MS,
        exit_price=D("100100"),
        exit_ms=exit_ms,
        exit_reason="take_profit" if closed else None,
        gross_pnl_usdt=gross_d if closed else None,
        fees_usdt=fees_d if closed else None,
        funding_usdt=funding_d,
        net_pnl_usdt=net if closed else None,
        is_win=net > 0 if closed else None,
        confidence=0.7,
        model_version=7,
        feature_schema="f1",
        features=(0.1, 0.2),
    )


DAY_TRADES = [
    trade("t3", "BTCUSDT", START_MS + 3 * HOUR_MS, "6", "0.6", None),
    trade("t1", "BTCUSDT", START_MS + HOUR_MS, "10", "1", "0.5"),
    trade("t4", "ETHUSDT", START_MS + 4 * HOUR_MS, "-2", "0.4", "0"),
    trade("t2", "ETHUSDT", START_MS + 2 * HOUR_MS, "-4", "0.5", "-0.1"),
    trade("next-day", "BTCUSDT", END_MS, "100", "1", "0"),
    trade("day-before", "ETHUSDT", START_MS - 1, "-100", "1", "0"),
    trade("open", "BTCUSDT", None, "0", "0", None),
    trade("v1", "BTCUSDT", START_MS + HOUR_MS, "5", "0.4", None, is_virtual=True),
    trade("v2", "SOLUSDT", START_MS + 2 * HOUR_MS, "-5", "0.4", None, is_virtual=True),
    trade("v3", "ETHUSDT", START_MS + 5 * HOUR_MS, "3", "0.4", None, is_virtual=True),
    trade("v-next-day", "ETHUSDT", END_MS + 1, "3", "0.4", None, is_virtual=True),
]


def income(symbol: str, income_type: str, amount: str, asset: str = "USDT") -> Income:
    return Income(
        symbol=symbol,
        income_type=income_type,
        amount=D(amount),
        asset=asset,
        info="",
        time_ms=START_MS + HOUR_MS,
        transaction_id=1,
        trade_id="1",
    )


MATCHING_INCOME = [
    income("BTCUSDT", "REALIZED_PNL", "10"),
    income("BTCUSDT", "REALIZED_PNL", "6"),
    income("BTCUSDT", "COMMISSION", "-1"),
    income("BTCUSDT", "COMMISSION", "-0.6"),
    income("BTCUSDT", "FUNDING_FEE", "0.5"),
    income("ETHUSDT", "REALIZED_PNL", "-4"),
    income("ETHUSDT", "REALIZED_PNL", "-2"),
    income("ETHUSDT", "COMMISSION", "-0.5"),
    income("ETHUSDT", "COMMISSION", "-0.4"),
    income("ETHUSDT", "FUNDING_FEE", "-0.1"),
    income("", "TRANSFER", "500"),
    income("BTCUSDT", "COMMISSION", "-0.001", asset="BNB"),
]
DAY_TRADES_ONLY = [t for t in DAY_TRADES if t.exit_ms and START_MS <= t.exit_ms < END_MS]
# MATCHING_INCOME with ETHUSDT's 0.4 commission booked as 0.45 by the exchange.
MISMATCHED_INCOME = [
    *(r for r in MATCHING_INCOME if r.amount != D("-0.4")),
    income("ETHUSDT", "COMMISSION", "-0.45"),
]


def alert(kind: str, ts_ms: int = START_MS + HOUR_MS, symbol: str = "") -> Alert:
    return Alert(
        kind=kind, source="watchdog", detail=f"{kind} happened", ts_ms=ts_ms, symbol=symbol
    )


ALERTS = [
    alert("process_hung"),
    alert("process_hung"),
    alert("feed_backed_off"),
    alert("trader_backed_off"),
    alert("dms_silence"),
    alert("dms_blind"),
    alert("kill_switch_drawdown"),
    alert("position_adopted", symbol="BTCUSDT"),
    alert("process_hung", ts_ms=END_MS),
    alert("kill_switch_daily_loss", ts_ms=START_MS - 1),
]


def day_report(
    trades: list[TradeRecord] = DAY_TRADES,
    start: D | None = D("1000"),
    audit: Audit = NOT_CHECKED,
    alerts: list[Alert] = ALERTS,
    model: ModelVersionRecord | None = MODEL,
) -> DailyReport:
    return build_daily_report(DAY, trades, alerts, model, start, audit)


def fill(
    time_ms: int, pnl: str, commission: str, asset: str = "USDT", symbol: str = "BTCUSDT"
) -> UserTrade:
    return UserTrade(
        trade_id=time_ms,
        order_id=1,
        symbol=symbol,
        side="SELL",
        price=D("100000"),
        quantity=D("0.01"),
        quote_qty=D("1000"),
        realized_pnl=D(pnl),
        commission=D(commission),
        commission_asset=asset,
        time_ms=time_ms,
        position_side="BOTH",
        is_buyer=False,
        is_maker=False,
    )


# Two BTC trades one after the other (the trader holds one position per symbol at a time).
FIRST = msgspec.structs.replace(
    trade("a", "BTCUSDT", START_MS + 2 * HOUR_MS, "10", "1", "0.5"), entry_ms=START_MS + HOUR_MS
)
SECOND = msgspec.structs.replace(
    trade("b", "BTCUSDT", START_MS + 4 * HOUR_MS, "6", "0.6", None), entry_ms=START_MS + 3 * HOUR_MS
)
FILLS = [
    fill(START_MS + HOUR_MS, "0", "0.5"),  # FIRST: entry
    fill(START_MS + 2 * HOUR_MS, "10", "0.5"),  # FIRST: exit
    fill(START_MS + 3 * HOUR_MS, "0", "0.3"),  # SECOND: entry
    fill(START_MS + 4 * HOUR_MS - 5, "4", "0.2"),  # SECOND: exit, two partial fills
    fill(START_MS + 4 * HOUR_MS, "2", "0.1"),
    fill(START_MS + 5 * HOUR_MS, "99", "9"),  # no recorded trade's fill: not this check's
    fill(START_MS + 2 * HOUR_MS, "0", "0.001", asset="BNB"),  # not USDT: not counted
    fill(START_MS + 2 * HOUR_MS, "7", "0.7", symbol="ETHUSDT"),  # another symbol
]
FILL_INCOME = [
    income("BTCUSDT", "REALIZED_PNL", "16"),
    income("BTCUSDT", "COMMISSION", "-1.6"),
    income("BTCUSDT", "FUNDING_FEE", "0.5"),
]
# A partial exit fill the record does not hold (a late fill after the record was made): the
# day's ledger still matches the record if the income misses it too, the fills do not.
FILLS_WITH_AN_UNRECORDED_ONE = [*FILLS, fill(START_MS + 4 * HOUR_MS - 1, "1.5", "0.05")]
