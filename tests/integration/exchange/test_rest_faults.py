"""The client under the paper exchange's real faults: 503 windows, slow replies, clock changes,
and the circuit breaker. Faults are global to the exchange, so every test switches them off."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import ROUND_DOWN, Decimal

import numpy
import pytest

from shared.core.backoff import BreakerState, CircuitBreaker, backoff_delay_s
from shared.core.ids import client_order_id
from shared.exchange.errors import CircuitOpenError, ExecutionUnknownError, TransientError
from shared.exchange.rest import ExchangeClient
from tests.integration.exchange.conftest import (
    client_config,
    client_logger,
    events,
    eventually_async,
    sim,
)
from tests.paper_exchange_fixture import PaperExchangeProcess
from tests.services import free_port

BTC = "BTCUSDT"
SEED = 20261123


def client(px: PaperExchangeProcess, **overrides: object) -> ExchangeClient:
    rng = numpy.random.default_rng(SEED)
    return ExchangeClient(client_config(px, **overrides), rng=rng, logger=client_logger())


async def limit_price(c: ExchangeClient, factor: str) -> Decimal:
    (mark,) = await c.mark_prices(BTC)
    tick = Decimal("0.10")
    return (mark.mark_price * Decimal(factor) / tick).to_integral_value(ROUND_DOWN) * tick


def test_idempotent_get_is_retried_with_back_off_through_a_503_window(
    paper: PaperExchangeProcess, client_logs: pytest.LogCaptureFixture
) -> None:
    settings = {
        "retry_max_attempts": 12,
        "retry_base_s": 0.2,
        "retry_cap_s": 1.0,
        "breaker_failures": 50,
    }
    # The seeded jitter must outlast the 2 s window within the attempts allowed.
    rng = numpy.random.default_rng(SEED)
    planned = [backoff_delay_s(a, 0.2, 1.0, rng) for a in range(11)]
    assert sum(planned) > 3.0

    async def scenario() -> float:
        async with client(paper, **settings) as c:
            await sim(paper, "/_sim/http/fail", status=503, seconds=2)
            started = time.monotonic()
            try:
                positions = await c.position_risk()
            finally:
                await sim(paper, "/_sim/http/ok")
            assert positions == []
            return time.monotonic() - started

    elapsed_s = asyncio.run(scenario())
    retries = events(client_logs, "request_retrying", logging.WARNING)
    assert elapsed_s >= 1.5 and len(retries) >= 2
    assert "path=/fapi/v3/positionRisk" in retries[0] and "http=503" in retries[0]


def test_order_placement_in_a_503_window_is_execution_unknown_and_reconcile_finds_none(
    paper: PaperExchangeProcess,
) -> None:
    cid = client_order_id("fault503", "entry", 0)

    async def scenario() -> None:
        async with client(
            paper, retry_max_attempts=12, retry_base_s=0.2, retry_cap_s=1.0, breaker_failures=50
        ) as c:
            price = await limit_price(c, "0.97")
            await sim(paper, "/_sim/http/fail", status=503, seconds=1)
            started = time.monotonic()
            with pytest.raises(ExecutionUnknownError) as err:
                await c.new_order(BTC, "BUY", "LIMIT", Decimal("0.002"), cid, price=price)
            assert time.monotonic() - started < 0.5  # raised at once, never re-posted
            assert (err.value.client_id, err.value.http_status) == (cid, 503)
            assert err.value.may_have_executed
            # Reconcile: the GET retries through the rest of the window, then answers.
            assert await c.fetch_order_by_client_id(BTC, cid) is None
            placed = await c.new_order(BTC, "BUY", "LIMIT", Decimal("0.002"), cid, price=price)
            assert placed.status == "NEW"
            await c.cancel_order(BTC, cid)

    asyncio.run(scenario())


def test_order_placement_that_times_out_is_execution_unknown_and_reconcile_finds_it(
    paper: PaperExchangeProcess,
) -> None:
    cid = client_order_id("slow1", "entry", 0)

    async def scenario() -> None:
        async with client(paper, request_timeout_s=0.4) as c:
            price = await limit_price(c, "0.97")
            await sim(paper, "/_sim/latency", ms=1200)
            try:
                with pytest.raises(ExecutionUnknownError) as err:
                    await c.new_order(BTC, "BUY", "LIMIT", Decimal("0.002"), cid, price=price)
            finally:
                await sim(paper, "/_sim/latency", ms=0)
            assert (err.value.client_id, err.value.http_status) == (cid, 0)
            assert isinstance(err.value.__cause__, TransientError)
            # The exchange executes the request after its delay: reconciliation finds it.
            found = await eventually_async(lambda: c.fetch_order_by_client_id(BTC, cid), 2.0)
            assert found is not None
            assert (found.client_order_id, found.status, found.price) == (cid, "NEW", price)
            assert [o.client_order_id for o in await c.open_orders(BTC)] == [cid]
            await c.cancel_order(BTC, cid)

    asyncio.run(scenario())


def test_stale_local_offset_gets_1021_and_is_recovered_by_a_time_resync(
    paper: PaperExchangeProcess, client_logs: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[int, int]:
        async with client(paper) as c:
            synced = c.transport.time_offset_ms
            c.transport.time_offset_ms = synced - 120_000  # stamps two minutes in the past
            account = await c.account()
            assert account.wallet_balance_usdt > 0
            return synced, c.transport.time_offset_ms

    synced, resynced = asyncio.run(scenario())
    assert abs(resynced - synced) < 1_000
    assert len(events(client_logs, "exchange_time_synced")) == 2


def test_exchange_clock_jump_gets_1021_and_is_recovered_by_a_time_resync(
    paper: PaperExchangeProcess,
) -> None:
    async def scenario() -> tuple[int, int]:
        async with client(paper) as c:
            # The paper exchange accepts stamps in its simulated or its wall clock: move the
            # simulated clock ahead, sync to it, then move it again so neither clock fits.
            await sim(paper, "/_sim/clock/jump", ms=30_000)
            await c.transport.sync_time()
            before = c.transport.time_offset_ms
            await sim(paper, "/_sim/clock/jump", ms=30_000)
            assert (await c.account()).wallet_balance_usdt > 0
            return before, c.transport.time_offset_ms

    before, after = asyncio.run(scenario())
    assert 29_000 < after - before < 31_000


def test_circuit_breaker_opens_after_5_failures_and_a_half_open_probe_closes_it(
    paper: PaperExchangeProcess, client_logs: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with client(
            paper, retry_max_attempts=1, breaker_failures=5, breaker_cooldown_s=1.0
        ) as c:
            breaker = c.transport.breaker
            await sim(paper, "/_sim/http/fail", status=503, seconds=30)
            try:
                for _ in range(5):
                    with pytest.raises(TransientError) as err:
                        await c.open_orders(BTC)
                    assert err.value.http_status == 503
                assert breaker.state(time.monotonic()) is BreakerState.OPEN
                with pytest.raises(CircuitOpenError) as opened:
                    await c.open_orders(BTC)
                assert opened.value.http_status == 0 and 0 < opened.value.retry_after_s <= 1.0
                # A failing probe reopens it for a new cooldown.
                await eventually_async(_is(breaker, BreakerState.HALF_OPEN), 3.0)
                with pytest.raises(TransientError) as probe:
                    await c.open_orders(BTC)
                assert probe.value.http_status == 503
                assert breaker.state(time.monotonic()) is BreakerState.OPEN
            finally:
                await sim(paper, "/_sim/http/ok")
            await eventually_async(_is(breaker, BreakerState.HALF_OPEN), 3.0)
            assert await c.open_orders(BTC) == []  # the probe succeeds
            assert breaker.state(time.monotonic()) is BreakerState.CLOSED
            assert await c.open_orders(BTC) == []

    asyncio.run(scenario())
    assert len(events(client_logs, "circuit_opened", logging.WARNING)) == 2
    assert len(events(client_logs, "circuit_closed", logging.INFO)) == 1


def _is(breaker: CircuitBreaker, state: BreakerState) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return breaker.state(time.monotonic()) is state

    return check


def test_order_placement_to_a_closed_port_is_retried_because_nothing_was_sent(
    paper: PaperExchangeProcess, client_logs: pytest.LogCaptureFixture
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> TransientError:
        async with client(paper, rest_url=closed, breaker_failures=50, retry_max_attempts=3) as c:
            with pytest.raises(TransientError) as err:
                await c.new_order(
                    BTC, "BUY", "MARKET", Decimal("0.002"), client_order_id("closed1", "entry", 0)
                )
            return err.value

    error = asyncio.run(scenario())
    assert type(error) is TransientError  # not ExecutionUnknownError: the order never left
    assert (error.http_status, error.may_have_executed) == (0, False)
    assert "cannot connect" in error.msg
    retries = [e for e in events(client_logs, "request_retrying") if "/fapi/v1/order" in e]
    assert len(retries) == 2
    assert len(events(client_logs, "exchange_time_sync_failed", logging.WARNING)) == 1
