"""Rate limits over real sockets: X-MBX-USED-WEIGHT-1M and X-MBX-ORDER-COUNT headers, 429 -1003
with Retry-After, then 418 with Retry-After, and 429 -1015 for the order rate (§3.1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.paper_exchange_fixture import (
    BinanceTestClient,
    PaperExchangeProcess,
    Reply,
    call,
    start_paper_exchange,
)

LIMITS = {
    "request_weight_limit_1m": 40,
    "ban_after_429s": 2,
    "ban_s": 30.0,
    "order_limit_10s": 3,
    "order_limit_1m": 100,
}


@pytest.fixture(scope="module")
def px(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaperExchangeProcess]:
    process = start_paper_exchange(tmp_path_factory.mktemp("limits"), overlay=LIMITS)
    yield process
    process.stop()


def test_used_weight_header_adds_each_endpoint_weight(px: PaperExchangeProcess) -> None:
    async def use(c: BinanceTestClient) -> list[int]:
        replies = [
            await c.public("/fapi/v1/ping"),  # 1
            await c.public("/fapi/v1/depth", symbol="BTCUSDT", limit=100),  # 5
            await c.public("/fapi/v1/klines", symbol="BTCUSDT", interval="1m", limit=200),  # 2
        ]
        return [int(r.headers["X-MBX-USED-WEIGHT-1M"]) for r in replies]

    ping, depth, klines = call(px, use, "127.0.0.2")
    assert (depth - ping, klines - depth) == (5, 2)


def test_over_the_weight_limit_429_then_418_both_with_retry_after(px: PaperExchangeProcess) -> None:
    async def hammer(c: BinanceTestClient) -> list[Reply]:
        replies: list[Reply] = []
        for _ in range(200):
            replies.append(await c.public("/fapi/v1/exchangeInfo"))
            if replies[-1].status == 418:
                break
        return replies

    replies = call(px, hammer, "127.0.0.3")
    statuses = [r.status for r in replies]
    assert statuses[-1] == 418, statuses
    first_429 = statuses.index(429)
    assert set(statuses[:first_429]) == {200}
    limited = replies[first_429]
    assert limited.body["code"] == -1003
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert int(limited.headers["X-MBX-USED-WEIGHT-1M"]) > 40
    banned = replies[-1]
    assert banned.body["code"] == -1003 and "banned until" in banned.body["msg"]
    assert 1 <= int(banned.headers["Retry-After"]) <= 30
    # A ban answers every path, signed or not.
    assert call(px, lambda c: c.public("/fapi/v1/ping"), "127.0.0.3").status == 418
    # Other IPs are not banned.
    assert call(px, lambda c: c.public("/fapi/v1/ping"), "127.0.0.4").status == 200


def test_order_rate_limit_is_429_1015_and_counts_are_in_headers(px: PaperExchangeProcess) -> None:
    async def orders(c: BinanceTestClient) -> list[Reply]:
        replies = []
        for _ in range(6):  # bad signatures: counted as order requests, refused by auth
            replies.append(
                await c.signed("POST", "/fapi/v1/order", {"symbol": "BTCUSDT"}, secret="wrong")
            )
            if replies[-1].status == 429:
                break
        return replies

    replies = call(px, orders, "127.0.0.5")
    assert replies[-1].status == 429, [r.body for r in replies]
    assert replies[-1].body == {
        "code": -1015,
        "msg": "Too many new orders; current limit is 3 orders per 10 SECOND.",
    }
    counts = [int(r.headers["X-MBX-ORDER-COUNT-10S"]) for r in replies[:-1]]
    assert counts[-3:] == [1, 2, 3]
    assert all("X-MBX-ORDER-COUNT-1M" in r.headers for r in replies)
    assert replies[0].body["code"] == -1022
