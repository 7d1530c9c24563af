"""Renderings of a status snapshot: the HTML page, Prometheus metrics and terminal text.

Rules:
- The page is server-rendered and self-contained: inline CSS, a `<meta http-equiv="refresh">`,
  no script. Every value shown is html-escaped. Program states are coloured badges (RUNNING
  green, STARTING/STOPPING amber, anything else red); a position without a resting stop carries a
  red UNPROTECTED badge.
- Metrics follow the text exposition format 0.0.4: each family has # HELP and # TYPE (all
  gauges), label values are escaped (backslash, double quote, newline), unknown values are left
  out rather than invented.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from decimal import Decimal

from shared.schemas.status import PositionStatus, StatusSnapshot

GREEN, RED, AMBER = "#1a7f37", "#cf222e", "#9a6700"
AMBER_STATES = ("STARTING", "STOPPING")  # transitions; every other non-RUNNING state is red

_CSS = f"""
body {{ font: 18px/1.45 "DejaVu Sans", system-ui, sans-serif; margin: 20px; color: #1f2328;
       background: #ffffff; }}
h1 {{ font-size: 26px; margin: 0 0 8px; }} h2 {{ font-size: 22px; margin: 22px 0 6px; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #d0d7de; padding: 6px 12px; text-align: left; }}
th {{ background: #f6f8fa; }} td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.badge {{ display: inline-block; padding: 4px 12px; border-radius: 6px; color: #ffffff;
          font-weight: bold; }}
.ok {{ background: {GREEN}; }} .bad {{ background: {RED}; }} .warn {{ background: {AMBER}; }}
.banner {{ padding: 12px 16px; border-radius: 6px; color: #ffffff; font-weight: bold; }}
.muted {{ color: #59636e; }} ul.errors {{ color: {RED}; }}
"""


def _num(value: Decimal | float | int | None, places: int | None = None) -> str:
    if value is None:
        return "-"
    if places is not None:
        return f"{value:.{places}f}"
    return f"{value.normalize():f}" if isinstance(value, Decimal) else str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f} s"
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3600)
    return f"{days}d {hours}h" if days else f"{hours}h {s // 60:02d}m"


def _utc(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _side(amount: Decimal) -> str:
    return "LONG" if amount > 0 else "SHORT"


def _state_class(state: str) -> str:
    return "ok" if state == "RUNNING" else "warn" if state in AMBER_STATES else "bad"


def _stops_text(p: PositionStatus) -> str:
    return ", ".join(f"{x.client_id} @ {_num(x.trigger_price)}" for x in p.stops)


def _table(headers: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    """Return an HTML table; cells are already escaped HTML, headers are plain text."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _badge(text: str, css: str) -> str:
    return f'<span class="badge {css}">{html.escape(text)}</span>'


def render_status_html(s: StatusSnapshot, refresh_s: float) -> str:
    """Return the self-contained status page (inline CSS, reloads every refresh_s, no script)."""
    e = html.escape
    programs = _table(
        ["Program", "State", "PID", "Uptime", "Heartbeat age", "Loop lag", "Restarts"],
        [
            [
                e(p.name),
                _badge(p.state, _state_class(p.state)),
                str(p.pid),
                _duration(p.uptime_s),
                _duration(p.heartbeat_age_s),
                e(_num(p.loop_lag_ms, 1)) + " ms",
                e(_num(p.restarts)),
            ]
            for p in s.programs
        ],
        {2, 3, 4, 5, 6},
    )
    positions = _table(
        ["Symbol", "Side", "Amount", "Entry", "Mark", "uPnL USDT", "Liquidation distance", "Stop"],
        [
            [
                e(p.symbol),
                _side(p.amount),
                e(_num(p.amount)),
                e(_num(p.entry_price)),
                e(_num(p.mark_price)),
                e(_num(p.unrealized_pnl_usdt, 2)),
                e(_num(p.liquidation_distance_pct, 1)) + " %",
                e(_stops_text(p)) if p.is_protected else _badge("UNPROTECTED", "bad"),
            ]
            for p in s.positions
        ],
        {2, 3, 4, 5, 6},
    )
    orders = _table(
        ["Symbol", "Client id", "Side", "Type", "Price", "Quantity"],
        [
            [
                e(o.symbol),
                e(o.client_id),
                e(o.side),
                e(o.type),
                e(_num(o.price)),
                e(_num(o.quantity)),
            ]
            for o in s.open_orders
        ],
        {4, 5},
    )
    feed = _table(["Feed", "Value"], [[e(k), e(_num(v))] for k, v in sorted(s.feed.items())], {1})
    halt = (
        f'<p class="banner bad">HALTED: {e(s.halt_reason)}. No new positions are opened.</p>'
        if s.halted
        else '<p class="muted">Not halted: new entries allowed.</p>'
    )
    errors = (
        '<h2>Errors</h2><ul class="errors">'
        + "".join(f"<li>{e(x)}</li>" for x in s.errors)
        + "</ul>"
        if s.errors
        else ""
    )
    model = (
        f"version {s.model_version}, AUC {_num(s.model_auc, 3)}"
        if s.model_version is not None
        else "no champion model"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{max(1, round(refresh_s))}">'
        f"<title>SelfLearningTrader status</title><style>{_CSS}</style></head><body>"
        f"<h1>SelfLearningTrader ({e(s.mode)})</h1>"
        f'<p class="muted">instance {e(s.instance)}, {_utc(s.ts_ms)}</p>{halt}'
        f"<p>Equity <b>{e(_num(s.equity_usdt, 2))} USDT</b>, wallet "
        f"{e(_num(s.wallet_usdt, 2))} USDT. Model: {e(model)}.</p>{errors}"
        f"<h2>Programs</h2>{programs}<h2>Positions</h2>"
        f"{positions if s.positions else '<p>No open position.</p>'}"
        f"<h2>Open orders</h2>{orders if s.open_orders else '<p>No open order.</p>'}"
        f"<h2>Feed</h2>{feed if s.feed else '<p>No feed statistics.</p>'}</body></html>\n"
    )


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(value: Decimal | float | int | bool) -> str:
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number) if not number.is_integer() else str(int(number))


def render_metrics(s: StatusSnapshot) -> str:
    """Return the snapshot as Prometheus text exposition format 0.0.4 (every metric a gauge)."""
    out: list[str] = []

    def gauge(name: str, help_text: str, samples: list[tuple[str, str, object]]) -> None:
        out.extend((f"# HELP {name} {help_text}", f"# TYPE {name} gauge"))
        for label, label_value, value in samples:
            if isinstance(value, Decimal | float | int):  # None: no sample
                labels = f'{{{label}="{_label(label_value)}"}}' if label else ""
                out.append(f"{name}{labels} {_sample(value)}")

    progs, pos = s.programs, s.positions
    gauge(
        "slt_program_up",
        "Whether supervisord reports the program RUNNING.",
        [("program", p.name, int(p.state == "RUNNING")) for p in progs],
    )
    gauge(
        "slt_program_uptime_seconds",
        "Seconds since the program was started.",
        [("program", p.name, p.uptime_s) for p in progs],
    )
    gauge(
        "slt_heartbeat_age_seconds",
        "Seconds since the program's last heartbeat.",
        [("program", p.name, p.heartbeat_age_s) for p in progs],
    )
    gauge(
        "slt_loop_lag_milliseconds",
        "Event-loop lag measured by the program's heartbeat.",
        [("program", p.name, p.loop_lag_ms) for p in progs],
    )
    gauge(
        "slt_program_restarts",
        "Restarts seen in the heartbeat table.",
        [("program", p.name, p.restarts) for p in progs],
    )
    gauge(
        "slt_position_amount",
        "Signed position size in base asset (short < 0).",
        [("symbol", p.symbol, p.amount) for p in pos],
    )
    gauge(
        "slt_position_unrealized_pnl_usdt",
        "Unrealized PnL of the position in USDT.",
        [("symbol", p.symbol, p.unrealized_pnl_usdt) for p in pos],
    )
    gauge(
        "slt_position_liquidation_distance_percent",
        "Distance from mark to liquidation.",
        [("symbol", p.symbol, p.liquidation_distance_pct) for p in pos],
    )
    gauge(
        "slt_position_protected",
        "Whether a resting stop closes the position.",
        [("symbol", p.symbol, int(p.is_protected)) for p in pos],
    )
    gauge("slt_open_orders", "Open regular and conditional orders.", [("", "", len(s.open_orders))])
    gauge(
        "slt_equity_usdt",
        "Margin balance (wallet plus unrealized PnL) in USDT.",
        [("", "", s.equity_usdt)],
    )
    gauge("slt_wallet_usdt", "Wallet balance in USDT.", [("", "", s.wallet_usdt)])
    gauge(
        "slt_feed",
        "Feed statistics by name (ages in seconds, counts).",
        [("stat", k, v) for k, v in sorted(s.feed.items())],
    )
    gauge("slt_halted", "Whether new entries are halted.", [("", "", int(s.halted))])
    gauge("slt_model_version", "Version of the champion model.", [("", "", s.model_version)])
    gauge("slt_model_auc", "Holdout ROC AUC of the champion model.", [("", "", s.model_auc)])
    gauge(
        "slt_status_errors",
        "Sources that could not be read for this snapshot.",
        [("", "", len(s.errors))],
    )
    return "\n".join(out) + "\n"


def _columns(rows: list[list[str]]) -> list[str]:
    if len(rows) == 1:  # headers only
        return ["  none"]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]


def render_status_text(s: StatusSnapshot) -> str:
    """Return the snapshot as plain terminal text (`slt status`)."""
    lines = [
        f"SelfLearningTrader {s.mode}, instance {s.instance}, {_utc(s.ts_ms)}",
        f"HALTED: {s.halt_reason}" if s.halted else "not halted",
        f"equity {_num(s.equity_usdt, 2)} USDT, wallet {_num(s.wallet_usdt, 2)} USDT",
        f"model version {s.model_version}, AUC {_num(s.model_auc, 3)}"
        if s.model_version is not None
        else "model: no champion",
        "",
        "Programs",
    ]
    lines += _columns(
        [["name", "state", "pid", "uptime", "heartbeat", "lag ms", "restarts"]]
        + [
            [
                p.name,
                p.state,
                str(p.pid),
                _duration(p.uptime_s),
                _duration(p.heartbeat_age_s),
                _num(p.loop_lag_ms, 1),
                _num(p.restarts),
            ]
            for p in s.programs
        ]
    )
    lines += ["", "Positions"]
    lines += _columns(
        [["symbol", "side", "amount", "entry", "mark", "uPnL", "liq dist %", "stop"]]
        + [
            [
                p.symbol,
                _side(p.amount),
                _num(p.amount),
                _num(p.entry_price),
                _num(p.mark_price),
                _num(p.unrealized_pnl_usdt, 2),
                _num(p.liquidation_distance_pct, 1),
                _stops_text(p) if p.is_protected else "UNPROTECTED",
            ]
            for p in s.positions
        ]
    )
    lines += ["", f"Open orders: {len(s.open_orders)}"]
    lines += [
        f"  {o.symbol} {o.client_id} {o.side} {o.type} {_num(o.price)} {_num(o.quantity)}"
        for o in s.open_orders
    ]
    if s.errors:
        lines += ["", "Errors"] + [f"  - {x}" for x in s.errors]
    return "\n".join(lines) + "\n"
