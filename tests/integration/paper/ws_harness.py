"""The real paper exchange served in-process for the WebSocket tests, plus small client helpers.

`running_exchange(tmp_path, **overrides)` builds the real `PaperExchange` (replay data, engine,
listenKeys, hub) with `[paper_exchange]` overrides, serves `build_app(px)` on a free port with
aiohttp's `AppRunner` + `TCPSite` inside the test's event loop, runs the server's step loop, and
tears everything down after. In-process (rather than the subprocess fixture) so a test can shrink
intervals per case and start in half a second; the sockets are still real.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from websockets.asyncio.client import ClientConnection

from procs.paper_exchange.server import PaperExchange, build_app, open_paper_exchange, run_steps
from shared.config import load_config
from tests.paper_exchange_fixture import API_KEY, API_SECRET, TEST_SYMBOLS, BinanceTestClient
from tests.services import free_port


@dataclass
class Exchange:
    """A running in-process paper exchange and a REST client for it."""

    px: PaperExchange
    ws_url: str
    rest: BinanceTestClient

    async def listen_key(self) -> str:
        reply = await self.rest.control("POST", "/fapi/v1/listenKey")
        assert reply.status == 200, reply.text
        key: str = reply.body["listenKey"]
        return key

    async def sim(self, path: str, **params: Any) -> Any:
        reply = await self.rest.control("POST", path, **params)
        assert reply.status == 200, reply.text
        return reply.body

    async def market_order(self, side: str = "BUY", qty: str = "0.010") -> Any:
        params = {"symbol": "BTCUSDT", "side": side, "type": "MARKET", "quantity": qty}
        reply = await self.rest.signed("POST", "/fapi/v1/order", params)
        assert reply.status == 200, reply.text
        return reply.body


@contextlib.asynccontextmanager
async def running_exchange(tmp_path: Path, **overrides: Any) -> AsyncIterator[Exchange]:
    """Serve a fresh paper exchange (fresh account) with `[paper_exchange]` overrides."""
    port = free_port()
    values = {
        "port": port,
        "state_path": str(tmp_path / f"state-{port}.json"),
        "symbols": TEST_SYMBOLS,
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        **overrides,
    }
    cfg = load_config("paper", overlay={"paper_exchange": values}, env={}).paper_exchange
    px, _is_new = await asyncio.to_thread(open_paper_exchange, cfg)  # reads replay data: 0.4 s
    runner = web.AppRunner(
        build_app(px), handle_signals=False, access_log=None, shutdown_timeout=1.0
    )
    await runner.setup()
    steps: asyncio.Task[None] | None = None
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        steps = asyncio.create_task(run_steps(px))
        async with aiohttp.ClientSession() as session:
            yield Exchange(
                px, f"ws://127.0.0.1:{port}", BinanceTestClient(session, f"http://127.0.0.1:{port}")
            )
    finally:
        if steps is not None:
            steps.cancel()
            await asyncio.gather(steps, return_exceptions=True)
        await runner.cleanup()


async def recv_json(ws: ClientConnection, timeout_s: float = 3.0) -> Any:
    """Receive one text frame and decode it."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout_s))


async def recv_until(
    ws: ClientConnection, predicate: Callable[[Any], bool], timeout_s: float = 3.0
) -> Any:
    """Receive until a message satisfies `predicate`; return it (AssertionError on timeout)."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await recv_json(ws, left)
        except TimeoutError:
            break
        if predicate(message):
            return message
    raise AssertionError(f"no matching message within {timeout_s}s")


async def collect(ws: ClientConnection, duration_s: float) -> list[Any]:
    """Receive everything for `duration_s` seconds."""
    messages: list[Any] = []
    deadline = time.monotonic() + duration_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            messages.append(await recv_json(ws, left))
        except TimeoutError:
            break
    return messages


async def collect_until(
    ws: ClientConnection, is_enough: Callable[[list[Any]], bool], timeout_s: float
) -> list[Any]:
    """Receive until `is_enough(messages)` or `timeout_s` (a loaded machine delivers late)."""
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while not is_enough(messages) and (left := deadline - time.monotonic()) > 0:
        try:
            messages.append(await recv_json(ws, left))
        except TimeoutError:
            break
    return messages


async def eventually(predicate: Callable[[], Awaitable[bool] | bool], timeout_s: float) -> None:
    """Poll `predicate` (sync or async) until true; AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout_s}s")


def run(coro: Awaitable[None]) -> None:
    """Run one async test body on a fresh event loop (the suite has no asyncio plugin)."""

    async def main() -> None:
        await coro

    asyncio.run(main())
