"""The ZeroMQ bus over real ipc:// sockets, and the abstract-namespace instance lock."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
import zmq

from shared.bus import (
    BusError,
    InstanceLockedError,
    Publisher,
    Received,
    Subscriber,
    bind_instance_lock,
    bus_endpoint,
)
from shared.core.sequence import SeqKind
from shared.schemas.bus import BusHeartbeat, MarkPrice, encode, heartbeat_topic, mark_topic
from tests.services import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def mark(price: float, symbol: str = "BTCUSDT", seq: int = 0) -> MarkPrice:
    return MarkPrice(
        ts_ms=1_748_217_660_000,
        source="feed",
        seq=seq,
        symbol=symbol,
        price=price,
        index_price=price - 1,
        funding_rate=0.0001,
        next_funding_time_ms=1_748_246_400_000,
    )


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test(), debug=True)


async def until_connected(send: Callable[[], object], sub: Subscriber, topic: str) -> None:
    """Publish on `topic` until the subscriber receives one (ZeroMQ's slow joiner)."""
    for _ in range(200):
        send()
        received = await sub.receive(0.02)
        if received is not None:
            assert received.topic == topic
            await drain(sub, 0.05)  # probes that were still in flight
            return
    raise AssertionError("subscriber never connected")


async def drain(sub: Subscriber, timeout_s: float = 0.2) -> list[Received]:
    out = []
    while (received := await sub.receive(timeout_s)) is not None:
        out.append(received)
    return out


def test_subscriber_receives_only_subscribed_prefixes_in_order(instance: str) -> None:
    async def test() -> None:
        endpoint = bus_endpoint(instance, "feed")
        with (
            Publisher(endpoint, "feed") as pub,
            Subscriber([endpoint], ["mark.BTC", "heartbeat."]) as sub,
        ):
            await until_connected(
                lambda: pub.publish("mark.BTCUSDT", mark(1.0)), sub, "mark.BTCUSDT"
            )
            for i in range(5):
                pub.publish(mark_topic("ETHUSDT"), mark(2.0, "ETHUSDT"))
                pub.publish(mark_topic("BTCUSDT"), mark(100.0 + i))
                pub.publish(heartbeat_topic("feed"), BusHeartbeat(ts_ms=i, pid=1, published=i))
            got = await drain(sub)
        assert [(r.topic, r.verdict.kind) for r in got] == [
            ("mark.BTCUSDT", SeqKind.NEXT),
            ("heartbeat.feed", SeqKind.FIRST),
        ] + [("mark.BTCUSDT", SeqKind.NEXT), ("heartbeat.feed", SeqKind.NEXT)] * 4
        prices = [r.payload.price for r in got if isinstance(r.payload, MarkPrice)]
        assert prices == [100.0, 101.0, 102.0, 103.0, 104.0]
        seqs = [r.payload.seq for r in got if r.topic == "mark.BTCUSDT"]
        assert seqs == list(range(seqs[0], seqs[0] + 5))
        assert {r.payload.source for r in got} == {"feed"}

    run(test)


def raw_publisher(endpoint: str) -> zmq.Socket[bytes]:
    """A bare PUB socket, to feed the subscriber frames the Publisher would never send."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    return sock


def test_skipped_seq_is_reported_as_a_gap(instance: str) -> None:
    async def test() -> None:
        endpoint = bus_endpoint(instance, "raw")
        sock = raw_publisher(endpoint)
        with Subscriber([endpoint], ["mark."]) as sub:
            topic = mark_topic("BTCUSDT")

            def send(seq: int) -> None:
                sock.send_multipart([topic.encode(), encode(mark(1.0, seq=seq))])

            await until_connected(lambda: send(1), sub, topic)
            for seq in (2, 3, 7, 8):
                send(seq)
            got = await drain(sub)
            assert [(r.payload.seq, r.verdict.kind, r.verdict.missed) for r in got] == [
                (2, SeqKind.NEXT, 0),
                (3, SeqKind.NEXT, 0),
                (7, SeqKind.GAP, 3),
                (8, SeqKind.NEXT, 0),
            ]
            assert got[2].verdict.needs_resync
            assert (sub.gaps, sub.missed) == (1, 3)
        sock.close(linger=0)

    run(test)


def test_messages_at_or_below_the_snapshot_seq_are_dropped(instance: str) -> None:
    async def test() -> None:
        endpoint = bus_endpoint(instance, "raw")
        sock = raw_publisher(endpoint)
        with Subscriber([endpoint], ["mark."]) as sub:

            def send(symbol: str, seq: int) -> None:
                sock.send_multipart([mark_topic(symbol).encode(), encode(mark(1.0, symbol, seq))])

            await until_connected(lambda: send("ETHUSDT", 1), sub, "mark.ETHUSDT")
            sub.load_snapshot({"mark.BTCUSDT": 5})
            for seq in (4, 5, 6, 7):
                send("BTCUSDT", seq)
            got = await drain(sub)
            assert [(r.payload.seq, r.verdict.kind) for r in got] == [
                (6, SeqKind.NEXT),
                (7, SeqKind.NEXT),
            ]
            assert sub.stale_dropped == 2
        sock.close(linger=0)

    run(test)


def test_malformed_frames_are_counted_logged_and_skipped(
    instance: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def test() -> None:
        endpoint = bus_endpoint(instance, "raw")
        sock = raw_publisher(endpoint)
        with Subscriber([endpoint], [""], process="test") as sub:
            topic = mark_topic("BTCUSDT")
            await until_connected(
                lambda: sock.send_multipart([topic.encode(), encode(mark(1.0, seq=1))]), sub, topic
            )
            sock.send(b"mark.BTCUSDT")  # one frame
            sock.send_multipart([b"mark.BTCUSDT", b"a", b"b"])  # three frames
            sock.send_multipart([b"mark.BTCUSDT", b"\xc1" * 300])  # not msgpack
            bad_type = msgspec.msgpack.encode({**msgspec.structs.asdict(mark(1.0)), "price": "x"})
            sock.send_multipart([b"mark.BTCUSDT", bad_type])
            sock.send_multipart([b"trade.BTCUSDT", encode(mark(1.0))])  # unknown topic
            sock.send_multipart([b"\xff\xfe", encode(mark(1.0))])  # topic not ASCII
            wrong_version = encode(msgspec.structs.replace(mark(1.0, seq=2), v=99))
            sock.send_multipart([topic.encode(), wrong_version])
            sock.send_multipart([topic.encode(), encode(mark(42.0, seq=2))])
            got = await drain(sub)
            assert [
                (r.payload.seq, r.payload.price) for r in got if isinstance(r.payload, MarkPrice)
            ] == [(2, 42.0)]
            assert sub.bad_messages == 7
            assert sub.last_bad.startswith(b"mark.BTCUSDT|")
            assert len(sub.last_bad) <= 200
        sock.close(linger=0)

    with caplog.at_level(logging.WARNING):
        run(test)
    lines = [r.getMessage() for r in caplog.records if " bad_message " in r.getMessage()]
    assert len(lines) == 1  # rate-limited: the others are counted, not logged
    assert 'reason="1 frames, expected 2"' in lines[0] and "first_bytes=b'mark.BTCUSDT'" in lines[0]


def test_late_subscriber_gets_later_messages_starting_with_first(instance: str) -> None:
    async def test() -> None:
        endpoint = bus_endpoint(instance, "feed")
        with Publisher(endpoint, "feed", first_seq=1) as pub:
            for i in range(100):
                pub.publish(mark_topic("BTCUSDT"), mark(float(i)))
            with Subscriber([endpoint], ["mark."]) as sub:
                await until_connected(
                    lambda: pub.publish("mark.BTCUSDT", mark(-1.0)), sub, "mark.BTCUSDT"
                )
                first_seen = sub.sequences.last_seq("mark.BTCUSDT")
                assert first_seen is not None and first_seen > 100
                pub.publish(mark_topic("BTCUSDT"), mark(7.0))
                got = await drain(sub)
        assert [(r.payload.seq, r.verdict.kind) for r in got] == [(first_seen + 1, SeqKind.NEXT)]

    run(test)


def test_receive_returns_none_after_the_timeout_when_nothing_arrives(instance: str) -> None:
    async def test() -> None:
        loop = asyncio.get_running_loop()
        with Subscriber([bus_endpoint(instance, "nobody")], [""]) as sub:
            started = loop.time()
            assert await sub.receive(0.1) is None
            assert 0.09 <= loop.time() - started < 0.5

    run(test)


def test_publisher_sequences_keep_growing_across_a_restart(instance: str) -> None:
    with Publisher(bus_endpoint(instance, "a"), "feed") as first:
        before = first.publish("mark.BTCUSDT", mark(1.0))
        first.publish("mark.BTCUSDT", mark(1.0))
    with Publisher(bus_endpoint(instance, "b"), "feed") as second:
        after = second.publish("mark.BTCUSDT", mark(1.0))
        assert second.last_seqs() == {"mark.BTCUSDT": after}
    assert after > before + 1


def test_second_publisher_on_the_same_endpoint_fails(instance: str) -> None:
    endpoint = bus_endpoint(instance, "feed")
    with Publisher(endpoint, "feed"), pytest.raises(BusError, match="cannot bind"):
        Publisher(endpoint, "feed")


def lock_holder(instance: str) -> subprocess.Popen[str]:
    code = (
        "import sys, time\n"
        "from shared.bus import bind_instance_lock\n"
        f"lock = bind_instance_lock({instance!r}, 'feed')\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def test_instance_lock_refuses_a_second_process_until_the_holder_is_killed(instance: str) -> None:
    holder = lock_holder(instance)
    try:
        with pytest.raises(InstanceLockedError, match=f"@slt-{instance}-feed is held by another"):
            bind_instance_lock(instance, "feed")
        with bind_instance_lock(instance, "guard") as other_service:
            assert other_service.endpoint == f"ipc://@slt-{instance}-guard"
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    # SIGKILL frees an abstract socket at once: a restarted feed gets the lock.
    with bind_instance_lock(instance, "feed") as lock:
        assert lock.endpoint == f"ipc://@slt-{instance}-feed"


def test_publisher_and_subscriber_work_over_tcp() -> None:
    async def test() -> None:
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        with Publisher(endpoint, "feed") as pub, Subscriber([endpoint], ["mark."]) as sub:
            await until_connected(
                lambda: pub.publish("mark.BTCUSDT", mark(1.0)), sub, "mark.BTCUSDT"
            )
            seq = pub.publish(mark_topic("BTCUSDT"), mark(2.0))
            got = await drain(sub)
        assert [(r.payload.seq, r.verdict.kind) for r in got] == [(seq, SeqKind.NEXT)]

    run(test)


SLOW_SUBSCRIBER = """
import asyncio, sys
from shared.bus import Subscriber

async def main() -> None:
    with Subscriber([sys.argv[1]], ["mark."], hwm=100) as sub:
        print("subscribed", flush=True)
        await asyncio.sleep(4.0)  # far behind its high-water mark, past any heartbeat timeout
        got = 0
        while await sub.receive(0.5) is not None:
            got += 1
        print(f"received={got} gaps={sub.gaps} missed={sub.missed}", flush=True)

asyncio.run(main())
"""


def test_subscriber_far_behind_its_high_water_mark_survives_and_reports_the_loss(
    instance: str,
) -> None:
    endpoint = bus_endpoint(instance, "slow")
    with Publisher(endpoint, "feed", hwm=100) as pub:
        proc = subprocess.Popen(
            [sys.executable, "-c", SLOW_SUBSCRIBER, endpoint],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "subscribed"

        async def flood() -> None:
            for i in range(40_000):
                pub.publish(mark_topic("BTCUSDT"), mark(100.0 + i % 7))
                if i % 1000 == 0:
                    await asyncio.sleep(0.05)  # spread over ~2 s, while the subscriber sleeps

        run(flood)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, f"subscriber died with {proc.returncode}: {out}"
    fields = dict(part.split("=") for part in out.split())
    assert 0 < int(fields["received"]) < 40_000
    assert int(fields["gaps"]) >= 1 and int(fields["missed"]) > 0


def test_drain_takes_a_queued_burst_in_order_then_receive_still_wakes(instance: str) -> None:
    async def test() -> None:
        endpoint = bus_endpoint(instance, "feed")
        with Publisher(endpoint, "feed") as pub, Subscriber([endpoint], ["mark."]) as sub:
            await until_connected(
                lambda: pub.publish("mark.BTCUSDT", mark(1.0)), sub, "mark.BTCUSDT"
            )
            assert sub.drain(10) == []  # nothing queued: returns at once
            for i in range(200):
                pub.publish(mark_topic(f"S{i:03d}USDT"), mark(float(i), f"S{i:03d}USDT"))
            first = await sub.receive(1.0)
            assert first is not None
            rest: list[Received] = []
            while len(rest) < 199:  # the burst may still be crossing the socket
                rest += sub.drain(150)
                await asyncio.sleep(0.001)
            prices = [first.payload.price] + [r.payload.price for r in rest]  # type: ignore[union-attr]
            assert prices == [float(i) for i in range(200)]
            # After a drain, the asyncio side still sees new messages.
            pub.publish(mark_topic("BTCUSDT"), mark(7.0))
            after = await sub.receive(1.0)
            assert after is not None and after.payload.price == 7.0  # type: ignore[union-attr]

    run(test)
