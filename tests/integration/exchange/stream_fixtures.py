"""Helpers of the stream client's integration tests: a paper exchange at --speed 60 (a candle closes
every real second), test-sized stream settings, the `/_sim` control API, a collecting consumer."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shared.config import StreamsConfig, load_config
from shared.exchange.frames import Gap, StreamMessage
from shared.exchange.inbox import StreamItem
from tests.paper_exchange_fixture import PaperExchangeProcess, start_paper_exchange

SPEED = 60.0  # simulated seconds per real second: one 1m candle closes per second


@pytest.fixture(scope="module")
def fast_paper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaperExchangeProcess]:
    """One paper exchange at --speed 60 shared by a test module (tests undo their faults)."""
    process = start_paper_exchange(Path(tmp_path_factory.mktemp("paper-fast")), speed=SPEED)
    yield process
    process.stop()


def fast_settings(**overrides: Any) -> StreamsConfig:
    """Stream settings shrunk for tests: sub-second heartbeats and back-off."""
    base = load_config("paper", env={}).streams
    fast = {
        "ping_interval_s": 0.5,
        "pong_timeout_s": 0.5,
        "silence_timeout_s": 1.0,
        "open_timeout_s": 3.0,
        "close_timeout_s": 0.5,
        "reconnect_base_s": 0.1,
        "reconnect_cap_s": 0.4,
        "healthy_after_s": 5.0,
        "rollover_timeout_s": 3.0,
        "bad_message_log_interval_s": 1.0,
        "listen_key_keepalive_s": 0.5,
        "user_call_timeout_s": 5.0,
    }
    return dataclasses.replace(base, **{**fast, **overrides})


async def sim(px: PaperExchangeProcess, path: str, **params: Any) -> Any:
    """POST to the paper exchange's `/_sim/...` control API; return its JSON."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(
            px.rest_url + path,
            params={k: str(v) for k, v in params.items()},
            headers={"X-MBX-APIKEY": px.api_key},
        ) as reply,
    ):
        body = await reply.json()
        assert reply.status == 200, body
        return body


async def eventually(predicate: Callable[[], object], timeout_s: float) -> None:
    """Wait until `predicate()` is truthy; raise AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.02)


class Collector:
    """Consume a stream source in the background, keeping every item with its arrival time."""

    def __init__(self, get: Callable[[], Any]) -> None:
        self.items: list[StreamItem] = []
        self._get = get
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.items.append(await self._get())

    def start(self) -> Collector:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def messages(self) -> list[StreamMessage]:
        return [i for i in self.items if isinstance(i, StreamMessage)]

    def gaps(self) -> list[Gap]:
        return [i for i in self.items if isinstance(i, Gap)]

    def closed_klines(self, stream: str) -> list[int]:
        return [
            m.kline_open_ms
            for m in self.messages()
            if m.stream == stream and m.is_closed and m.kline_open_ms is not None
        ]
