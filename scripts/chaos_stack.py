"""The chaos drill's private stack: `scripts/run-paper` under its own supervisord, with its own run
dir in a temp dir, free ports, shrunk intervals and a trader that trades; shut down, checked for
leftover processes and removed after. Talks to supervisord over its XML-RPC socket."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]

from shared.shm.segment import unlink_segments
from shared.stack import instance_id

REPO_ROOT = Path(__file__).resolve().parents[1]
# Shrunk intervals (as tests/e2e/conftest.py) and a trader that trades within seconds (as
# tests/e2e/test_trader_stack.py): short barriers, one training thread on a shared machine.
OVERLAY = """
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    base: Path
    env: dict[str, str]
    run_dir: Path
    port: int

    def ctl(self, *args: str, timeout_s: float = 120) -> str:
        proc = subprocess.run(
            [str(REPO_ROOT / "scripts" / "ctl"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        return proc.stdout + proc.stderr

    def rpc(self) -> Any:
        creds = dict(
            line.split("=", 1)
            for line in (self.run_dir / "supervisor" / "credentials").read_text().split()
        )
        sock = f"unix://{self.run_dir}/supervisor/supervisor.sock"
        transport = SupervisorTransport(
            creds["SLT_SUPERVISOR_USER"], creds["SLT_SUPERVISOR_PASSWORD"], sock
        )
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def states(self) -> dict[str, tuple[str, int]]:
        return {p["name"]: (p["statename"], p["pid"]) for p in self.rpc().getAllProcessInfo()}


def start_stack(speed: float) -> Stack:
    base = Path(tempfile.mkdtemp(prefix="slt-chaos-"))
    base.chmod(0o755)  # PostgreSQL runs as its own user and must reach run/pg
    run_dir, port = base / "run", free_port()
    overlay = base / "stack.toml"
    overlay.write_text(
        f'[run]\ndir = "{run_dir}"\n'
        f"[redis]\nprivate_port = {free_port()}\n"
        f"[postgres]\nprivate_port = {free_port()}\n"
        f"[paper_exchange]\nport = {port}\nspeed = {speed}\n"
        f'[exchange]\nrest_url = "http://127.0.0.1:{port}"\nws_url = "ws://127.0.0.1:{port}"\n'
        f"[reporter]\nport = {free_port()}\n" + OVERLAY
    )
    env = {**os.environ, "SLT_CONFIG": str(overlay), "SLT_MODE": "paper"}
    env.pop("PYTHONASYNCIODEBUG", None)
    stack = Stack(base, env, run_dir, port)
    started = subprocess.run(
        [str(REPO_ROOT / "scripts" / "run-paper")], env=env, capture_output=True, text=True
    )
    if started.returncode != 0:
        stop_stack(stack, [])
        raise RuntimeError("run-paper failed:\n" + started.stdout + started.stderr)
    return stack


def _stack_pids(stack: Stack) -> list[int]:
    """Processes whose environment names this stack's overlay (supervisord's children, theirs)."""
    needle = f"SLT_CONFIG={stack.env['SLT_CONFIG']}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def stop_stack(stack: Stack, stopped_pids: list[int]) -> list[int]:
    """Shut the stack down; kill and return any process of it left behind; remove the run dir."""
    for pid in stopped_pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    with contextlib.suppress(Exception):
        stack.ctl("shutdown", timeout_s=180)
    pidfile = stack.run_dir / "supervisor" / "supervisord.pid"
    deadline = time.monotonic() + 90
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    leftovers = [p for p in _stack_pids(stack) if p != os.getpid()]
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        unlink_segments(instance_id(stack.run_dir))
    subprocess.run(["rm", "-rf", str(stack.base)], check=False)
    return leftovers
