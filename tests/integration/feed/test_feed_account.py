"""Positions and orders reach Redis and the bus, and an expired listenKey makes the feed fetch a new
one and re-snapshot the account over REST."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

from shared.schemas import bus
from tests.integration.feed.conftest import FeedProcess, sim, wait_for_log
from tests.paper_exchange_fixture import BinanceTestClient, PaperExchangeProcess, call
from tests.services import RedisServer, eventually

TOPIC = "position.ETHUSDT"


def market_order(px: PaperExchangeProcess, side: str, reduce_only: bool = False) -> Any:
    """Place a signed MARKET order of 0.010 ETHUSDT (hmac signature built by the test client)."""
    params = {"symbol": "ETHUSDT", "side": side, "type": "MARKET", "quantity": "0.010"}
    if reduce_only:
        params["reduceOnly"] = "true"

    async def place(client: BinanceTestClient) -> Any:
        reply = await client.signed("POST", "/fapi/v1/order", params)
        assert reply.status == 200, reply.text
        return reply.body

    return call(px, place)


def position(feed: FeedProcess, redis: RedisServer) -> bus.Position | None:
    raw = feed.snapshot(redis.url).latest.get(TOPIC)
    return None if raw is None else msgspec.msgpack.decode(raw, type=bus.Position)


def test_expired_listen_key_resnapshots_positions_into_redis(
    start_feed: Callable[..., FeedProcess],
    fast_paper: PaperExchangeProcess,
    redis_instance: RedisServer,
) -> None:
    feed = start_feed()
    wait_for_log(feed, "account_resynced")
    market_order(fast_paper, "BUY")
    try:
        held = eventually(lambda: (p := position(feed, redis_instance)) and p.quantity and p, 5.0)
        assert isinstance(held, bus.Position) and held.quantity == Decimal("0.010")
        snapshot = feed.snapshot(redis_instance.url)
        assert any(t.startswith("order.ETHUSDT") for t in snapshot.seqs)  # the fill's order state

        expired = asyncio.run(sim(fast_paper, "/_sim/listenkeys/expire"))
        assert expired["expired"] == 1
        wait_for_log(feed, "account_resynced", count=2)
        assert "positions=1" in feed.log_events("account_resynced")[1]
        assert feed.log_events("listen_key_replaced")

        def republished() -> bus.Position | None:
            p = position(feed, redis_instance)
            return p if p is not None and p.seq > held.seq else None

        again = eventually(republished, 5.0)
        assert isinstance(again, bus.Position) and again.quantity == Decimal("0.010")
        assert again.entry_price == held.entry_price
    finally:
        market_order(fast_paper, "SELL", reduce_only=True)
    flat = eventually(lambda: (p := position(feed, redis_instance)) and p.quantity == 0 and p, 5.0)
    assert isinstance(flat, bus.Position)
