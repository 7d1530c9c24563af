"""The overflow policy of a WebSocket connection's send queue (`wsconn.Outbox`), without sockets:
market data drops the oldest market message, user data is never dropped."""

from __future__ import annotations

import asyncio

from procs.paper_exchange.web.wsconn import Outbox


def drain(outbox: Outbox) -> list[str]:
    async def take_all() -> list[str]:
        return [text for _ in range(len(outbox)) if (text := await outbox.get()) is not None]

    return asyncio.run(take_all())


def test_full_queue_drops_the_oldest_market_message_and_counts_it() -> None:
    outbox = Outbox(max_messages=3)
    for text in ("m1", "m2", "m3", "m4"):
        outbox.put_market(text)
    assert outbox.dropped == 1
    assert drain(outbox) == ["m2", "m3", "m4"]


def test_reliable_message_evicts_market_data_but_is_never_evicted() -> None:
    outbox = Outbox(max_messages=3)
    outbox.put_reliable("u1")
    outbox.put_market("m1")
    outbox.put_market("m2")
    assert outbox.put_reliable("u2")
    outbox.put_market("m3")
    assert drain(outbox) == ["u1", "u2", "m3"]
    assert outbox.dropped == 2


def test_queue_full_of_reliable_messages_refuses_another_and_drops_new_market_data() -> None:
    outbox = Outbox(max_messages=2)
    assert outbox.put_reliable("u1") and outbox.put_reliable("u2")
    assert not outbox.put_reliable("u3")
    outbox.put_market("m1")
    assert outbox.dropped == 1
    assert drain(outbox) == ["u1", "u2"]


def test_get_returns_none_once_closed() -> None:
    outbox = Outbox(max_messages=2)
    outbox.put_market("m1")
    outbox.close()
    assert asyncio.run(outbox.get()) is None
