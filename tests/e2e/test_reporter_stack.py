"""The reporter in the whole paper stack under a real supervisord: an alert of the guard reaches
Telegram and Discord (local servers standing in for them, recording what they receive), the
status page shows every program and the protected position (JSON, Prometheus text, and headless
Chromium), and `slt report --date` computes the day from trades inserted in PostgreSQL, audits
them against the exchange's income history, stores the report and sends it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from shared.config import load_config
from shared.report.daily import day_bounds_ms
from shared.schemas.records import TradeRecord
from shared.shm.heartbeat import read_heartbeats
from shared.stack import instance_id
from shared.store.db import Database, postgres_dsn
from tests.e2e.conftest import Stack, start_stack
from tests.e2e.test_guard_stack import signed
from tests.e2e.test_trader_stack import query
from tests.integration.reporter.test_status import count_colour, read_png, run_chromium
from tests.services import eventually, free_port

pytestmark = pytest.mark.slow
TOKEN = "123456:e2e-telegram-token"
GREEN = (0x1A, 0x7F, 0x37)  # the RUNNING badge
DAY = "2025-06-02"
STARTUP_GRACE_S, STALE_S = 15.0, 2.0  # tests/e2e/conftest.py FAST [watchdog]


@dataclass
class StandIns:
    """Telegram and Discord stand-ins on one local port, recording every request body."""

    port: int
    telegram: list[str] = field(default_factory=list)
    discord: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


@pytest.fixture
def stand_ins() -> Iterator[StandIns]:
    rec = StandIns(free_port())
    loop = asyncio.new_event_loop()

    async def telegram(request: web.Request) -> web.Response:
        rec.paths.append(request.path)
        rec.telegram.append((await request.json())["text"])
        return web.json_response({"ok": True, "result": {"message_id": len(rec.telegram)}})

    async def discord(request: web.Request) -> web.Response:
        rec.paths.append(request.path)
        rec.discord.append((await request.json())["content"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post(f"/bot{TOKEN}/sendMessage", telegram)
    app.router.add_post("/api/webhooks/1/hooktoken", discord)
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", rec.port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield rec
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.run_until_complete(runner.cleanup())
    loop.close()


def get(stack: Stack, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.reporter_port}{path}", timeout=10) as r:
        return bytes(r.read())


def trade(
    trade_id: str, symbol: str, exit_ms: int, gross: str, fees: str, is_virtual: bool = False
) -> TradeRecord:
    net = Decimal(gross) - Decimal(fees)
    return TradeRecord(
        trade_id=trade_id,
        is_virtual=is_virtual,
        symbol=symbol,
        side="BUY",
        quantity=Decimal("0.01"),
        entry_price=Decimal("100000"),
        entry_ms=exit_ms - 600_000,
        exit_price=Decimal("100100"),
        exit_ms=exit_ms,
        exit_reason="take_profit",
        gross_pnl_usdt=Decimal(gross),
        fees_usdt=Decimal(fees),
        funding_usdt=Decimal(0),
        net_pnl_usdt=net,
        is_win=net > 0,
        confidence=0.6,
        model_version=1,
        feature_schema="x",
        features=(),
    )


def insert_trades(stack: Stack) -> None:
    cfg = load_config("paper", env={"SLT_CONFIG": stack.env["SLT_CONFIG"]})
    start, _end = day_bounds_ms(DAY)
    records = [
        trade("r1", "BTCUSDT", start + 3_600_000, "12.00", "2.00"),  # +10
        trade("r2", "ETHUSDT", start + 7_200_000, "6.00", "1.00"),  # +5
        trade("r3", "BTCUSDT", start + 10_800_000, "-3.00", "1.00"),  # -4
        trade("v1", "XRPUSDT", start + 3_000_000, "1.00", "0.10", is_virtual=True),
        trade("late", "BTCUSDT", start + 86_400_000, "50.00", "1.00"),  # the next day
    ]

    async def run() -> None:
        async with await Database.connect(postgres_dsn(cfg), 10.0) as db:
            await db.apply_migrations()
            for r in records:
                await db.write(r)

    asyncio.run(run())


def test_reporter_notifies_serves_status_and_reports_the_day(stand_ins: StandIns) -> None:
    reporter = (
        f'telegram_api_url = "http://127.0.0.1:{stand_ins.port}"\ntelegram_chat_id = "42"\n'
        "notify_min_interval_s = 0.2\npoll_interval_s = 0.5\n"
    )
    hook = f"http://127.0.0.1:{stand_ins.port}/api/webhooks/1/hooktoken"
    env = {"SLT_TELEGRAM_BOT_TOKEN": TOKEN, "SLT_DISCORD_WEBHOOK_URL": hook}
    with start_stack(reporter=reporter, env_extra=env) as stack:
        log = stack.run_dir / "logs" / "reporter.log"
        eventually(lambda: "reporter_started" in log.read_text(), 60, 0.5)
        first_pid, started_s = stack.pid("reporter"), time.monotonic()
        time.sleep(2.0)  # its first look at the open stops (known, not announced) is done
        # A position opened by hand: the guard adopts it, protects it and alerts; the alert
        # reaches both channels.
        signed(
            stack,
            "POST",
            "/fapi/v1/order",
            symbol="BTCUSDT",
            side="BUY",
            type="MARKET",
            quantity="0.002",
        )

        def alerted(messages: list[str]) -> bool:
            return any("position_adopted" in m for m in messages)

        eventually(lambda: alerted(stand_ins.telegram) and alerted(stand_ins.discord), 60, 0.5)
        eventually(
            lambda: any(
                m.startswith("stop placed: BTCUSDT SELL STOP_MARKET") for m in stand_ins.telegram
            ),
            30,
            0.5,
        )

        # The status page: every program and the protected position.
        def status() -> dict[str, Any]:
            data: dict[str, Any] = json.loads(get(stack, "/api/status"))
            return data

        def protected() -> bool:
            return any(
                p["symbol"] == "BTCUSDT" and p["is_protected"] for p in status()["positions"]
            )

        eventually(protected, 30, 0.5)
        states = {p["name"]: p["state"] for p in status()["programs"]}
        for program in (
            "paper-exchange",
            "redis",
            "postgres",
            "guard",
            "feed",
            "trader",
            "reporter",
            "watchdog",
        ):
            assert states.get(program) == "RUNNING", states
        metrics = get(stack, "/metrics").decode()
        assert 'slt_program_up{program="guard"} 1' in metrics
        assert 'slt_position_protected{symbol="BTCUSDT"} 1' in metrics
        url = f"http://127.0.0.1:{stack.reporter_port}/"
        dom = asyncio.run(run_chromium("--dump-dom", url)).decode()
        assert "BTCUSDT" in dom and "watchdog" in dom and "UNPROTECTED" not in dom
        png = stack.run_dir / "status.png"
        asyncio.run(run_chromium(f"--screenshot={png}", url))
        _w, _h, rows, bpp = read_png(png.read_bytes())
        assert count_colour(rows, bpp, GREEN) > 2000  # eight RUNNING badges

        # The daily report of a day with inserted trades.
        insert_trades(stack)
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "slt"), "report", "--date", DAY, "--send"],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        day = dt.date.fromisoformat(DAY)
        raw = query(stack, "SELECT body FROM daily_reports WHERE day = $1", day)[0]["body"]
        body = json.loads(raw) if isinstance(raw, str) else raw
        assert (body["trades"], body["wins"], body["net_pnl_usdt"]) == (3, 2, "11.00")
        assert body["fees_usdt"] == "4.00" and body["virtual_trades"] == 1
        assert body["profit_factor"] == pytest.approx(15 / 4)
        assert body["audit"]["is_checked"] is True
        # The exchange has no income for these inserted trades: the audit says so.
        assert any(d["field"] == "realized_pnl" for d in body["audit"]["differences"])
        assert (stack.run_dir / "reports" / f"{DAY}.html").read_text().count("<svg") == 1
        assert any(DAY in m and "11.00" in m for m in stand_ins.telegram)
        assert any(DAY in m for m in stand_ins.discord)
        # Past the watchdog's start-up grace the reporter still beats: never restarted.
        time.sleep(max(0.0, STARTUP_GRACE_S + 3 * STALE_S - (time.monotonic() - started_s)))
        beat = read_heartbeats(instance_id(stack.run_dir))["reporter"]
        assert beat.pid == first_pid == stack.pid("reporter")
        assert beat.age_s(time.monotonic_ns()) < STALE_S
        assert "process_hung" not in (stack.run_dir / "logs" / "watchdog.log").read_text()
        # Secrets never reach a log.
        logs = "".join(p.read_text() for p in (stack.run_dir / "logs").glob("*.log"))
        assert TOKEN not in logs and "hooktoken" not in logs
