"""The README's run command starts the whole paper stack under a real supervisord, and single
programs restart without touching the others. Runs a private stack: its own run dir and ports
(tests/e2e/conftest.py)."""

from __future__ import annotations

import itertools
import os
import re
import signal

import pytest

from shared.shm.rings import KlineColumn, KlineReader
from shared.stack import instance_id
from tests.e2e.conftest import Stack
from tests.services import eventually

pytestmark = pytest.mark.slow


def test_run_paper_starts_every_program_and_the_paper_exchange_answers(stack: Stack) -> None:
    status = stack.ctl("status")
    for program in ("paper-exchange", "redis", "postgres", "guard", "feed", "trader", "watchdog"):
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
