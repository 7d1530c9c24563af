"""The daily report: figures of a hand-built day, the ledger audit against income rows, and the
text / HTML / JSON renderings.

The day 2026-11-22 starts at 1795305600000 ms. Its real trades, in exit order:
    BTCUSDT  +1 h  gross 10  fees 1    funding 0.5   net  9.5   win
    ETHUSDT  +2 h  gross -4  fees 0.5  funding -0.1  net -4.6   loss
    BTCUSDT  +3 h  gross 6   fees 0.6  funding None  net  5.4   win
    ETHUSDT  +4 h  gross -2  fees 0.4  funding 0     net -2.4   loss
plus three virtual trades (two wins), and trades outside the day or still open.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal as D

import msgspec
import pytest

from shared.report.daily import (
    NOT_CHECKED,
    Audit,
    AuditLine,
    DailyReport,
    SymbolLine,
    build_daily_report,
    day_bounds_ms,
    ledger_audit,
    render_html,
    render_text,
    report_json,
)
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


def test_day_bounds_ms_spans_the_utc_day() -> None:
    assert day_bounds_ms(DAY) == (START_MS, END_MS)


@pytest.mark.parametrize("day", ["20261122", "2026-11-22T00:00", "2026-13-01", "yesterday"])
def test_day_bounds_ms_with_another_form_raises(day: str) -> None:
    with pytest.raises(ValueError, match="is not a YYYY-MM-DD date"):
        day_bounds_ms(day)


def test_build_daily_report_figures_of_the_real_trades_of_the_day() -> None:
    r = day_report()
    assert (r.day, r.start_ms, r.end_ms) == (DAY, START_MS, END_MS)
    assert (r.trades, r.wins, r.win_rate) == (4, 2, 0.5)
    assert r.gross_pnl_usdt == D("10")
    assert r.fees_usdt == D("2.5")
    assert r.funding_usdt == D("0.4")
    assert r.net_pnl_usdt == D("7.9")
    assert r.profit_factor == float(D("14.9") / D("7.0"))
    assert r.start_equity_usdt == D("1000")
    assert r.equity_curve == (
        (START_MS + HOUR_MS, D("1009.5")),
        (START_MS + 2 * HOUR_MS, D("1004.9")),
        (START_MS + 3 * HOUR_MS, D("1010.3")),
        (START_MS + 4 * HOUR_MS, D("1007.9")),
    )
    assert r.max_drawdown_usdt == D("4.6")
    assert r.max_drawdown_pct == float(D("4.6") / D("1009.5") * 100)
    assert r.per_symbol == (
        SymbolLine("BTCUSDT", 2, 2, D("14.9")),
        SymbolLine("ETHUSDT", 2, 0, D("-7.0")),
    )
    assert (r.virtual_trades, r.virtual_win_rate) == (3, 2 / 3)
    assert (r.model_version, r.model_auc, r.model_log_loss) == (7, 0.612, 0.671)
    assert r.audit == NOT_CHECKED


def test_build_daily_report_without_a_losing_trade_has_no_profit_factor() -> None:
    r = day_report([trade("t1", "BTCUSDT", START_MS + HOUR_MS, "10", "1", "0.5")])
    assert r.profit_factor is None
    assert (r.max_drawdown_usdt, r.max_drawdown_pct) == (D(0), 0.0)


def test_build_daily_report_without_start_equity_draws_from_zero_without_pct() -> None:
    r = day_report(start=None)
    assert [e for _, e in r.equity_curve] == [D("9.5"), D("4.9"), D("10.3"), D("7.9")]
    assert r.max_drawdown_usdt == D("4.6")
    assert r.max_drawdown_pct is None


def test_build_daily_report_drawdown_peak_includes_the_start_equity() -> None:
    trades = [
        trade("t1", "BTCUSDT", START_MS + HOUR_MS, "-9", "1", "0"),
        trade("t2", "BTCUSDT", START_MS + 2 * HOUR_MS, "5", "0", "0"),
        trade("t3", "BTCUSDT", START_MS + 3 * HOUR_MS, "-3", "0", "0"),
    ]
    r = day_report(trades, start=D("200"))
    assert [e for _, e in r.equity_curve] == [D("190"), D("195"), D("192")]
    assert (r.max_drawdown_usdt, r.max_drawdown_pct) == (D("10"), 5.0)
    assert r.profit_factor == 5 / 13


def test_build_daily_report_counts_the_alerts_of_the_day_into_events() -> None:
    r = day_report()
    assert (r.restarts, r.backoffs, r.dms_events, r.kill_switch_events) == (2, 2, 2, 1)
    assert r.alerts_by_kind == (
        ("dms_blind", 1),
        ("dms_silence", 1),
        ("feed_backed_off", 1),
        ("kill_switch_drawdown", 1),
        ("position_adopted", 1),
        ("process_hung", 2),
        ("trader_backed_off", 1),
    )


def test_build_daily_report_of_an_empty_day() -> None:
    r = day_report([], start=None, alerts=[], model=None)
    assert (r.trades, r.wins, r.win_rate, r.net_pnl_usdt) == (0, 0, 0.0, D(0))
    assert (r.profit_factor, r.max_drawdown_usdt, r.max_drawdown_pct) == (None, D(0), None)
    assert (r.equity_curve, r.per_symbol, r.alerts_by_kind) == ((), (), ())
    assert (r.virtual_trades, r.virtual_win_rate, r.model_version) == (0, None, None)
    assert "Daily report 2026-11-22" in render_text(r)
    assert render_html(r).count("<polyline") == 1
    json.dumps(report_json(r))


def test_ledger_audit_with_matching_income_has_no_difference() -> None:
    audit = ledger_audit(DAY_TRADES_ONLY, MATCHING_INCOME)
    assert audit.is_checked
    assert audit.differences == ()
    assert [(a.symbol, a.field) for a in audit.lines] == [
        ("BTCUSDT", "realized_pnl"),
        ("BTCUSDT", "commission"),
        ("BTCUSDT", "funding"),
        ("ETHUSDT", "realized_pnl"),
        ("ETHUSDT", "commission"),
        ("ETHUSDT", "funding"),
        ("", "realized_pnl"),
        ("", "commission"),
        ("", "funding"),
    ]
    # Commissions: recorded fees are positive, Binance's COMMISSION rows negative.
    assert AuditLine("", "commission", D("2.5"), D("2.5"), D(0)) in audit.lines
    assert AuditLine("BTCUSDT", "funding", D("0.5"), D("0.5"), D(0)) in audit.lines
    assert AuditLine("ETHUSDT", "realized_pnl", D("-6"), D("-6"), D(0)) in audit.lines


def test_ledger_audit_with_a_commission_mismatch_names_symbol_and_field() -> None:
    rows = [r for r in MATCHING_INCOME if r.amount != D("-0.4")]
    rows.append(income("ETHUSDT", "COMMISSION", "-0.45"))
    audit = ledger_audit(DAY_TRADES_ONLY, rows)
    assert audit.differences == (
        AuditLine("ETHUSDT", "commission", D("0.9"), D("0.95"), D("-0.05")),
    )
    assert AuditLine("", "commission", D("2.5"), D("2.55"), D("-0.05")) in audit.lines
    text = render_text(day_report(audit=audit))
    assert "ledger audit: 1 difference(s)" in text
    assert "ETHUSDT commission (income): recorded 0.9 exchange 0.95 difference -0.05" in text


def test_ledger_audit_with_commission_of_the_wrong_sign_differs() -> None:
    rows = [
        income("BTCUSDT", "COMMISSION", "1"),
        income("BTCUSDT", "REALIZED_PNL", "10"),
        income("BTCUSDT", "FUNDING_FEE", "0.5"),
    ]
    audit = ledger_audit(DAY_TRADES_ONLY[1:2], rows)
    assert audit.differences == (AuditLine("BTCUSDT", "commission", D("1"), D("-1"), D("2")),)


def test_ledger_audit_within_tolerance_has_no_difference() -> None:
    rows = [r for r in MATCHING_INCOME if r.amount != D("-0.4")]
    rows.append(income("ETHUSDT", "COMMISSION", "-0.405"))
    assert ledger_audit(DAY_TRADES_ONLY, rows).differences == ()
    assert len(ledger_audit(DAY_TRADES_ONLY, rows, tolerance_usdt=D("0.001")).differences) == 1


def test_ledger_audit_reports_a_total_when_small_gaps_add_up() -> None:
    rows = [r for r in MATCHING_INCOME if r.income_type != "FUNDING_FEE"]
    rows += [income("BTCUSDT", "FUNDING_FEE", "0.492"), income("ETHUSDT", "FUNDING_FEE", "-0.108")]
    audit = ledger_audit(DAY_TRADES_ONLY, rows)
    assert audit.differences == (AuditLine("", "funding", D("0.4"), D("0.384"), D("0.016")),)


def test_ledger_audit_ignores_virtual_and_open_trades() -> None:
    audit = ledger_audit([t for t in DAY_TRADES if t.is_virtual or t.exit_ms is None], [])
    assert audit.lines == (
        AuditLine("", "realized_pnl", D(0), D(0), D(0)),
        AuditLine("", "commission", D(0), D(0), D(0)),
        AuditLine("", "funding", D(0), D(0), D(0)),
    )
    assert audit.differences == ()


def test_render_text_contains_the_key_figures() -> None:
    text = render_text(day_report(audit=ledger_audit(DAY_TRADES_ONLY, MATCHING_INCOME)))
    for part in [
        "Daily report 2026-11-22 (UTC)",
        "net PnL after fees and funding: +7.90 USDT",
        "fees 2.50",
        "funding +0.40",
        "trades: 4, wins 2, win rate 50.0%",
        "profit factor: 2.13",
        "max drawdown: 4.60 USDT (0.46%)",
        "virtual trades: 3, win rate 66.7%",
        "BTCUSDT: 2 trades, 2 wins, +14.90 USDT",
        "ETHUSDT: 2 trades, 0 wins, -7.00 USDT",
        "model: v7, held-out AUC 0.612, log-loss 0.671",
        "events: restarts 2, back-offs 2, dead-man's switch 2, kill switch 1",
        "process_hung: 2",
        "ledger audit: OK",
    ]:
        assert part in text
    assert "profit factor: n/a (no losing trade)" in render_text(day_report(DAY_TRADES[:2]))


def test_render_text_with_300_symbols_stays_under_4000_chars() -> None:
    trades = [
        trade(f"t{i}", f"SYMBOL{i:03d}USDT", START_MS + i, "1", "0.1", None) for i in range(300)
    ]
    alerts = [alert(f"kind_{i}_backed_off") for i in range(50)]
    audit = Audit(
        lines=(),
        is_checked=True,
        differences=tuple(
            AuditLine(f"SYMBOL{i:03d}USDT" * 5, "commission", D(1), D(2), D(-1)) for i in range(300)
        ),
    )
    r = day_report(trades, alerts=alerts, audit=audit)
    text = render_text(r)
    assert len(text) < 4000
    assert "SYMBOL000USDT: 1 trades, 1 wins, +0.90 USDT" in text
    assert "  +285 more" in text
    assert "  +292 more" in text
    assert "ledger audit: 300 difference(s)" in text
    assert "net PnL after fees and funding: +270.00 USDT" in text


def test_render_html_escapes_every_string() -> None:
    evil = "<script>alert(1)</script>"
    trades = [trade("t1", evil, START_MS + HOUR_MS, "10", "1", "0")]
    audit = Audit(
        lines=(), is_checked=True, differences=(AuditLine(evil, "commission", D(1), D(2), D(-1)),)
    )
    page = render_html(day_report(trades, alerts=[alert(evil)], audit=audit))
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http" not in page  # self-contained: no external URL
    assert page.startswith("<!DOCTYPE html>")


def polyline_points(page: str) -> list[tuple[float, float]]:
    match = re.search(r'<svg[^>]*>.*<polyline[^>]*points="([^"]*)"', page, re.S)
    assert match is not None
    return [(float(x), float(y)) for x, y in (p.split(",") for p in match.group(1).split())]


def test_render_html_draws_the_equity_curve_scaled_to_the_data() -> None:
    r = day_report()
    points = polyline_points(render_html(r))
    assert len(points) == len(r.equity_curve) + 1
    ys = [y for _, y in points]
    assert (min(ys), max(ys)) == (10.0, 190.0)  # the highest and lowest equity at the padding
    assert ys.index(10.0) == 3  # 1010.3 after the third trade
    assert (points[0][0], points[-1][0]) == (10.0, 630.0)  # from 00:00 to the last exit
    assert points[2][0] == 10.0 + 620 * 2 / 4


def test_render_html_of_a_flat_or_single_point_curve_is_drawn_mid_height() -> None:
    single = polyline_points(render_html(day_report([], start=D("1000"))))
    assert single == [(10.0, 100.0)]
    flat = day_report([trade("t1", "BTCUSDT", START_MS + HOUR_MS, "1", "1", "0")], start=None)
    assert [y for _, y in polyline_points(render_html(flat))] == [100.0, 100.0]


def test_report_json_is_json_with_decimals_as_strings() -> None:
    data = report_json(day_report(audit=ledger_audit(DAY_TRADES_ONLY, MATCHING_INCOME)))
    assert json.loads(json.dumps(data)) == data
    assert data["net_pnl_usdt"] == "7.9"
    assert data["equity_curve"][0] == [START_MS + HOUR_MS, "1009.5"]
    assert data["per_symbol"][0] == {
        "symbol": "BTCUSDT",
        "trades": 2,
        "wins": 2,
        "net_pnl_usdt": "14.9",
    }
    assert data["profit_factor"] == float(D("14.9") / D("7.0"))
    assert data["max_drawdown_pct"] == float(D("4.6") / D("1009.5") * 100)
    assert data["virtual_win_rate"] == 2 / 3
    assert data["audit"]["is_checked"] is True
    assert data["audit"]["lines"][0]["recorded_usdt"] == "16"
    assert report_json(day_report([], start=None))["max_drawdown_pct"] is None


def test_report_json_turns_a_nan_model_metric_into_null() -> None:
    model = ModelVersionRecord(**{**msgspec.structs.asdict(MODEL), "auc": float("nan")})
    data = report_json(day_report(model=model))
    assert (data["model_auc"], data["model_log_loss"]) == (None, 0.671)
    json.dumps(data, allow_nan=False)


def test_render_html_lists_every_audit_comparison_and_marks_the_differences() -> None:
    rows = [r for r in MATCHING_INCOME if r.amount != D("-0.4")]
    rows.append(income("ETHUSDT", "COMMISSION", "-0.45"))
    page = render_html(day_report(audit=ledger_audit(DAY_TRADES_ONLY, rows)))
    assert '<p class="bad">ledger audit: 1 difference(s)</p>' in page
    differing = (
        "<td>ETHUSDT</td><td>commission</td><td>income</td><td>0.9</td><td>0.95</td><td>-0.05</td>"
    )
    assert differing + "<td>differs</td>" in page
    total = "<td>total</td><td>commission</td><td>income</td><td>2.5</td><td>2.55</td>"
    total += "<td>-0.05</td>"
    assert total + "<td>differs</td>" in page
    assert page.count("<td>ok</td>") == 7


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


def test_ledger_audit_checks_each_trade_against_its_own_fills() -> None:
    audit = ledger_audit([FIRST, SECOND], FILL_INCOME, FILLS)
    assert audit.differences == ()
    by_fills = [a for a in audit.lines if a.source == "user_trades"]
    assert by_fills == [
        AuditLine("BTCUSDT", "realized_pnl", D(16), D(16), D(0), "user_trades"),
        AuditLine("BTCUSDT", "commission", D("1.6"), D("1.6"), D(0), "user_trades"),
        AuditLine("", "realized_pnl", D(16), D(16), D(0), "user_trades"),
        AuditLine("", "commission", D("1.6"), D("1.6"), D(0), "user_trades"),
    ]
    assert len(audit.lines) == len(by_fills) + 6  # the income lines: 3 fields, BTC and total
    assert ledger_audit([FIRST, SECOND], FILL_INCOME).lines == audit.lines[:6]  # no fills given


def test_ledger_audit_flags_a_record_that_misses_one_of_its_fills() -> None:
    # A partial exit fill the record does not hold (a late fill after the record was made): the
    # day's ledger still matches the record if the income misses it too, the fills do not.
    fills = [*FILLS, fill(START_MS + 4 * HOUR_MS - 1, "1.5", "0.05")]
    audit = ledger_audit([FIRST, SECOND], FILL_INCOME, fills)
    assert audit.differences == (
        AuditLine("BTCUSDT", "realized_pnl", D(16), D("17.5"), D("-1.5"), "user_trades"),
        AuditLine("BTCUSDT", "commission", D("1.6"), D("1.65"), D("-0.05"), "user_trades"),
    )
    text = render_text(day_report(audit=audit))
    assert "BTCUSDT realized_pnl (user_trades): recorded 16 exchange 17.5 difference -1.5" in text
    page = render_html(day_report(audit=audit))
    assert "<td>BTCUSDT</td><td>commission</td><td>user_trades</td><td>1.6</td>" in page
