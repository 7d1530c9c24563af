"""The daily report's renderings (shared/report/render.py): the text summary and the HTML page
with its SVG equity curve, of the hand-built day (day.py)."""

from __future__ import annotations

import ast
import re
from decimal import Decimal as D
from pathlib import Path

from shared.report.daily import Audit, AuditLine, ledger_audit
from shared.report.render import render_html, render_text
from tests.unit.report.day import (
    DAY_TRADES,
    DAY_TRADES_ONLY,
    FILL_INCOME,
    FILLS_WITH_AN_UNRECORDED_ONE,
    FIRST,
    HOUR_MS,
    MATCHING_INCOME,
    MISMATCHED_INCOME,
    SECOND,
    START_MS,
    alert,
    day_report,
    trade,
)

REPORT = Path(__file__).resolve().parents[3] / "shared" / "report"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_render_reads_only_the_computed_report_and_daily_renders_nothing() -> None:
    # The rendering gets figures, never the trades, income or alerts they are computed from.
    assert {n for n in _imports(REPORT / "render.py") if n.startswith("shared")} == {
        "shared.report.daily"
    }
    assert "html" not in _imports(REPORT / "daily.py")


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


def test_render_of_an_empty_day_has_its_title_and_a_one_point_curve() -> None:
    r = day_report([], start=None, alerts=[], model=None)
    assert "Daily report 2026-11-22" in render_text(r)
    assert render_html(r).count("<polyline") == 1


def test_render_text_names_the_symbol_and_field_of_an_audit_difference() -> None:
    text = render_text(day_report(audit=ledger_audit(DAY_TRADES_ONLY, MISMATCHED_INCOME)))
    assert "ledger audit: 1 difference(s)" in text
    assert "ETHUSDT commission (income): recorded 0.9 exchange 0.95 difference -0.05" in text


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


def test_render_html_lists_every_audit_comparison_and_marks_the_differences() -> None:
    page = render_html(day_report(audit=ledger_audit(DAY_TRADES_ONLY, MISMATCHED_INCOME)))
    assert '<p class="bad">ledger audit: 1 difference(s)</p>' in page
    differing = (
        "<td>ETHUSDT</td><td>commission</td><td>income</td><td>0.9</td><td>0.95</td><td>-0.05</td>"
    )
    assert differing + "<td>differs</td>" in page
    total = "<td>total</td><td>commission</td><td>income</td><td>2.5</td><td>2.55</td>"
    total += "<td>-0.05</td>"
    assert total + "<td>differs</td>" in page
    assert page.count("<td>ok</td>") == 7


def test_render_names_a_difference_against_the_fills() -> None:
    audit = ledger_audit([FIRST, SECOND], FILL_INCOME, FILLS_WITH_AN_UNRECORDED_ONE)
    text = render_text(day_report(audit=audit))
    assert "BTCUSDT realized_pnl (user_trades): recorded 16 exchange 17.5 difference -1.5" in text
    page = render_html(day_report(audit=audit))
    assert "<td>BTCUSDT</td><td>commission</td><td>user_trades</td><td>1.6</td>" in page
