"""The daily report's figures (shared/report/daily.py): the figures of the hand-built day
(day.py), the ledger audit against income rows and fills, and the JSON-able values."""

from __future__ import annotations

import json
from decimal import Decimal as D

import msgspec
import pytest

from shared.report.daily import (
    NOT_CHECKED,
    AuditLine,
    SymbolLine,
    day_bounds_ms,
    ledger_audit,
    report_json,
)
from shared.schemas.records import ModelVersionRecord
from tests.unit.report.day import (
    DAY,
    DAY_TRADES,
    DAY_TRADES_ONLY,
    END_MS,
    FILL_INCOME,
    FILLS,
    FILLS_WITH_AN_UNRECORDED_ONE,
    FIRST,
    HOUR_MS,
    MATCHING_INCOME,
    MISMATCHED_INCOME,
    MODEL,
    SECOND,
    START_MS,
    day_report,
    income,
    trade,
)


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
    audit = ledger_audit(DAY_TRADES_ONLY, MISMATCHED_INCOME)
    assert audit.differences == (
        AuditLine("ETHUSDT", "commission", D("0.9"), D("0.95"), D("-0.05")),
    )
    assert AuditLine("", "commission", D("2.5"), D("2.55"), D("-0.05")) in audit.lines


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
    audit = ledger_audit([FIRST, SECOND], FILL_INCOME, FILLS_WITH_AN_UNRECORDED_ONE)
    assert audit.differences == (
        AuditLine("BTCUSDT", "realized_pnl", D(16), D("17.5"), D("-1.5"), "user_trades"),
        AuditLine("BTCUSDT", "commission", D("1.6"), D("1.65"), D("-0.05"), "user_trades"),
    )


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
