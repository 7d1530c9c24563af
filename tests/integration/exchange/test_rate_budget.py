"""The request-weight budget shared through the real Redis, against the real paper exchange:
429/Retry-After shared by every process, two processes never exceeding the limit together, the
guard's reserve, and a Redis that stops or stalls mid-test."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from shared.cache import Cache
from shared.exchange.errors import RateLimitedError
from shared.exchange.ratelimit import window_start_ms
from shared.exchange.rest import ExchangeClient
from tests.integration.exchange.conftest import (
    client_config,
    client_logger,
    events,
    eventually_async,
    new_instance_id,
    sim,
    until_minute_has_left,
)
from tests.paper_exchange_fixture import PaperExchangeProcess, start_paper_exchange
from tests.services import RedisServer, redis_server

REDIS_TIMEOUT_S = 0.25


@pytest.fixture
def fresh_paper(tmp_path: Path) -> Iterator[PaperExchangeProcess]:
    """A paper exchange of its own: its weight counter has seen no other test's requests."""
    process = start_paper_exchange(tmp_path / "paper")
    yield process
    process.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test alone, so the test may stop it."""
    with redis_server(tmp_path) as server:
        yield server


def make_client(
    px: PaperExchangeProcess,
    cache: Cache | None,
    settings: dict[str, object],
    is_guard: bool = False,
) -> ExchangeClient:
    return ExchangeClient(
        client_config(px, **settings), cache, is_guard=is_guard, logger=client_logger()
    )


async def used_weight(px: PaperExchangeProcess) -> int:
    """Return the exchange's own count for this IP (after this weight-1 ping)."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(f"{px.rest_url}/fapi/v1/ping") as reply,
    ):
        return int(reply.headers["X-MBX-USED-WEIGHT-1M"])


async def drain(client: ExchangeClient) -> int:
    """Call `account()` (weight 5) until the budget refuses; return how many succeeded."""
    calls = 0
    while True:
        try:
            await client.account()
        except RateLimitedError as e:
            assert e.http_status == 0  # refused by our budget: nothing was sent
            return calls
        calls += 1


def test_a_429_from_the_exchange_is_shared_through_redis_and_holds_every_process(
    tmp_path: Path, redis_instance: RedisServer, client_logs: pytest.LogCaptureFixture
) -> None:
    px = start_paper_exchange(tmp_path / "small", overlay={"request_weight_limit_1m": 12})
    instance = new_instance_id()

    async def scenario() -> None:
        async with Cache(redis_instance.url, instance, REDIS_TIMEOUT_S) as cache:
            # This process believes the limit is 1000: only the exchange's 429 can stop it.
            settings: dict[str, object] = {"weight_limit_1m": 1000, "rate_limit_max_wait_s": 0.0}
            async with make_client(px, cache, settings) as first:
                with pytest.raises(RateLimitedError) as err:
                    for _ in range(5):
                        await first.account()
                refused = err.value
                assert (refused.http_status, refused.code) == (429, -1003)
                assert 1.0 <= refused.retry_after_s <= 60.0
                block_ms = await cache.request_block_ms()
                assert (
                    refused.retry_after_s * 1000 - 1000 < block_ms <= refused.retry_after_s * 1000
                )
                async with make_client(px, cache, settings) as second:
                    with pytest.raises(RateLimitedError) as held:
                        await second.exchange_info()
                    assert held.value.http_status == 0  # held back locally, never sent
                    assert 0 < held.value.retry_after_s <= refused.retry_after_s

    try:
        asyncio.run(scenario())
    finally:
        px.stop()
    assert len(events(client_logs, "rate_limited", logging.WARNING)) == 1  # one 429, no more


def test_a_retry_after_is_waited_out_then_the_request_succeeds(
    paper: PaperExchangeProcess, redis_instance: RedisServer
) -> None:
    async def scenario() -> float:
        async with (
            Cache(redis_instance.url, new_instance_id(), REDIS_TIMEOUT_S) as cache,
            make_client(paper, cache, {"rate_limit_max_wait_s": 3.0}) as client,
        ):
            await sim(paper, "/_sim/http/fail", status=429, seconds=1)
            started = time.monotonic()
            try:
                assert await client.open_orders("BTCUSDT") == []
            finally:
                await sim(paper, "/_sim/http/ok")
            return time.monotonic() - started

    assert asyncio.run(scenario()) >= 0.9


def test_two_processes_share_one_budget_and_the_guard_reserve_stays_available(
    fresh_paper: PaperExchangeProcess,
    redis_instance: RedisServer,
    client_logs: pytest.LogCaptureFixture,
) -> None:
    # limit 60, reserve 25 %: normal processes may fill 45, the guard all 60.
    settings: dict[str, object] = {
        "weight_limit_1m": 60,
        "guard_reserved_share": 0.25,
        "rate_limit_max_wait_s": 0.0,
    }
    instance = new_instance_id()

    async def scenario() -> tuple[int, int, int, int, int]:
        await until_minute_has_left(8.0)
        async with Cache(redis_instance.url, instance, REDIS_TIMEOUT_S) as cache:
            trader = make_client(fresh_paper, cache, settings)
            reporter = make_client(fresh_paper, cache, settings)
            guard = make_client(fresh_paper, cache, settings, is_guard=True)
            async with trader, reporter, guard:  # three time syncs: weight 3
                trader_calls, reporter_calls = await asyncio.gather(drain(trader), drain(reporter))
                guard_calls = await drain(guard)
                counted = await cache.window_weight(window_start_ms(time.time_ns() // 1_000_000))
                exchange_weight = await used_weight(fresh_paper)
                return trader_calls, reporter_calls, guard_calls, counted, exchange_weight

    trader_calls, reporter_calls, guard_calls, counted, exchange_weight = asyncio.run(scenario())
    # The fixture's start-up ping may share the minute (the header correction adds it), so
    # the window holds 3 syncs + 8 * 5 (+ 1): at most 45 for the normal processes together.
    assert trader_calls + reporter_calls == 8
    assert trader_calls >= 1 and reporter_calls >= 1
    assert guard_calls == 3  # the reserve: 43 (or 44) + 3 * 5 <= 60 < 63
    assert counted in (58, 59) and counted <= 60
    assert exchange_weight == counted + 1  # the exchange counted what Redis granted (+ ping)
    assert events(client_logs, "rate_limited") == []  # the exchange never had to refuse


def test_redis_stopped_mid_test_leaves_the_client_working_on_a_local_budget(
    paper: PaperExchangeProcess,
    private_redis: RedisServer,
    client_logs: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> list[bool]:
        async with (
            Cache(private_redis.url, new_instance_id(), REDIS_TIMEOUT_S) as cache,
            make_client(paper, cache, {"budget_redis_retry_s": 0.05}) as client,
        ):
            await client.account()
            shared_before = client.budget.is_shared
            private_redis.stop()
            for _ in range(3):  # each call tries Redis again (retry after 0.05 s) and fails
                await client.account()
                await asyncio.sleep(0.06)
            return [shared_before, client.budget.is_shared]

    assert asyncio.run(scenario()) == [True, False]
    warnings = events(client_logs, "rate_budget_redis_unavailable", logging.WARNING)
    assert len(warnings) == 1
    assert "fallback=local" in warnings[0] and "local_weight_1m=480" in warnings[0]


def test_a_stalled_redis_costs_each_call_at_most_its_deadline_and_recovery_is_logged(
    paper: PaperExchangeProcess,
    private_redis: RedisServer,
    client_logs: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> float:
        async with (
            Cache(private_redis.url, new_instance_id(), REDIS_TIMEOUT_S) as cache,
            make_client(paper, cache, {"budget_redis_retry_s": 0.5}) as client,
        ):
            await client.account()
            os.kill(private_redis.process.pid, signal.SIGSTOP)  # alive but silent
            try:
                started = time.monotonic()
                await client.account()  # one Redis deadline, then the local budget
                await client.account()  # Redis is not asked again for 0.5 s
                stalled_s = time.monotonic() - started
                assert not client.budget.is_shared
            finally:
                os.kill(private_redis.process.pid, signal.SIGCONT)

            async def is_shared_again() -> bool:
                await client.account()
                return client.budget.is_shared

            await eventually_async(is_shared_again, 3.0, 0.1)
            return stalled_s

    assert asyncio.run(scenario()) < REDIS_TIMEOUT_S + 0.4
    assert len(events(client_logs, "rate_budget_redis_unavailable", logging.WARNING)) == 1
    assert len(events(client_logs, "rate_budget_redis_restored", logging.INFO)) == 1


def test_an_order_trusts_the_last_no_block_answer_for_at_most_a_second(
    redis_instance: RedisServer,
) -> None:
    from shared.exchange.ratelimit import BLOCK_KNOWN_S, BudgetSettings, WeightBudget

    async def body() -> None:
        instance = new_instance_id()
        settings = BudgetSettings(
            limit_1m=2400,
            reserved_share=0.2,
            expected_processes=4,
            is_guard=True,
            max_wait_s=0.3,
            redis_retry_s=10.0,
        )
        async with (
            Cache(redis_instance.url, instance, REDIS_TIMEOUT_S) as cache,
            Cache(redis_instance.url, instance, REDIS_TIMEOUT_S) as other,
        ):
            budget = WeightBudget(settings, cache, client_logger())
            await budget.acquire(1)  # Redis answered: no block
            await other.block_requests(5_000)  # another process got a 429
            started = time.monotonic()
            await budget.acquire(0)  # an order within the second: no Redis round trip
            assert time.monotonic() - started < BLOCK_KNOWN_S
            await asyncio.sleep(BLOCK_KNOWN_S + 0.05)
            with pytest.raises(RateLimitedError):  # now it asks Redis, which says: blocked
                await budget.acquire(0)
            with pytest.raises(RateLimitedError):  # and weighted requests always ask
                await budget.acquire(1)

    asyncio.run(body())
