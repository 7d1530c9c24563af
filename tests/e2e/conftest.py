"""The private paper stack of the end-to-end tests: `scripts/run-paper` under a real supervisord
with its own run dir and ports, the paper exchange at speed 60 (a 1m candle closes every real
second), and shrunk guard and watchdog intervals; shut down and removed after each test."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.shm.segment import unlink_segments
from shared.stack import instance_id
from tests.services import eventually, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
# Shrunk so the failure modes show within seconds; the relations between them stay as in
# config/default.toml (REST mode before the dead-man's switch; a hung process is restarted
# before the guard's silence deadline).
FAST = """
[guard]
heartbeat_interval_s = 0.5
reconcile_interval_s = 2.0
feed_silent_after_s = 2.0
marks_stale_after_s = 5.0
trader_silent_after_s = 2.0
rest_poll_interval_s = 0.5
call_timeout_s = 1.5
[dms]
silence_after_s = 8.0
blind_after_s = 30.0
[watchdog]
check_interval_s = 0.5
stale_after_s = 2.0
startup_grace_s = 15.0
kill_after_s = 2.0
"""
# The guard and stack tests place their own positions: the trader runs (its heartbeat is what the
# guard expects) but neither enters nor trains.
IDLE_TRADER = """
[trader]
enabled = false
disable_model_training = true
"""


@dataclass
class Stack:
    env: dict[str, str]
    run_dir: Path
    paper_port: int
    reporter_port: int = 0

    def ctl(self, *args: str) -> str:
        proc = subprocess.run(
            [str(REPO_ROOT / "scripts" / "ctl"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return proc.stdout + proc.stderr

    def pid(self, program: str) -> int:
        match = re.search(rf"^{re.escape(program)}\s+RUNNING\s+pid (\d+)", self.ctl("status"), re.M)
        assert match, self.ctl("status")
        return int(match.group(1))

    def get(self, path: str) -> object:
        url = f"http://127.0.0.1:{self.paper_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return json.loads(reply.read())


@contextlib.contextmanager
def start_stack(
    extra: str = IDLE_TRADER,
    speed: float = 60.0,
    reporter: str = "",
    env_extra: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Start a private paper stack with the FAST overlay plus `extra` (TOML), `reporter` lines in
    its [reporter] table, `env_extra` in its environment, the paper exchange at `speed`; remove
    it after."""
    base = Path(os.environ.get("SLT_E2E_TMP", "/tmp")) / f"slt-e2e-{os.getpid()}-{free_port()}"
    base.mkdir(mode=0o755)
    run_dir = base / "run"
    paper_port = free_port()
    reporter_port = free_port()
    overlay = base / "stack.toml"
    overlay.write_text(
        f'[run]\ndir = "{run_dir}"\n'
        f"[redis]\nprivate_port = {free_port()}\n"
        f"[postgres]\nprivate_port = {free_port()}\n"
        f"[paper_exchange]\nport = {paper_port}\nspeed = {speed}\n"
        f'[exchange]\nrest_url = "http://127.0.0.1:{paper_port}"\n'
        f'ws_url = "ws://127.0.0.1:{paper_port}"\n'
        f"[reporter]\nport = {reporter_port}\n{reporter}\n" + FAST + extra
    )
    env = {**os.environ, "SLT_CONFIG": str(overlay), "SLT_MODE": "paper", **(env_extra or {})}
    env.pop("PYTHONASYNCIODEBUG", None)
    stack = Stack(env, run_dir, paper_port, reporter_port)
    started = subprocess.run(
        [str(REPO_ROOT / "scripts" / "run-paper")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield stack
    finally:
        stack.ctl("shutdown")
        pidfile = run_dir / "supervisor" / "supervisord.pid"
        eventually(lambda: not pidfile.exists(), 60)
        unlink_segments(instance_id(run_dir))
        subprocess.run(["rm", "-rf", str(base)], check=False)


@pytest.fixture
def stack() -> Iterator[Stack]:
    with start_stack() as s:
        yield s
