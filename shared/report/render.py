"""The daily report's renderings: a plain-text summary (for Telegram) and a self-contained HTML
page with an inline SVG equity curve (the `<run.dir>/reports/<day>.html` file).

Pure: they read a computed `DailyReport` (shared/report/daily.py) and only lay it out; every
figure, count and audit result comes from there. The text lists at most TEXT_MAX_SYMBOLS
symbols, TEXT_MAX_KINDS alert kinds and TEXT_MAX_DIFFERENCES audit differences, each cut to
TEXT_LINE_CHARS, so it stays under TEXT_MAX_CHARS. Every string in the HTML is escaped; the page
has no script and no external URL.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from decimal import Decimal

from shared.report.daily import ZERO, Audit, AuditLine, DailyReport

TEXT_MAX_CHARS = 4000  # Telegram refuses messages past 4096
TEXT_LINE_CHARS = 80  # each listed item is cut here, so the caps below bound the whole text
TEXT_MAX_SYMBOLS = 15
TEXT_MAX_DIFFERENCES = 8
TEXT_MAX_KINDS = 10
SVG_WIDTH, SVG_HEIGHT, SVG_PAD = 640, 200, 10


def _usdt(value: Decimal, signed: bool = True) -> str:
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _factor(value: float | None) -> str:
    return "n/a (no losing trade)" if value is None else f"{value:.2f}"


def _drawdown_text(r: DailyReport) -> str:
    pct = "" if r.max_drawdown_pct is None else f" ({r.max_drawdown_pct:.2f}%)"
    return f"{_usdt(r.max_drawdown_usdt, signed=False)} USDT{pct}"


def _model_text(r: DailyReport) -> str:
    if r.model_version is None:
        return "none"
    auc = "n/a" if r.model_auc is None else f"{r.model_auc:.3f}"
    loss = "n/a" if r.model_log_loss is None else f"{r.model_log_loss:.3f}"
    return f"v{r.model_version}, held-out AUC {auc}, log-loss {loss}"


def _events_text(r: DailyReport) -> str:
    return (
        f"restarts {r.restarts}, back-offs {r.backoffs}, dead-man's switch {r.dms_events}, "
        f"kill switch {r.kill_switch_events}"
    )


def _audit_line_text(a: AuditLine) -> str:
    return (
        f"{a.symbol or 'total'} {a.field} ({a.source}): recorded {a.recorded_usdt} "
        f"exchange {a.exchange_usdt} difference {a.difference_usdt}"
    )


def _audit_status(audit: Audit) -> str:
    if not audit.is_checked:
        return "ledger audit: not checked"
    if not audit.differences:
        return "ledger audit: OK"
    return f"ledger audit: {len(audit.differences)} difference(s)"


def _capped(items: Sequence[str], cap: int) -> list[str]:
    """Return the first `cap` items indented and cut to TEXT_LINE_CHARS, then "+N more"."""
    cut = [s if len(s) <= TEXT_LINE_CHARS else s[: TEXT_LINE_CHARS - 3] + "..." for s in items]
    more = [f"  +{len(items) - cap} more"] if len(items) > cap else []
    return [f"  {s}" for s in cut[:cap]] + more


def render_text(report: DailyReport) -> str:
    """Return a plain-text summary of at most TEXT_MAX_CHARS characters (for Telegram)."""
    r = report
    lines = [
        f"Daily report {r.day} (UTC)",
        f"net PnL after fees and funding: {_usdt(r.net_pnl_usdt)} USDT",
        f"gross {_usdt(r.gross_pnl_usdt)}, fees {_usdt(r.fees_usdt, False)}, funding "
        f"{_usdt(r.funding_usdt)}",
        f"trades: {r.trades}, wins {r.wins}, win rate {_percent(r.win_rate)}",
        f"profit factor: {_factor(r.profit_factor)}",
        f"max drawdown: {_drawdown_text(r)}",
        f"virtual trades: {r.virtual_trades}, win rate {_percent(r.virtual_win_rate)}",
    ]
    if r.per_symbol:
        lines.append("per symbol:")
        lines += _capped(
            [
                f"{s.symbol}: {s.trades} trades, {s.wins} wins, {_usdt(s.net_pnl_usdt)} USDT"
                for s in r.per_symbol
            ],
            TEXT_MAX_SYMBOLS,
        )
    lines.append(f"model: {_model_text(r)}")
    lines.append(f"events: {_events_text(r)}")
    if r.alerts_by_kind:
        lines.append("alerts:")
        lines += _capped([f"{k}: {n}" for k, n in r.alerts_by_kind], TEXT_MAX_KINDS)
    lines.append(_audit_status(r.audit))
    lines += _capped([_audit_line_text(a) for a in r.audit.differences], TEXT_MAX_DIFFERENCES)
    # The capped lists bound the length; the cut is a last resort for absurd figures.
    return "\n".join(lines)[:TEXT_MAX_CHARS]


def _equity_svg(report: DailyReport) -> str:
    """Return an inline SVG of the equity curve: the start at 00:00, then one point per trade."""
    r = report
    start = r.start_equity_usdt if r.start_equity_usdt is not None else ZERO
    points = [(r.start_ms, start), *r.equity_curve]
    low, high = min(e for _, e in points), max(e for _, e in points)
    span_ms, span_usdt = points[-1][0] - r.start_ms, high - low
    width, height = SVG_WIDTH - 2 * SVG_PAD, SVG_HEIGHT - 2 * SVG_PAD
    coords = []
    for ms, equity in points:
        # A single point sits at the left, a flat curve (span 0) across the middle.
        x = SVG_PAD + (width * (ms - r.start_ms) / span_ms if span_ms else 0)
        y = SVG_PAD + (height * float((high - equity) / span_usdt) if span_usdt else height / 2)
        coords.append(f"{x:.1f},{y:.1f}")
    labels = (
        f'<text x="{SVG_PAD + 4}" y="{SVG_PAD + 12}">{html.escape(_usdt(high, False))}'
        f'</text><text x="{SVG_PAD + 4}" y="{SVG_HEIGHT - SVG_PAD - 4}">'
        f"{html.escape(_usdt(low, False))}</text>"
    )
    return (
        f'<svg width="{SVG_WIDTH}" height="{SVG_HEIGHT}" '
        f'viewBox="0 0 {SVG_WIDTH} {SVG_HEIGHT}" role="img" aria-label="equity curve" '
        f'font-size="11" fill="#555"><rect width="100%" height="100%" fill="#fafafa" '
        f'stroke="#ccc"/>{labels}<polyline fill="none" stroke="#1f6feb" stroke-width="2" '
        f'points="{" ".join(coords)}"/></svg>'
    )


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
    ".bad{color:#b00}.ok{color:#070}"
)


def render_html(report: DailyReport) -> str:
    """Return a self-contained HTML page (inline CSS and SVG, no script, no external URL)."""
    r = report
    figures = [
        ("net PnL after fees and funding (USDT)", _usdt(r.net_pnl_usdt)),
        ("gross PnL (USDT)", _usdt(r.gross_pnl_usdt)),
        ("fees (USDT)", _usdt(r.fees_usdt, False)),
        ("funding (USDT)", _usdt(r.funding_usdt)),
        ("trades", r.trades),
        ("wins", r.wins),
        ("win rate", _percent(r.win_rate)),
        ("profit factor", _factor(r.profit_factor)),
        ("max drawdown", _drawdown_text(r)),
        ("start equity (USDT)", "n/a" if r.start_equity_usdt is None else r.start_equity_usdt),
        ("virtual trades", r.virtual_trades),
        ("virtual win rate", _percent(r.virtual_win_rate)),
        ("model", _model_text(r)),
        ("events", _events_text(r)),
    ]
    status = _audit_status(r.audit)
    css = "ok" if r.audit.is_checked and not r.audit.differences else "bad"
    # A total is marked too when the symbol lines of its field already carry the difference.
    differing = {(d.symbol, d.field, d.source) for d in r.audit.differences}
    differing |= {("", field, source) for _, field, source in differing}
    audit_rows = [
        (
            a.symbol or "total",
            a.field,
            a.source,
            a.recorded_usdt,
            a.exchange_usdt,
            a.difference_usdt,
            "differs" if (a.symbol, a.field, a.source) in differing else "ok",
        )
        for a in r.audit.lines or r.audit.differences
    ]
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>Daily report '
        f"{html.escape(r.day)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Daily report {html.escape(r.day)} (UTC)</h1>",
        _table(("figure", "value"), figures),
        "<h2>Equity (USDT)</h2>",
        _equity_svg(r),
        "<h2>Per symbol</h2>",
        _table(
            ("symbol", "trades", "wins", "net PnL (USDT)"),
            ((s.symbol, s.trades, s.wins, _usdt(s.net_pnl_usdt)) for s in r.per_symbol),
        ),
        "<h2>Alerts</h2>",
        _table(("kind", "count"), r.alerts_by_kind),
        f'<h2>Ledger audit</h2><p class="{css}">{html.escape(status)}</p>',
        _table(
            (
                "symbol",
                "field",
                "checked against",
                "recorded (USDT)",
                "exchange (USDT)",
                "difference (USDT)",
                "status",
            ),
            audit_rows,
        )
        if audit_rows
        else "",
        "</body></html>",
    ]
    return "\n".join(parts)
