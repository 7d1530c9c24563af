"""The chaos drill of issue 13, short and with a fixed seed: three minutes of random faults
(kill -9, SIGSTOP, restarts, WebSocket drops and stalls, REST bursts, listenKey expiry, latency,
price and clock jumps) against a trading stack, and not one position without its stop for over
2 s (scripts/chaos.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    os.environ.get("SLT_CHAOS_TESTS") != "1",
    reason="opt-in (SLT_CHAOS_TESTS=1): the drill's schedule depends on the stack's timing, and "
    "it found a real gap (an open circuit breaker blocks protection for 60 s, issue 13) that is "
    "not fixed yet; it joins CI once that is closed",
)
@pytest.mark.timeout(420)  # stack start 30-60 s, 180 s of faults, <= 20 s settle, shutdown
def test_three_minute_drill_leaves_no_position_unprotected(tmp_path: Path) -> None:
    report = tmp_path / "chaos.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "chaos.py"),
            "--minutes",
            "3",
            "--seed",
            "1",
            "--settle",
            "20",
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    print(proc.stdout, proc.stderr[-5000:])
    summary = json.loads(report.read_text())
    assert summary["violations"] == 0, summary["violation_list"]
    assert proc.returncode == 0, proc.stdout + proc.stderr[-5000:]
    assert summary["kills"] > 0
    assert summary["faults"] >= 20
    assert summary["leftover_processes"] == [], "a process of the stack outlived its shutdown"
