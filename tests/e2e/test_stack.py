"""The README's run command starts the whole paper stack under a real supervisord, and single
programs restart without touching the others. Runs a private stack: its own run dir and ports."""

from __future__ import annotations

import itertools
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

from shared.segment import unlink_segments
from shared.shm import KlineColumn, KlineReader
from shared.stack import instance_id
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
        f"[paper_exchange]\nport = {paper_port}\nspeed = 60.0\n"
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
        unlink_segments(instance_id(run_dir))
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_run_paper_starts_every_program_and_the_paper_exchange_answers(stack: Stack) -> None:
    status = stack.ctl("status")
    for program in ("paper-exchange", "redis", "postgres", "feed"):
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


def test_killed_feed_restarts_alone_and_continues_the_same_kline_windows(stack: Stack) -> None:
    # The paper exchange runs at speed 60: a 1m candle closes every real second.
    readers: list[KlineReader] = []

    def open_times() -> list[int]:
        if not readers:  # the feed creates the segment at its first start
            readers.append(KlineReader(instance_id(stack.run_dir)))
        window = readers[0].window("BTCUSDT", 500)
        return [int(t) for t in window[:, KlineColumn.OPEN_TIME_MS]]

    eventually(lambda: len(open_times()) >= 3, 60, 0.2)
    others = {p: stack.pid(p) for p in ("paper-exchange", "redis", "postgres")}
    old = stack.pid("feed")
    last_before = open_times()[-1]
    os.kill(old, signal.SIGKILL)
    eventually(lambda: stack.pid("feed") != old, 30, 0.2)
    eventually(lambda: open_times()[-1] >= last_before + 3 * 60_000, 60, 0.2)
    times = open_times()
    assert all(b - a == 60_000 for a, b in itertools.pairwise(times)), "hole or duplicate"
    assert {p: stack.pid(p) for p in others} == others
