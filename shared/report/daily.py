"""The daily report: figures of one UTC day's closed trades, its alerts and a ledger audit.

Pure: every input is an argument (the day as "YYYY-MM-DD", the trades and alerts of that day,
the champion model, the equity at the day's start, the income rows of the exchange).

Figures are of the REAL trades whose exit_ms lies in [00:00, next 00:00) UTC, in exit order
(exit_ms, then trade_id); virtual trades are only counted (virtual_trades, virtual_win_rate).
A None PnL part counts as 0.
    net            = sum(net_pnl_usdt)            (each trade's gross - fees + funding)
    win_rate       = wins / trades                (0.0 without trades; is_win is net > 0)
    profit_factor  = sum(net > 0) / |sum(net < 0)|  (None without a losing trade)
    equity curve   = start equity + cumulative net after each trade (from 0 when unknown)
    max drawdown   = largest fall from a running peak (the start included) to a later point,
                     in USDT and in % of that peak (pct None when the start equity is unknown
                     or the peak is not positive)
Events count the day's alerts by kind: restarts (RESTART_KINDS), back-offs (kinds ending in
"_backed_off"), dead-man's switch (DMS_KINDS), kill switch (kinds starting with "kill_switch_").

Ledger audit (`ledger_audit`), per symbol and in total, recorded minus exchange, in USDT:
    realized_pnl  sum(gross_pnl_usdt)   vs  sum(REALIZED_PNL)     both: profit > 0, loss < 0
    commission    sum(fees_usdt)        vs  -sum(COMMISSION)      recorded fees are positive
                  when paid; Binance reports a paid commission as a NEGATIVE amount
    funding       sum(funding_usdt)     vs  sum(FUNDING_FEE)      both: received > 0, paid < 0
and, given the exchange's fills (userTrades), each real trade against its own fills (the fills of
its symbol from its entry_ms to its exit_ms, as the trader selected them when it recorded it):
    realized_pnl  sum(gross_pnl_usdt)   vs  sum(realizedPnl)      (source "user_trades")
    commission    sum(fees_usdt)        vs  sum(commission)       both positive when paid
The income lines audit the day's ledger; the user_trades lines audit each record against the
fills it was made from, whatever day they fell on.
Only rows in USDT count (a commission paid in BNB then shows as a difference). A total line is
listed as a difference only when no symbol line of its field is (it would repeat them), so
small per-symbol gaps that add up past the tolerance are still reported. A trade's funding is
booked on its exit day while the exchange books each payment on its own day: a position held
across 00:00 UTC shows a funding difference.

`report_json` gives the figures as JSON-able values (the daily_reports row); their text, HTML and
SVG forms are shared/report/render.py's.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from shared.schemas.binance.trading import Income, UserTrade
from shared.schemas.guard import Alert
from shared.schemas.records import ModelVersionRecord, TradeRecord

DAY_MS = 86_400_000
# The watchdog's restart alert (procs/watchdog/logic/restarts.py); "process_restarted" is the
# contract's.
RESTART_KINDS = ("process_hung", "process_restarted")
BACKOFF_SUFFIX = "_backed_off"
DMS_KINDS = ("dms_silence", "dms_blind")
KILL_SWITCH_PREFIX = "kill_switch_"
AUDIT_FIELDS = ("realized_pnl", "commission", "funding")
FILL_FIELDS = ("realized_pnl", "commission")  # what userTrades carries
INCOME_FIELDS = {
    "REALIZED_PNL": "realized_pnl",
    "COMMISSION": "commission",
    "FUNDING_FEE": "funding",
}
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class SymbolLine:
    """One symbol's real trades of the day."""

    symbol: str
    trades: int
    wins: int
    net_pnl_usdt: Decimal


@dataclass(frozen=True, slots=True)
class AuditLine:
    """One comparison of recorded and exchange amounts; symbol "" is the total."""

    symbol: str
    field: str  # one of AUDIT_FIELDS
    recorded_usdt: Decimal
    exchange_usdt: Decimal  # in the recorded sign convention (module docstring)
    difference_usdt: Decimal  # recorded - exchange
    source: str = "income"  # "income" (the day's ledger) or "user_trades" (each trade's fills)


@dataclass(frozen=True, slots=True)
class Audit:
    """Every comparison made, and those past the tolerance; is_checked False: not audited."""

    lines: tuple[AuditLine, ...]
    differences: tuple[AuditLine, ...]
    is_checked: bool


NOT_CHECKED = Audit(lines=(), differences=(), is_checked=False)


@dataclass(frozen=True, slots=True)
class DailyReport:
    """The figures of one UTC day (module docstring)."""

    day: str  # "YYYY-MM-DD"
    start_ms: int
    end_ms: int  # exclusive
    trades: int
    wins: int
    win_rate: float  # 0..1
    gross_pnl_usdt: Decimal
    fees_usdt: Decimal
    funding_usdt: Decimal
    net_pnl_usdt: Decimal
    profit_factor: float | None
    max_drawdown_usdt: Decimal
    max_drawdown_pct: float | None
    start_equity_usdt: Decimal | None
    equity_curve: tuple[tuple[int, Decimal], ...]  # (exit_ms, equity after that trade)
    per_symbol: tuple[SymbolLine, ...]
    virtual_trades: int
    virtual_win_rate: float | None  # None without virtual trades
    model_version: int | None
    model_auc: float | None
    model_log_loss: float | None
    restarts: int
    backoffs: int
    dms_events: int
    kill_switch_events: int
    alerts_by_kind: tuple[tuple[str, int], ...]  # sorted by kind
    audit: Audit


def day_bounds_ms(day: str) -> tuple[int, int]:
    """Return [00:00, next 00:00) UTC of "YYYY-MM-DD" in ms; raises ValueError for another form."""
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        parsed = None
    if parsed is None or parsed.isoformat() != day:
        raise ValueError(f"report: day {day!r} is not a YYYY-MM-DD date")
    start_ms = (parsed - date(1970, 1, 1)).days * DAY_MS
    return start_ms, start_ms + DAY_MS


def _real_closed(trades: Iterable[TradeRecord]) -> list[TradeRecord]:
    return [t for t in trades if not t.is_virtual and t.exit_ms is not None]


def _sum(values: Iterable[Decimal | None]) -> Decimal:
    return sum((v for v in values if v is not None), ZERO)


def ledger_audit(
    trades: Sequence[TradeRecord],
    income: Sequence[Income],
    fills: Sequence[UserTrade] | None = None,
    tolerance_usdt: Decimal = Decimal("0.01"),
) -> Audit:
    """Compare the closed real trades' PnL, fees and funding with the exchange's income rows
    and, when `fills` (userTrades) are given, each trade's PnL and fees with its own fills.

    Nothing is filtered by time but the fills of each trade: pass the day's trades, the day's
    income rows and the fills of the traded symbols from the earliest entry on."""
    closed = _real_closed(trades)
    recorded: dict[tuple[str, str], Decimal] = {}
    exchange: dict[tuple[str, str], Decimal] = {}
    for t in closed:
        for field, value in zip(
            AUDIT_FIELDS, (t.gross_pnl_usdt, t.fees_usdt, t.funding_usdt), strict=True
        ):
            recorded[t.symbol, field] = recorded.get((t.symbol, field), ZERO) + (value or ZERO)
    for row in income:
        kind = INCOME_FIELDS.get(row.income_type)
        if kind is None or row.asset != "USDT":
            continue
        # Binance: a paid commission is negative; the recorded fees are positive when paid.
        amount = -row.amount if kind == "commission" else row.amount
        exchange[row.symbol, kind] = exchange.get((row.symbol, kind), ZERO) + amount
    lines, differences = _compare(recorded, exchange, AUDIT_FIELDS, "income", tolerance_usdt)
    if fills is not None:
        by_fills: dict[tuple[str, str], Decimal] = {}
        for t in closed:
            assert t.exit_ms is not None  # _real_closed
            for f in fills:
                if f.symbol == t.symbol and t.entry_ms <= f.time_ms <= t.exit_ms:
                    key = (t.symbol, "realized_pnl")
                    by_fills[key] = by_fills.get(key, ZERO) + f.realized_pnl
                    if f.commission_asset == "USDT":
                        key = (t.symbol, "commission")
                        by_fills[key] = by_fills.get(key, ZERO) + f.commission
        mine = {k: v for k, v in recorded.items() if k[1] in FILL_FIELDS}
        more, more_differences = _compare(
            mine, by_fills, FILL_FIELDS, "user_trades", tolerance_usdt
        )
        lines += more
        differences += more_differences
    return Audit(lines=tuple(lines), differences=tuple(differences), is_checked=True)


def _compare(
    recorded: dict[tuple[str, str], Decimal],
    exchange: dict[tuple[str, str], Decimal],
    fields: Sequence[str],
    source: str,
    tolerance_usdt: Decimal,
) -> tuple[list[AuditLine], list[AuditLine]]:
    """Return the lines per symbol and field plus a total per field, and those past the
    tolerance (a total only when no symbol line of its field is: it would repeat them)."""
    symbols = sorted({s for s, _ in recorded} | {s for s, _ in exchange})
    lines = [_audit_line(s, f, recorded, exchange, source) for s in symbols for f in fields]
    differences = [a for a in lines if abs(a.difference_usdt) > tolerance_usdt]
    for field in fields:
        of_field = [a for a in lines if a.field == field]
        total = AuditLine(
            "",
            field,
            _sum(a.recorded_usdt for a in of_field),
            _sum(a.exchange_usdt for a in of_field),
            _sum(a.difference_usdt for a in of_field),
            source,
        )
        lines.append(total)
        is_explained = any(a.field == field for a in differences)
        if abs(total.difference_usdt) > tolerance_usdt and not is_explained:
            differences.append(total)
    return lines, differences


def _audit_line(
    symbol: str,
    field: str,
    recorded: dict[tuple[str, str], Decimal],
    exchange: dict[tuple[str, str], Decimal],
    source: str,
) -> AuditLine:
    mine, theirs = recorded.get((symbol, field), ZERO), exchange.get((symbol, field), ZERO)
    return AuditLine(symbol, field, mine, theirs, mine - theirs, source)


def _rate(wins: int, count: int) -> float:
    return wins / count if count else 0.0


def _drawdown(
    start: Decimal | None, curve: Sequence[tuple[int, Decimal]]
) -> tuple[Decimal, float | None]:
    peak = start if start is not None else ZERO
    worst, worst_peak = ZERO, peak
    for _, equity in curve:
        peak = max(peak, equity)
        if peak - equity > worst:
            worst, worst_peak = peak - equity, peak
    if start is None or worst_peak <= 0:
        return worst, None
    return worst, float(worst / worst_peak * 100)


def build_daily_report(
    day: str,
    trades: Sequence[TradeRecord],
    alerts: Sequence[Alert],
    model: ModelVersionRecord | None,
    start_equity_usdt: Decimal | None,
    audit: Audit,
) -> DailyReport:
    """Return the day's report; trades and alerts outside the day are ignored."""
    start_ms, end_ms = day_bounds_ms(day)
    in_day = [t for t in trades if t.exit_ms is not None and start_ms <= t.exit_ms < end_ms]
    real = sorted(_real_closed(in_day), key=lambda t: (t.exit_ms or 0, t.trade_id))
    virtual = [t for t in in_day if t.is_virtual]
    nets = [t.net_pnl_usdt or ZERO for t in real]
    losses = -_sum(n for n in nets if n < 0)
    curve: list[tuple[int, Decimal]] = []
    equity = start_equity_usdt if start_equity_usdt is not None else ZERO
    for t, net in zip(real, nets, strict=True):
        equity += net
        curve.append((t.exit_ms or 0, equity))
    drawdown_usdt, drawdown_pct = _drawdown(start_equity_usdt, curve)
    per_symbol = tuple(
        SymbolLine(
            symbol,
            len(mine),
            sum(t.is_win is True for t in mine),
            _sum(t.net_pnl_usdt for t in mine),
        )
        for symbol in sorted({t.symbol for t in real})
        for mine in [[t for t in real if t.symbol == symbol]]
    )
    kinds = [a.kind for a in alerts if start_ms <= a.ts_ms < end_ms]
    wins = sum(t.is_win is True for t in real)
    virtual_wins = sum(t.is_win is True for t in virtual)
    return DailyReport(
        day=day,
        start_ms=start_ms,
        end_ms=end_ms,
        trades=len(real),
        wins=wins,
        win_rate=_rate(wins, len(real)),
        gross_pnl_usdt=_sum(t.gross_pnl_usdt for t in real),
        fees_usdt=_sum(t.fees_usdt for t in real),
        funding_usdt=_sum(t.funding_usdt for t in real),
        net_pnl_usdt=_sum(nets),
        profit_factor=float(_sum(n for n in nets if n > 0) / losses) if losses else None,
        max_drawdown_usdt=drawdown_usdt,
        max_drawdown_pct=drawdown_pct,
        start_equity_usdt=start_equity_usdt,
        equity_curve=tuple(curve),
        per_symbol=per_symbol,
        virtual_trades=len(virtual),
        virtual_win_rate=_rate(virtual_wins, len(virtual)) if virtual else None,
        model_version=model.version if model else None,
        model_auc=model.auc if model else None,
        model_log_loss=model.log_loss if model else None,
        restarts=sum(k in RESTART_KINDS for k in kinds),
        backoffs=sum(k.endswith(BACKOFF_SUFFIX) for k in kinds),
        dms_events=sum(k in DMS_KINDS for k in kinds),
        kill_switch_events=sum(k.startswith(KILL_SWITCH_PREFIX) for k in kinds),
        alerts_by_kind=tuple(sorted(Counter(kinds).items())),
        audit=audit,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON (and PostgreSQL jsonb) has no NaN or infinity
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def report_json(report: DailyReport) -> dict[str, Any]:
    """Return the report as JSON-able values for the daily_reports row: Decimals as strings,
    floats as floats (None when not finite)."""
    result: dict[str, Any] = _jsonable(dataclasses.asdict(report))
    return result
