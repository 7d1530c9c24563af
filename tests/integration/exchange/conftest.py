"""Fixtures for the exchange client's integration tests: the real paper exchange subprocess, the
private Redis, a fast client configuration, and small async helpers (the tests run their
scenarios with `asyncio.run`, like the paper exchange's own integration tests)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest

from shared import log
from shared.config import ExchangeConfig, load_config
from tests.paper_exchange_fixture import PaperExchangeProcess, start_paper_exchange

T = TypeVar("T")
LOGGER = "slt.exchange-test"


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaperExchangeProcess]:
    """One paper exchange (default limits, fresh account) shared by a test module."""
    process = start_paper_exchange(tmp_path_factory.mktemp("paper"))
    yield process
    process.stop()


def client_config(px: PaperExchangeProcess, **overrides: Any) -> ExchangeConfig:
    """Return the paper-mode exchange config pointed at `px`, with test-sized intervals."""
    base = load_config("paper", env={}).exchange
    fast = {
        "rest_url": px.rest_url,
        "ws_url": px.ws_url,
        "api_key": px.api_key,
        "api_secret": px.api_secret,
        "request_timeout_s": 3.0,
        "retry_base_s": 0.05,
        "retry_cap_s": 0.5,
        "breaker_cooldown_s": 1.0,
        "rate_limit_max_wait_s": 2.0,
    }
    return dataclasses.replace(base, **{**fast, **overrides})


def new_instance_id() -> str:
    """Return a fresh instance id, so each test has its own Redis keys."""
    return "t" + uuid.uuid4().hex[:10]


def client_logger() -> log.EventLogger:
    return log.EventLogger(LOGGER.removeprefix("slt."))


def events(caplog: pytest.LogCaptureFixture, event: str, level: int | None = None) -> list[str]:
    """Return the captured log lines of the client whose event name is `event`."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER
        and r.getMessage().split(" ")[3] == event
        and (level is None or r.levelno == level)
    ]


@pytest.fixture
def client_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=LOGGER)
    return caplog


async def sim(px: PaperExchangeProcess, path: str, method: str = "POST", **params: Any) -> Any:
    """Call the paper exchange's `/_sim/...` control API; return its JSON."""
    url = f"{px.rest_url}{path}"
    headers = {"X-MBX-APIKEY": px.api_key}
    timeout = aiohttp.ClientTimeout(total=10)
    query = {k: str(v) for k, v in params.items()}
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(method, url, params=query, headers=headers) as reply,
    ):
        body = await reply.json()
        assert reply.status == 200, body
        return body


async def eventually_async(
    predicate: Callable[[], Awaitable[T]], timeout_s: float, interval_s: float = 0.05
) -> T:
    """Await `predicate` until it returns a truthy value; raise AssertionError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: T | Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = await predicate()
            if last:
                return last
        except Exception as e:  # the condition may raise until it holds
            last = e
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s (last: {last!r})")


async def until_minute_has_left(seconds: float) -> None:
    """Wait until at least `seconds` remain in the current wall-clock minute (weight windows)."""

    async def enough() -> bool:
        return 60.0 - time.time() % 60.0 >= seconds

    await eventually_async(enough, 60.0 - seconds + 1.0, 0.1)
