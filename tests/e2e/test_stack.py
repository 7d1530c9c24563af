"""The README's run command starts the whole paper stack under a real supervisord, and single
programs restart without touching the others. Runs a private stack: its own run dir and ports."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import eventually, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    env: dict[str, str]
    run_dir: Path
    paper_port: int

    def ctl(self, *args: str) -> str:
        proc = subprocess.run(
            [str(REPO_ROOT / "scripts" / "ctl"), *args],
            env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return proc.stdout + proc.stderr

    def pid(self, program: str) -> int:
        match = re.search(rf"^{re.escape(program)}\s+RUNNING\s+pid (\d+)", self.ctl("status"), re.M)
        assert match, self.ctl("status")
        return int(match.group(1))

    def get(self, path: str) -> object:
        url = f"http://127.0.0.1:{self.paper_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return json.loads(reply.read())


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = Path(os.environ.get("SLT_E2E_TMP", "/tmp")) / f"slt-e2e-{os.getpid()}-{free_port()}"
    base.mkdir(mode=0o755)
    run_dir = base / "run"
    paper_port = free_port()
    overlay = base / "stack.toml"
    overlay.write_text(
        f'[run]\ndir = "{run_dir}"\n'
        f"[redis]\nprivate_port = {free_port()}\n"
        f"[postgres]\nprivate_port = {free_port()}\n"
        f"[paper_exchange]\nport = {paper_port}\n"
        f'[exchange]\nrest_url = "http://127.0.0.1:{paper_port}"\n'
        f'ws_url = "ws://127.0.0.1:{paper_port}"\n'
    )
    env = {**os.environ, "SLT_CONFIG": str(overlay), "SLT_MODE": "paper"}
    env.pop("PYTHONASYNCIODEBUG", None)
    stack = Stack(env, run_dir, paper_port)
    started = subprocess.run(
        [str(REPO_ROOT / "scripts" / "run-paper")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield stack
    finally:
        stack.ctl("shutdown")
        pidfile = run_dir / "supervisor" / "supervisord.pid"
        eventually(lambda: not pidfile.exists(), 60)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_run_paper_starts_every_program_and_the_paper_exchange_answers(stack: Stack) -> None:
    status = stack.ctl("status")
    for program in ("paper-exchange", "redis", "postgres"):
        assert re.search(rf"^{program}\s+RUNNING", status, re.M), status
    assert stack.get("/fapi/v1/ping") == {}
    symbols = {s["symbol"] for s in stack.get("/fapi/v1/exchangeInfo")["symbols"]}  # type: ignore[index]
    assert {"BTCUSDT", "ETHUSDT"} <= symbols
    assert (
        (stack.run_dir / "logs" / "paper-exchange.log").read_text().count("paper_exchange_started")
    )


def test_killed_paper_exchange_is_restarted_by_supervisord_and_others_keep_their_pid(
    stack: Stack,
) -> None:
    redis_pid = stack.pid("redis")
    old = stack.pid("paper-exchange")
    os.kill(old, signal.SIGKILL)
    eventually(lambda: stack.pid("paper-exchange") != old, 30, 0.2)
    eventually(lambda: stack.get("/fapi/v1/ping") == {}, 30, 0.2)
    assert stack.pid("redis") == redis_pid
