#!/usr/bin/env python3
"""The chaos drill (issue 13): start a private paper stack, trade in it (the trader, plus the drill
by hand as a second trader would), inject a seeded random fault every few seconds for N minutes,
and check from the exchange's truth alone that no position rests without a stop for over 2 s.

    scripts/chaos.py [--minutes N] [--seed S] [--report FILE] [--speed X]

Prints a table (fault, count, recovered p50/max s) and exits 1 on any violation. The stack is
always shut down and its run dir removed, also on Ctrl-C. Shares no code with the guard.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import ROUND_UP, Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's shared/ package

import redis
from chaos_stack import REPO_ROOT, Stack, start_stack, stop_stack
from chaos_watch import Exchange, Watcher, duplicate_entries

from shared.cache import Keys, redis_url
from shared.config import load_config
from shared.stack import instance_id

PROGRAMS = (
    "redis",
    "postgres",
    "paper-exchange",
    "guard",
    "feed",
    "trader",
    "reporter",
    "watchdog",
)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "LTCUSDT")
# Drawn with these weights (a kill three times as often as the others, a REST burst twice).
FAULT_KINDS: tuple[str, ...] = ("kill", "kill", "kill", "stop", "restart", "ws_drop", "ws_stall")
FAULT_KINDS += ("http", "http", "listenkey", "latency", "price", "clock")
FAULT_GAP_S = (2.0, 5.0)  # real seconds between two injections


@dataclass
class Fault:
    kind: str  # table row, e.g. "kill -9 guard"
    at: float  # wall time injected
    ends: float  # wall time the fault condition is lifted (SIGCONT, unstall, burst over)
    recovered_s: float | None = None


@dataclass
class Drill:
    stack: Stack
    ex: Exchange
    watch: Watcher
    rng: random.Random
    faults: list[Fault] = field(default_factory=list)
    undo: list[tuple[float, str, Any]] = field(default_factory=list)  # (due, action, arg)
    stopped: dict[int, str] = field(default_factory=dict)  # SIGSTOPped pid -> program
    restarts: list[subprocess.Popen[str]] = field(default_factory=list)
    hand_trades: int = 0
    kills: int = 0
    events: list[tuple[float, str]] = field(default_factory=list)  # (wall s, what), for evidence
    filters: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)  # step, notional
    end: float = float("inf")  # wall time the drill ends: holds (SIGSTOP) are cut to end by then
    lease: tuple[redis.Redis, str] | None = None  # (client, key) of the guard's entry lease
    hand_trades_held: int = 0  # hand trades not sent: the guard held no lease

    # ---- faults -----------------------------------------------------------------------------

    def inject(self) -> None:
        now = time.time()
        kind = self.rng.choice(FAULT_KINDS)
        if kind in ("kill", "stop", "restart"):
            program = self.rng.choice(PROGRAMS)
            state, pid = self.stack.states().get(program, ("?", 0))
            if state != "RUNNING" or pid <= 0 or (kind == "stop" and self.stopped):
                return  # one process stopped at a time; a program that is down is left alone
            impaired = program == "paper-exchange"
            if kind == "kill":
                os.kill(pid, signal.SIGKILL)
                self.kills += 1
                self._add(f"kill -9 {program}", now, now, impaired)
            elif kind == "stop":
                hold_s = min(self.rng.uniform(5, 60), max(5.0, self.end - now))
                os.kill(pid, signal.SIGSTOP)
                self.stopped[pid] = program
                self.undo.append((now + hold_s, "cont", pid))
                self._add(f"SIGSTOP {program}", now, now + hold_s, impaired)
            else:
                cmd = [str(REPO_ROOT / "scripts" / "ctl"), "restart", program]
                self.restarts.append(
                    subprocess.Popen(cmd, env=self.stack.env, stdout=subprocess.DEVNULL, text=True)
                )
                self._add(f"restart {program}", now, now, impaired)
        elif kind == "ws_drop":
            self.ex.sim("ws/drop")
            self._add("ws drop", now, now)
        elif kind == "ws_stall":
            hold_s = self.rng.uniform(3, 15)
            self.ex.sim("ws/stall")
            self.undo.append((now + hold_s, "sim", "ws/unstall"))
            self._add("ws stall", now, now + hold_s)
        elif kind == "http":
            status = self.rng.choice([500, 503, 429, 418])
            hold_s = round(self.rng.uniform(1, 8), 1)
            self.ex.sim("http/fail", status=status, seconds=hold_s)
            self._add(f"rest {status} burst", now, now + hold_s, impaired=True)
        elif kind == "listenkey":
            self.ex.sim("listenkeys/expire")
            self._add("listenKey expiry", now, now)
        elif kind == "latency":
            hold_s = self.rng.uniform(3, 10)
            self.ex.sim("latency", ms=self.rng.randint(100, 1000))
            self.undo.append((now + hold_s, "latency", 0))
            self._add("rest latency", now, now + hold_s, impaired=True)
        elif kind == "price":
            self._price_jump(now)
        else:
            self.ex.sim("clock/jump", ms=self.rng.randint(60_000, 900_000))
            self._add("clock jump", now, now)

    def _price_jump(self, now: float) -> None:
        """Pin a price through a resting stop (or 1-3 % away), for 2-6 s."""
        stops = []
        for symbol in list(self.watch.positions):
            status, orders = self.ex.request(
                "GET", "/fapi/v1/openAlgoOrders", {"symbol": symbol}, is_signed=True
            )
            if status == 200:
                stops += [o for o in orders if o["orderType"] == "STOP_MARKET"]
        hold_s = self.rng.uniform(2, 6)
        if stops:
            stop = self.rng.choice(stops)
            trigger = Decimal(stop["triggerPrice"])
            through = Decimal("0.995") if stop["side"] == "SELL" else Decimal("1.005")
            symbol, price, kind = stop["symbol"], trigger * through, "price through stop"
        else:
            symbol = self.rng.choice(SYMBOLS)
            _, ticker = self.ex.request("GET", "/fapi/v1/ticker/price", {"symbol": symbol})
            move = Decimal(str(1 + self.rng.choice([-1, 1]) * self.rng.uniform(0.01, 0.03)))
            price, kind = Decimal(ticker["price"]) * move, "price jump"
        self.ex.sim("price", symbol=symbol, price=f"{price:.8f}")
        self.undo.append((now + hold_s, "unpin", symbol))
        self._add(kind, now, now + hold_s)

    def _add(self, kind: str, at: float, ends: float, impaired: bool = False) -> None:
        self.faults.append(Fault(kind, at, ends))
        self.events.append((at, kind if ends <= at else f"{kind} for {ends - at:.1f} s"))
        if impaired:
            # The exchange itself refuses or is away: the 2 s budget starts when it answers again
            # (a stopped, killed or restarted paper exchange: when the drill's next poll answers).
            is_exchange_away = not kind.startswith("rest ")
            self.watch.add_impaired(at, float("inf") if is_exchange_away else ends)

    def run_undo(self, is_all: bool = False) -> None:
        now = time.time()
        due = [u for u in self.undo if is_all or u[0] <= now]
        self.undo = [u for u in self.undo if u not in due]
        for _, action, arg in due:
            with contextlib.suppress(Exception):
                if action == "cont":
                    self.stopped.pop(arg, None)
                    os.kill(arg, signal.SIGCONT)
                elif action == "sim":
                    self.ex.sim(arg)
                elif action == "latency":
                    self.ex.sim("latency", ms=0)
                elif action == "unpin":
                    self.ex.sim("price", symbol=arg)

    def settle_exchange_windows(self) -> None:
        """End the open-ended impaired windows (exchange killed) once the exchange answers."""
        if self.watch.last_ok:
            with self.watch._lock:
                self.watch.impaired = [
                    (s, e if e != float("inf") or s > self.watch.last_ok else self.watch.last_ok)
                    for s, e in self.watch.impaired
                ]

    def update_recovery(self) -> bool:
        """Mark faults recovered once every program runs and every position is covered."""
        now = time.time()
        try:
            healthy = all(s == "RUNNING" for s, _ in self.stack.states().values())
        except Exception:
            healthy = False
        fresh = self.watch.last_ok > now - 1.0
        healthy = healthy and fresh and self.watch.is_all_covered
        for f in self.faults:
            if f.recovered_s is None and healthy and now >= f.ends:
                f.recovered_s = now - f.at
        self.restarts = [p for p in self.restarts if p.poll() is None]
        return healthy

    # ---- the drill's own trades -----------------------------------------------------------

    def load_filters(self) -> None:
        _, info = self.ex.request("GET", "/fapi/v1/exchangeInfo")
        for s in info["symbols"]:
            f = {x["filterType"]: x for x in s["filters"]}
            self.filters[s["symbol"]] = (
                Decimal(f["MARKET_LOT_SIZE"]["stepSize"]),
                Decimal(f["MIN_NOTIONAL"]["notional"]),
            )

    def has_lease(self) -> bool:
        """Whether the guard's entry lease is in Redis (the rule the stack's trader obeys)."""
        if self.lease is None:
            return True
        client, key = self.lease
        try:
            return bool(client.exists(key))
        except redis.RedisError:
            return False

    def hand_trade(self) -> None:
        """Open a small position, or close (part of) one, with a MARKET order by hand."""
        if not self.has_lease():
            self.hand_trades_held += 1
            return
        positions = dict(self.watch.positions)
        if positions and self.rng.random() < 0.5:
            symbol = self.rng.choice(sorted(positions))
            amount = positions[symbol]
            params: dict[str, Any] = {"side": "SELL" if amount > 0 else "BUY"}
            params["quantity"] = str(abs(amount))
            params["reduceOnly"] = "true"
        else:
            symbol = self.rng.choice(SYMBOLS)
            _, ticker = self.ex.request("GET", "/fapi/v1/ticker/price", {"symbol": symbol})
            step, notional = self.filters[symbol]
            qty = (notional * Decimal("1.5") / Decimal(ticker["price"]) / step).to_integral_value(
                ROUND_UP
            ) * step
            params = {"side": self.rng.choice(["BUY", "SELL"]), "quantity": str(qty)}
        params.update(symbol=symbol, type="MARKET", newClientOrderId=f"chaos-{self.hand_trades}")
        sent = time.time()
        status, body = self.ex.request("POST", "/fapi/v1/order", params, is_signed=True)
        self.hand_trades += status == 200
        what = f"hand {params['side']} {params['quantity']} {symbol} -> {status}"
        self.events.append((sent, what + (" (reduce-only)" if "reduceOnly" in params else "")))
        if status != 200:
            print(f"chaos: hand trade refused: {status} {body}", file=sys.stderr)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(faults: list[Fault]) -> list[dict[str, Any]]:
    rows = []
    for kind in sorted({f.kind for f in faults}):
        done = [f.recovered_s for f in faults if f.kind == kind and f.recovered_s is not None]
        rows.append(
            {
                "fault": kind,
                "count": sum(f.kind == kind for f in faults),
                "unrecovered": sum(f.kind == kind and f.recovered_s is None for f in faults),
                "recovered_p50_s": round(percentile(done, 0.5), 1) if done else None,
                "recovered_max_s": round(max(done), 1) if done else None,
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'fault':<26}{'count':>6}{'p50 s':>8}{'max s':>8}{'unrecov':>9}")
    for r in rows:
        p50 = "-" if r["recovered_p50_s"] is None else f"{r['recovered_p50_s']:.1f}"
        top = "-" if r["recovered_max_s"] is None else f"{r['recovered_max_s']:.1f}"
        print(f"{r['fault']:<26}{r['count']:>6}{p50:>8}{top:>8}{r['unrecovered']:>9}")


def drill(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    cfg = load_config("paper", env={"SLT_CONFIG": stack.env["SLT_CONFIG"]})
    ex = Exchange(stack.port, cfg.exchange.api_key, cfg.exchange.api_secret)
    watch = Watcher(ex)
    d = Drill(stack, ex, watch, random.Random(args.seed))
    d.end = end = time.time() + args.minutes * 60
    if not args.reckless:
        url = redis_url(cfg.redis.url, cfg.redis.private_port)
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        d.lease = (client, Keys(instance_id(stack.run_dir)).guard_lease())
    d.load_filters()
    watch.start()
    next_fault = time.time() + d.rng.uniform(*FAULT_GAP_S)
    try:
        while time.time() < end:
            d.run_undo()
            d.settle_exchange_windows()
            is_healthy = d.update_recovery()
            now = time.time()
            if now >= next_fault:
                # A second trader's order when the stack is whole (a stop needs a guard and an
                # exchange), then a pause; otherwise a fault.
                if is_healthy and not d.stopped and d.rng.random() < 0.25:
                    with contextlib.suppress(Exception):
                        d.hand_trade()
                    next_fault = now + 3.0
                else:
                    try:
                        d.inject()
                    except Exception as e:  # e.g. the exchange is stopped: skip this one
                        print(f"chaos: fault not injected: {e!r}", file=sys.stderr)
                    next_fault = now + d.rng.uniform(*FAULT_GAP_S)
            time.sleep(0.25)
    finally:
        d.run_undo(is_all=True)
        for pid in list(d.stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    settle_end = time.time() + args.settle
    while time.time() < settle_end:
        d.settle_exchange_windows()
        if d.update_recovery() and all(f.recovered_s is not None for f in d.faults):
            break
        time.sleep(0.5)
    watch.stop()
    watch.finish()
    status = stack.ctl("status")
    violations = list(watch.violations)
    violations += [
        {"kind": "program_fatal", "time": time.strftime("%H:%M:%SZ", time.gmtime()), "line": ln}
        for ln in status.splitlines()
        if "FATAL" in ln
    ]
    trader_entries = -1  # unknown when the exchange did not answer
    with contextlib.suppress(Exception):
        trader_entries, duplicates = duplicate_entries(ex, SYMBOLS)
        violations += duplicates
    for v in violations:  # what the drill did around each gap
        if "time_s" in v:
            since, until = v["time_s"] - 20, v["time_s"] + v.get("uncovered_s", 0) + 1
            v["evidence"]["drill_events"] = [
                f"{t - v['time_s']:+.1f} s {what}" for t, what in d.events if since <= t <= until
            ]
    if violations or args.logs:
        logs = args.logs or Path(tempfile.mkdtemp(prefix="slt-chaos-logs-"))
        shutil.copytree(stack.run_dir / "logs", logs, dirs_exist_ok=True)
        print(f"chaos: the stack's logs are kept in {logs}", flush=True)
    rows = table(d.faults)
    return {
        "seed": args.seed,
        "minutes": args.minutes,
        "speed": args.speed,
        "kills": d.kills,
        "faults": len(d.faults),
        "violations": len(violations),
        "violation_list": violations,
        "hand_trades": d.hand_trades,
        "trader_entries_filled": trader_entries,
        "hand_trades_held_without_lease": d.hand_trades_held,
        "worst_gap_s": round(watch.worst_gap_s, 3),
        "worst_charged_gap_s": round(watch.worst_charged_s, 3),
        "uncovered_episodes": watch.uncovered_episodes,
        "polls": watch.polls,
        "blind_polls": watch.blind_polls,
        "final_status": status,
        "load_average": os.getloadavg(),
        "table": rows,
        "events": [f"{time.strftime('%H:%M:%S', time.gmtime(t))} {what}" for t, what in d.events],
    }


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the drill the way Ctrl-C does: the stack is shut down


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", type=Path)
    parser.add_argument("--speed", type=float, default=120.0)
    parser.add_argument(
        "--reckless",
        action="store_true",
        help="trade by hand also while the guard holds no entry lease (a careless second trader)",
    )
    parser.add_argument(
        "--settle", type=float, default=60.0, help="seconds to wait for recovery after the drill"
    )
    parser.add_argument(
        "--logs", type=Path, help="keep the stack's logs here (kept anyway on a violation)"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"chaos: starting a private stack (speed {args.speed}, seed {args.seed})", flush=True)
    stack = start_stack(args.speed)
    stopped: list[int] = []
    try:
        print(f"chaos: stack up in {stack.run_dir}; drilling {args.minutes} min", flush=True)
        summary = drill(args, stack)
    finally:
        leftovers = stop_stack(stack, stopped)
    summary["leftover_processes"] = leftovers
    print_table(summary["table"])
    print(
        f"kills {summary['kills']}  faults {summary['faults']}  hand trades "
        f"{summary['hand_trades']} (held, no lease: {summary['hand_trades_held_without_lease']})  "
        f"trader entries {summary['trader_entries_filled']}"
        f"  polls {summary['polls']} (blind {summary['blind_polls']})  "
        f"worst gap <= {summary['worst_gap_s']} s (charged {summary['worst_charged_gap_s']} s)  "
        f"violations {summary['violations']}  leftovers {len(leftovers)}"
    )
    for v in summary["violation_list"]:
        print("VIOLATION", json.dumps(v)[:2000])
    if args.report:
        args.report.write_text(json.dumps(summary, indent=2, default=str))
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
