"""The trader in the whole paper stack under a real supervisord, on replayed real data: it trains a
bootstrap model from the exchange's kline history, opens real trades that the guard protects,
follows the signals it does not take as virtual positions, records every trade in PostgreSQL
(through the Redis outbox while PostgreSQL is stopped for 60 s) and trains a challenger after 50
closed trades, recording the promotion decision."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.config import load_config
from shared.store.db import postgres_dsn
from tests.e2e.conftest import Stack, start_stack
from tests.e2e.test_guard_stack import signed
from tests.services import eventually

pytestmark = pytest.mark.slow

# Short barriers and horizon so trades close within seconds at speed 120 (two simulated minutes
# per real second); the rest are the defaults. One training thread: the stack shares two cores.
TRADING = """
[trader]
virtual_interval_s = 0.5
position_check_interval_s = 1.0
model_check_interval_s = 2.0
max_open_positions = 2
[model]
take_profit_pct = 0.3
stop_loss_pct = 0.3
horizon_bars = 30
threads = 1
"""
OUTAGE_S = 60.0


def query(stack: Stack, sql: str, *args: Any) -> list[asyncpg.Record]:
    cfg = load_config("paper", env={"SLT_CONFIG": stack.env["SLT_CONFIG"]})

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(postgres_dsn(cfg), timeout=5)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def logged_trade_ids(stack: Stack) -> set[str]:
    text = (stack.run_dir / "logs" / "trader.log").read_text()
    return set(re.findall(r" (?:trade_closed|virtual_closed) .*signal_id=(\S+)", text))


def our_stop_ids(stack: Stack) -> list[str]:
    return [o["clientAlgoId"] for o in signed(stack, "GET", "/fapi/v1/openAlgoOrders")]


@pytest.mark.timeout(480)  # about two minutes, a 60 s outage included; every wait has its bound
def test_trader_trades_learns_and_loses_no_record_while_postgres_is_down() -> None:
    with start_stack(TRADING, speed=120.0) as stack:
        log = stack.run_dir / "logs" / "trader.log"
        # A bootstrap model trained from the exchange's history, promoted, and in use.
        eventually(lambda: "model_swapped" in log.read_text(), 120, 0.5)
        rows = query(stack, "SELECT is_promoted, detail FROM promotion_decisions")
        assert any(r["is_promoted"] and "bootstrap" in r["detail"] for r in rows), rows

        # A real entry: recorded before it was sent, filled, and protected by the guard.
        def real_trade() -> list[asyncpg.Record]:
            return query(stack, "SELECT trade_id, symbol FROM trades WHERE NOT is_virtual")

        eventually(lambda: len(real_trade()) > 0, 120, 0.5)
        first = real_trade()[0]
        intent = query(
            stack, "SELECT status FROM order_intents WHERE signal_id = $1", first["trade_id"]
        )
        assert [r["status"] for r in intent] == ["filled"]

        def protected_or_closed() -> bool:
            closed = query(
                stack,
                "SELECT 1 FROM trades WHERE trade_id = $1 AND exit_ms IS NOT NULL",
                first["trade_id"],
            )
            return bool(closed) or any(first["trade_id"] in cid for cid in our_stop_ids(stack))

        eventually(protected_or_closed, 10, 0.2)

        # PostgreSQL stopped for 60 s: the trader goes on, records wait in the outbox.
        assert "stopped" in stack.ctl("stop", "postgres")
        before = logged_trade_ids(stack)
        time.sleep(OUTAGE_S)
        during = logged_trade_ids(stack) - before
        assert "db_unavailable" in log.read_text()
        assert "started" in stack.ctl("start", "postgres")
        assert len(during) > 0, "no trade closed during the outage: nothing was tested"

        # Every trade the trader logged as closed is in PostgreSQL, closed, exactly once.
        def all_recorded() -> bool:
            ids = logged_trade_ids(stack)
            got = query(
                stack,
                "SELECT trade_id FROM trades WHERE exit_ms IS NOT NULL AND "
                "trade_id = ANY($1::text[])",
                list(ids),
            )
            return len(got) == len(ids)

        eventually(all_recorded, 60, 1.0)
        assert "db_recovered" in log.read_text()

        # After 50 closed trades a challenger was trained and the decision recorded.
        def judged() -> list[asyncpg.Record]:
            return query(
                stack,
                "SELECT detail FROM promotion_decisions WHERE detail LIKE '%50 closed trades%'",
            )

        eventually(lambda: len(judged()) > 0, 240, 1.0)
        assert "challenger_trained" in log.read_text()
        count = query(stack, "SELECT count(*) AS n FROM trades WHERE exit_ms IS NOT NULL")
        assert count[0]["n"] >= 50

        # The guard protected every real fill with a resting stop of the trade's own signal.
        guard_log = (stack.run_dir / "logs" / "guard.log").read_text()
        for row in real_trade():
            assert f"client_id=slt-{row['trade_id']}-stop-" in guard_log, row["trade_id"]

        # Another version becomes the champion (rollback, or the rejected challenger promoted by
        # hand): the running trader swaps to it without a restart.
        pid = stack.pid("trader")
        champion = query(stack, "SELECT version FROM model_versions WHERE status = 'champion'")
        if (
            len(query(stack, "SELECT version FROM model_versions WHERE promoted_ms IS NOT NULL"))
            > 1
        ):
            out = slt(stack, "model", "rollback")
        else:
            other = query(
                stack, "SELECT max(version) AS v FROM model_versions WHERE status <> 'champion'"
            )[0]["v"]
            out = slt(stack, "model", "promote", str(other))
        now = query(stack, "SELECT version FROM model_versions WHERE status = 'champion'")
        assert now != champion, out
        swapped = f"model_swapped version={now[0]['version']}"
        eventually(lambda: swapped in log.read_text(), 30, 0.5)
        assert stack.pid("trader") == pid

        # With the halt flag set (an operator's flatten), no new entry is made.
        slt(stack, "flatten", "--yes")
        halted_at = len(log.read_text())
        eventually(lambda: "halted=True" in log.read_text()[halted_at:], 30, 0.5)
        time.sleep(5.0)  # ten simulated minutes of decisions
        assert "order_filled" not in log.read_text()[halted_at:]
        # Two minutes of trading, training and an outage: no program was ever found hung.
        assert "process_hung" not in (stack.run_dir / "logs" / "watchdog.log").read_text()


def slt(stack: Stack, *args: str) -> str:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "slt"), *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout
