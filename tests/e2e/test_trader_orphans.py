"""A trader killed with -9 leaves nothing behind (issue 13, hole 13): its training worker (a `spawn`
process pool) dies with it, and after `supervisorctl shutdown` no process of the stack is left."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack, start_stack
from tests.services import eventually

pytestmark = pytest.mark.slow

# The trader trains its bootstrap model (the smallest history, one thread) and enters nothing.
TRAINING = """
[trader]
enabled = false
history_bars = 120
model_check_interval_s = 1.0
[model]
threads = 1
"""
WORKER_MARK = "multiprocessing.spawn"  # the command line of a spawn pool's worker


def _read(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:  # gone meanwhile, or not ours to read
        return b""


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`."""
    found = []
    for child in _pids():
        stat = _read(child, "stat")
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and fields[0] != b"Z" and int(fields[1]) == pid:
            found.append(child)
    return found


def is_alive(pid: int) -> bool:
    stat = _read(pid, "stat")
    return bool(stat) and stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def stack_processes(stack: Stack, also: set[int]) -> list[tuple[int, str]]:
    """Every live process of this stack: started with its config in the environment, or naming its
    run dir on its command line, or one of `also`."""
    marker = f"SLT_CONFIG={stack.env['SLT_CONFIG']}".encode()
    found = []
    for pid in _pids():
        if pid == os.getpid() or not is_alive(pid):
            continue
        cmdline = _read(pid, "cmdline")
        if (
            pid in also
            or marker in _read(pid, "environ").split(b"\0")
            or (str(stack.run_dir).encode() in cmdline)
        ):
            found.append((pid, cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]))
    return found


def gone_within(pid: int, timeout_s: float) -> bool:
    try:
        eventually(lambda: not is_alive(pid), timeout_s, 0.1)
    except AssertionError:
        return False
    return True


@pytest.mark.timeout(300)
def test_killed_trader_leaves_no_training_worker_after_shutdown() -> None:
    with start_stack(TRAINING) as stack:
        log = stack.run_dir / "logs" / "trader.log"
        trader = stack.pid("trader")

        def worker() -> int | None:
            return next(
                (c for c in children(trader) if WORKER_MARK.encode() in _read(c, "cmdline")), None
            )

        # The bootstrap training starts the worker (it stays, idle, for the next challenger).
        pid = eventually(worker, 120, 0.2)
        assert isinstance(pid, int)
        eventually(
            lambda: "challenger_trained" in log.read_text() or "training_failed" in log.read_text(),
            120,
            0.5,
        )
        assert is_alive(pid)

        os.kill(trader, signal.SIGKILL)
        died_with_trader = gone_within(pid, 10.0)
        stack.ctl("shutdown")
        pidfile = stack.run_dir / "supervisor" / "supervisord.pid"
        eventually(lambda: not pidfile.exists(), 60)
        deadline = time.monotonic() + 20.0  # supervisord removes its pidfile, then exits
        while (leftovers := stack_processes(stack, {pid})) and time.monotonic() < deadline:
            time.sleep(0.2)
        for left, _ in leftovers:  # started by this test: never leave them running
            with contextlib.suppress(ProcessLookupError):
                os.kill(left, signal.SIGKILL)
    assert died_with_trader, f"training worker {pid} outlived the trader killed with -9"
    assert not leftovers, leftovers
