"""The `/_sim` control API over real sockets: every fault, the clock and price overrides, and that
faults touch Binance paths only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from tests.paper_exchange_fixture import (
    BinanceTestClient,
    PaperExchangeProcess,
    Reply,
    call,
    now_ms,
    start_paper_exchange,
)
from tests.services import eventually


@pytest.fixture(scope="module")
def px(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaperExchangeProcess]:
    process = start_paper_exchange(tmp_path_factory.mktemp("control"))
    yield process
    process.stop()


def control(px: PaperExchangeProcess, method: str, path: str, **params: Any) -> Reply:
    reply = call(px, lambda c: c.control(method, path, **params))
    assert reply.status == 200, reply.text
    return reply


def get(px: PaperExchangeProcess, path: str, **params: Any) -> Reply:
    return call(px, lambda c: c.public(path, **params))


def server_time(px: PaperExchangeProcess) -> int:
    return int(get(px, "/fapi/v1/time").body["serverTime"])


def test_control_api_needs_the_paper_api_key(px: PaperExchangeProcess) -> None:
    missing = call(px, lambda c: c.control("GET", "/_sim/status", key=None))
    assert (missing.status, missing.body["code"]) == (401, -2014)
    wrong = call(px, lambda c: c.control("GET", "/_sim/status", key="W" * 64))
    assert (wrong.status, wrong.body["code"]) == (401, -2015)


def test_status_reports_clock_faults_and_connections(px: PaperExchangeProcess) -> None:
    status = control(px, "GET", "/_sim/status").body
    assert status["speed"] == 1.0 and status["is_paused"] is False
    assert status["faults"] == {
        "ws_stalled": False,
        "http_error_status": 0,
        "http_error_remaining_ms": 0,
        "http_error_method": "",
        "http_error_path": "",
        "http_error_skip": 0,
        "latency_ms": 0,
    }
    assert status["ws_connections"] == 0 and status["price_overrides"] == {}


def test_http_fail_503_for_n_seconds_then_ok_and_sim_paths_unaffected(
    px: PaperExchangeProcess,
) -> None:
    control(px, "POST", "/_sim/http/fail", status=503, seconds=1)
    failed = get(px, "/fapi/v1/ping")
    assert failed.status == 503
    assert failed.body["code"] == -1008 and failed.headers["Content-Type"].startswith(
        "application/json"
    )
    assert control(px, "GET", "/_sim/status").body["faults"]["http_error_status"] == 503
    eventually(lambda: get(px, "/fapi/v1/ping").status == 200, 5)


def test_http_fail_429_carries_retry_after_until_http_ok(px: PaperExchangeProcess) -> None:
    control(px, "POST", "/_sim/http/fail", status=429, seconds=30)
    limited = get(px, "/fapi/v1/exchangeInfo")
    assert (limited.status, limited.body["code"]) == (429, -1003)
    assert 29 <= int(limited.headers["Retry-After"]) <= 30
    control(px, "POST", "/_sim/http/ok")
    assert get(px, "/fapi/v1/ping").status == 200


def test_price_override_moves_ticker_premium_index_and_book(px: PaperExchangeProcess) -> None:
    control(px, "POST", "/_sim/price", symbol="BTCUSDT", price="54321.1")
    try:
        assert get(px, "/fapi/v1/ticker/price", symbol="BTCUSDT").body["price"] == "54321.10"
        premium = get(px, "/fapi/v1/premiumIndex", symbol="BTCUSDT").body
        assert premium["markPrice"] == "54321.10000000"
        book = get(px, "/fapi/v1/ticker/bookTicker", symbol="BTCUSDT").body
        assert Decimal(book["bidPrice"]) < Decimal("54321.1") < Decimal(book["askPrice"])
        status = control(px, "GET", "/_sim/status").body
        assert status["price_overrides"] == {"BTCUSDT": "54321.1"}
    finally:
        cleared = control(px, "POST", "/_sim/price", symbol="BTCUSDT").body
    assert cleared["price"] is None and cleared["price_overrides"] == {}


def test_price_override_of_an_unknown_symbol_is_1121(px: PaperExchangeProcess) -> None:
    reply = call(px, lambda c: c.control("POST", "/_sim/price", symbol="NOPEUSDT", price="1"))
    assert (reply.status, reply.body["code"]) == (400, -1121)


def test_clock_pause_jump_resume_are_reflected_in_server_time(px: PaperExchangeProcess) -> None:
    control(px, "POST", "/_sim/clock/pause")
    try:
        frozen = server_time(px)
        started = time.monotonic()
        eventually(lambda: time.monotonic() - started > 0.2, 1)
        assert server_time(px) == frozen
        control(px, "POST", "/_sim/clock/jump", ms=3_600_000)
        assert server_time(px) == frozen + 3_600_000
    finally:
        control(px, "POST", "/_sim/clock/resume")
    eventually(lambda: server_time(px) > frozen + 3_600_000, 2)


def test_signed_requests_accept_either_clock_when_sim_time_runs_ahead(
    px: PaperExchangeProcess,
) -> None:
    control(px, "POST", "/_sim/clock/jump", ms=600_000)
    sim_ms = server_time(px)
    assert sim_ms - now_ms() > 500_000

    def balance(timestamp_ms: int) -> Reply:
        return call(px, lambda c: c.signed("GET", "/fapi/v2/balance", timestamp_ms=timestamp_ms))

    assert balance(now_ms()).status == 200  # a client stamping wall time
    assert balance(server_time(px)).status == 200  # a client synced to /fapi/v1/time
    between = balance(now_ms() + 60_000)  # ahead of the wall clock, far behind the simulated one
    assert (between.status, between.body["code"]) == (400, -1021)


def test_clock_speed_makes_time_run_faster(px: PaperExchangeProcess) -> None:
    control(px, "POST", "/_sim/clock/speed", value=120)
    try:
        start_sim, start_real = server_time(px), now_ms()
        eventually(lambda: server_time(px) - start_sim >= 30_000, 3)
        assert now_ms() - start_real < 3_000
    finally:
        control(px, "POST", "/_sim/clock/speed", value=1)
    assert control(px, "GET", "/_sim/status").body["speed"] == 1.0


def test_latency_delays_binance_paths_only(px: PaperExchangeProcess) -> None:
    control(px, "POST", "/_sim/latency", ms=300)
    try:
        started = time.monotonic()
        assert get(px, "/fapi/v1/ping").status == 200
        assert time.monotonic() - started >= 0.3
        started = time.monotonic()
        control(px, "GET", "/_sim/status")
        assert time.monotonic() - started < 0.3
    finally:
        control(px, "POST", "/_sim/latency", ms=0)


def test_expired_listen_key_is_unknown_to_keepalive(px: PaperExchangeProcess) -> None:
    headers = {"X-MBX-APIKEY": px.api_key}
    created = call(px, lambda c: c.raw("POST", "/fapi/v1/listenKey", headers=headers))
    assert created.status == 200
    assert control(px, "POST", "/_sim/listenkeys/expire").body["expired"] == 1
    kept = call(px, lambda c: c.raw("PUT", "/fapi/v1/listenKey", headers=headers))
    assert (kept.status, kept.body["code"]) == (400, -1125)


def test_ws_stall_withholds_pongs_and_drop_closes_connections(px: PaperExchangeProcess) -> None:
    async def use(c: BinanceTestClient) -> None:
        async with c.session.ws_connect(px.ws_url + "/ws/btcusdt@kline_1m", autoping=False) as ws:
            status = await c.control("GET", "/_sim/status")
            assert status.body["ws_connections"] == 1
            assert await pong_within(ws, 2.0)
            await c.control("POST", "/_sim/ws/stall")
            try:
                assert not await pong_within(ws, 0.5)
            finally:
                await c.control("POST", "/_sim/ws/unstall")
            assert await pong_within(ws, 2.0)
            dropped = await c.control("POST", "/_sim/ws/drop")
            assert dropped.body["dropped"] == 1
            assert await closed_within(ws, 2.0)

    call(px, use)


async def pong_within(ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> bool:
    await ws.ping(b"probe")
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            message = await ws.receive(timeout=left)
        except TimeoutError:
            return False
        if message.type == aiohttp.WSMsgType.PONG:
            return True
        if message.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ):
            return False
    return False


async def closed_within(ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            message = await ws.receive(timeout=left)
        except TimeoutError:
            return False
        if message.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ):
            return True
    return False


def test_unknown_control_path_is_404_json(px: PaperExchangeProcess) -> None:
    reply = call(px, lambda c: c.control("POST", "/_sim/nothing"))
    assert reply.status == 404 and reply.body["code"] == -1000
