"""The chaos drill's view of the exchange: a tiny signed-REST client of its own and the watcher that
polls exchange truth every 250 ms and measures how long each position rests without a stop.

Shares no code with the guard (nor with shared/exchange): what it believes comes from the paper
exchange's REST alone. Its requests leave from their own loopback addresses (127.0.0.2-.3, one
per poll in turn), so their weight is not counted against the stack's 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

POLL_S = 0.25
MAX_GAP_S = 2.0  # a position must have its stop within this, in time the exchange was usable
POLL_IPS = ("127.0.0.2", "127.0.0.3")
TRADE_IP = "127.0.0.4"


class Exchange:
    """Signed and control requests to the paper exchange, each on a fresh connection."""

    def __init__(self, port: int, api_key: str, api_secret: str) -> None:
        self.port = port
        self.api_key = api_key
        self.api_secret = api_secret.encode()

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        is_signed: bool = False,
        ip: str = TRADE_IP,
        timeout_s: float = 3.0,
    ) -> tuple[int, Any]:
        """Send one request; return (HTTP status, decoded JSON body); OSError on transport."""
        query = dict(params or {})
        if is_signed:
            query["timestamp"] = int(time.time() * 1000)
            query["recvWindow"] = 10_000
        text = urllib.parse.urlencode(query)
        if is_signed:
            text += (
                "&signature=" + hmac.new(self.api_secret, text.encode(), hashlib.sha256).hexdigest()
            )
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=timeout_s, source_address=(ip, 0)
        )
        try:
            conn.request(
                method, f"{path}?{text}" if text else path, headers={"X-MBX-APIKEY": self.api_key}
            )
            reply = conn.getresponse()
            body = reply.read()
        finally:
            conn.close()
        try:
            return reply.status, json.loads(body) if body else None
        except ValueError:
            return reply.status, body.decode(errors="replace")

    def sim(self, path: str, **params: Any) -> Any:
        """POST a /_sim/ control call; raise RuntimeError unless it answered 200."""
        status, body = self.request("POST", f"/_sim/{path}", params, timeout_s=10.0)
        if status != 200:
            raise RuntimeError(f"/_sim/{path}: {status} {body}")
        return body


def is_covered(amount: Decimal, algos: list[dict[str, Any]]) -> bool:
    """Whether resting stops cover the whole position `amount` on its losing side."""
    close_side = "SELL" if amount > 0 else "BUY"
    stops = [
        a
        for a in algos
        if a.get("orderType") == "STOP_MARKET"
        and a.get("side") == close_side
        and a.get("algoStatus", "NEW") == "NEW"
    ]
    if any(a.get("closePosition") for a in stops):
        return True
    reduce_qty = sum((Decimal(a["quantity"]) for a in stops if a.get("reduceOnly")), Decimal(0))
    return reduce_qty >= abs(amount)


@dataclass
class Gap:
    """One stretch in which a symbol's position was seen without a covering stop."""

    symbol: str
    amount: str
    since: float  # time.time() of the first poll that saw it uncovered
    last_seen: float
    evidence: dict[str, Any]
    is_violation: bool = False


@dataclass
class Watcher:
    """Polls positionRisk and the open algo orders every 250 ms from the drill's own addresses."""

    exchange: Exchange
    impaired: list[tuple[float, float]] = field(default_factory=list)  # (start, end) wall s
    polls: int = 0
    blind_polls: int = 0
    worst_gap_s: float = 0.0  # wall time uncovered
    worst_charged_s: float = 0.0  # the same, less the time the exchange was impaired on purpose
    uncovered_episodes: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)
    positions: dict[str, Decimal] = field(default_factory=dict)
    last_ok: float = 0.0
    is_all_covered: bool = True
    _gaps: dict[str, Gap] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def add_impaired(self, start: float, end: float) -> None:
        with self._lock:
            self.impaired.append((start, end))

    def charged_s(self, since: float, until: float) -> float:
        """Seconds in [since, until] outside every impaired window (windows may overlap)."""
        with self._lock:
            spans = sorted((max(s, since), min(e, until)) for s, e in self.impaired)
        free, cursor = 0.0, since
        for s, e in spans:
            if e <= s:
                continue
            if s > cursor:
                free += s - cursor
            cursor = max(cursor, e)
        return free + max(0.0, until - cursor)

    def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            started = time.time()
            try:
                self._poll(started, POLL_IPS[turn % len(POLL_IPS)])
            except Exception:  # the exchange is down, stopped or failing on purpose
                self.blind_polls += 1
            turn += 1
            self._stop.wait(max(0.0, POLL_S - (time.time() - started)))

    def _poll(self, now: float, ip: str) -> None:
        status, rows = self.exchange.request(
            "GET", "/fapi/v3/positionRisk", is_signed=True, ip=ip, timeout_s=2.0
        )
        if status != 200:
            raise RuntimeError(status)
        positions: dict[str, Decimal] = {}
        for row in rows:
            amount = Decimal(row["positionAmt"])
            if amount:
                positions[row["symbol"]] = positions.get(row["symbol"], Decimal(0)) + amount
        algos: dict[str, list[dict[str, Any]]] = {}
        for symbol in positions:  # read after the positions: a stop placed meanwhile counts
            status, orders = self.exchange.request(
                "GET", "/fapi/v1/openAlgoOrders", {"symbol": symbol}, is_signed=True, ip=ip
            )
            if status != 200:
                raise RuntimeError(status)
            algos[symbol] = orders
        self.polls += 1
        self.last_ok = now
        self.positions = positions
        uncovered = {s for s, a in positions.items() if not is_covered(a, algos[s])}
        self.is_all_covered = not uncovered
        for symbol in list(self._gaps):
            gap = self._gaps[symbol]
            if symbol not in uncovered or str(positions[symbol]) != gap.amount:
                self._close_gap(gap, now)
                del self._gaps[symbol]
        for symbol in uncovered:
            if symbol in self._gaps:
                gap = self._gaps[symbol]
            else:
                gap = self._gaps[symbol] = Gap(
                    symbol,
                    str(positions[symbol]),
                    now,
                    now,
                    {"first_seen_algo_orders": algos[symbol]},
                )
                self.uncovered_episodes += 1
            gap.last_seen = now
            charged = self.charged_s(gap.since, now)
            if charged > MAX_GAP_S and not gap.is_violation:
                gap.is_violation = True
                self.violations.append(
                    {
                        "kind": "position_without_stop",
                        "time": time.strftime("%H:%M:%S", time.gmtime(gap.since))
                        + f".{int(gap.since % 1 * 1000):03d}Z",
                        "time_s": round(gap.since, 3),
                        "symbol": symbol,
                        "position_amt": gap.amount,
                        "evidence": {
                            **gap.evidence,
                            "algo_orders_at_violation": algos[symbol],
                            "uncovered_s_at_report": round(now - gap.since, 3),
                            "charged_s_at_report": round(charged, 3),
                        },
                    }
                )

    def _close_gap(self, gap: Gap, now: float) -> None:
        # The gap lasted at least until the last poll that saw it; the stop came at most by `now`.
        wall = now - gap.since
        charged = self.charged_s(gap.since, now)
        self.worst_gap_s = max(self.worst_gap_s, wall)
        self.worst_charged_s = max(self.worst_charged_s, charged)
        for v in self.violations:
            if v["time_s"] == round(gap.since, 3) and v["symbol"] == gap.symbol:
                v["uncovered_s"] = round(wall, 3)
                v["charged_s"] = round(charged, 3)

    def finish(self) -> None:
        """Close the gaps still open (they count up to the last poll)."""
        for gap in list(self._gaps.values()):
            self._close_gap(gap, self.last_ok or time.time())
        self._gaps.clear()


def duplicate_entries(ex: Exchange, symbols: tuple[str, ...]) -> tuple[int, list[dict[str, Any]]]:
    """Count the trader's filled entries; return it with those sharing one intent
    (`slt-<signal>-entry-<n>`)."""
    found, filled = [], 0
    for symbol in symbols:
        status, orders = ex.request(
            "GET", "/fapi/v1/allOrders", {"symbol": symbol, "limit": 1000}, is_signed=True
        )
        if status != 200:
            continue
        by_intent: dict[str, list[str]] = {}
        for o in orders:
            m = re.match(r"^slt-(.+)-entry-\d+$", o["clientOrderId"])
            if m and Decimal(o["executedQty"]) > 0:
                by_intent.setdefault(m.group(1), []).append(o["clientOrderId"])
                filled += 1
        found += [
            {"kind": "duplicate_entry", "symbol": symbol, "signal": k, "orders": v}
            for k, v in by_intent.items()
            if len(v) > 1
        ]
    return filled, found
