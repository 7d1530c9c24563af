"""ZeroMQ PUB/SUB bus for replaceable data, and the per-service instance lock.

Messages are two frames, a dotted topic and a msgpack payload (`shared.schemas.bus`). A process
publishes through one `Publisher` bound at `bus_endpoint(instance, service)`; consumers connect a
`Subscriber` to the publishers they need, filtered by topic prefix.

Endpoints default to the Linux abstract namespace, `ipc://@slt-<instance>-<service>-bus`: no socket
file to go stale after kill -9, the instance id keeps parallel stacks apart, and a second bind
fails instead of silently taking the path over (observed with filesystem ipc:// paths). tcp://
endpoints work unchanged for a publisher on another host.

Socket options are explicit (DESIGN-RULES 16): linger=0 (close never waits for peers);
SNDHWM/RCVHWM = DEFAULT_HWM. No ZMTP heartbeats: with libzmq 4.3.5 a subscriber that falls
behind its RCVHWM while heartbeats are on aborts its whole process ("Assertion failed:
_input_stopped", libzmq issue #3937, fix still open in PR #4830) — seen in 4 runs of
scripts/bench_feed.py. Link health comes from the application instead: every publisher sends
`heartbeat.<service>` each interval and subscribers check sequence numbers and staleness.

Error classes:
    BusError(Exception)                 a bus socket could not be set up
        InstanceLockedError             another process holds the service's instance lock
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

import msgspec
import zmq
import zmq.asyncio

from shared import log
from shared.core.sequence import SeqKind, SeqVerdict, TopicSequences
from shared.schemas.bus import Payload, decode, encode

# High-water mark, messages per peer. The default (1000) silently dropped 20-52 % of a 300k
# burst. The feed's peak is about 1000 msg/s (marks every second plus the minute's klines for a
# few hundred symbols), so 100k holds well over a minute of a stalled subscriber at about
# 200 B each (~20 MB per subscriber at worst). What still overflows shows up as a seq gap.
DEFAULT_HWM = 100_000
BAD_MESSAGE_BYTES = 200  # how much of a malformed message is logged
BAD_MESSAGE_LOG_INTERVAL_S = 10.0


class BusError(Exception):
    """A bus socket could not be bound or connected."""


class InstanceLockedError(BusError):
    """Another process of the same instance already runs this service."""


def bus_endpoint(instance: str, service: str) -> str:
    """Return the default publish endpoint of a service: ipc://@slt-<instance>-<service>-bus."""
    return f"ipc://@slt-{instance}-{service}-bus"


def _set_common_options(socket: zmq.Socket[bytes] | zmq.asyncio.Socket, hwm: int) -> None:
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM, hwm)
    socket.setsockopt(zmq.RCVHWM, hwm)
    socket.setsockopt(zmq.HEARTBEAT_IVL, 0)  # off: see the module docstring (libzmq #3937)


class Publisher:
    """Bind a PUB socket and publish payloads, stamping `source` and the per-topic `seq`.

    Use it from one thread (ZeroMQ sockets are not thread-safe); publish() never blocks, so the
    event loop may call it directly.
    """

    def __init__(
        self,
        endpoint: str,
        source: str,
        hwm: int = DEFAULT_HWM,
        first_seq: int | None = None,
    ) -> None:
        """Bind endpoint; raise BusError when it is taken.

        Sequences start at first_seq (default: the current time in microseconds), so they keep
        growing across a restart and a subscriber's snapshot floor stays valid.
        """
        self.endpoint = endpoint
        self.source = source
        self.published = 0
        self._seq_base = time.time_ns() // 1000 if first_seq is None else first_seq - 1
        self._last_seq: dict[str, int] = {}
        self._socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
        _set_common_options(self._socket, hwm)
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as e:
            self._socket.close(linger=0)
            raise BusError(f"bus: cannot bind {endpoint}: {e.strerror}") from e

    def publish(self, topic: str, payload: Payload) -> int:
        """Send topic and payload without blocking; return the seq stamped on it.

        A PUB socket never blocks: at the high-water mark ZeroMQ drops the message for that
        subscriber, which then sees a seq gap.
        """
        seq = self._last_seq.get(topic, self._seq_base) + 1
        self._last_seq[topic] = seq
        stamped = msgspec.structs.replace(payload, source=self.source, seq=seq)
        self._socket.send_multipart([topic.encode("ascii"), encode(stamped)], flags=zmq.NOBLOCK)
        self.published += 1
        return seq

    def last_seqs(self) -> dict[str, int]:
        """Return {topic: last seq published}: what a snapshot written alongside should carry."""
        return dict(self._last_seq)

    def close(self) -> None:
        """Close the socket at once (linger=0): queued messages are discarded."""
        self._socket.close(linger=0)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class Received:
    """One accepted message and what its seq says (verdict.needs_resync → reload snapshot)."""

    topic: str
    payload: Payload
    verdict: SeqVerdict


class Subscriber:
    """Connect a SUB socket, filter by topic prefix, decode and sequence-check messages."""

    def __init__(
        self,
        endpoints: Iterable[str],
        prefixes: Iterable[str],
        hwm: int = DEFAULT_HWM,
        process: str | None = None,
    ) -> None:
        """Connect to each endpoint (ZeroMQ reconnects on its own) and subscribe each prefix.

        An empty prefix "" subscribes to everything. Raises BusError on an invalid endpoint.
        """
        self.sequences = TopicSequences()
        self.bad_messages = 0  # malformed frames counted and skipped
        self.last_bad: bytes = b""  # first BAD_MESSAGE_BYTES of the last malformed message
        self.gaps = 0  # messages accepted after a seq gap or reset
        self.missed = 0  # messages known lost from gaps
        self.stale_dropped = 0  # messages at or below a snapshot floor
        self._log = log.get(process)
        self._bad_throttle = log.Throttle(BAD_MESSAGE_LOG_INTERVAL_S)
        self._socket = zmq.asyncio.Context.instance().socket(zmq.SUB)
        self._sync: zmq.Socket[bytes] | None = None  # a shadow for drain(); shares the socket
        _set_common_options(self._socket, hwm)
        try:
            for prefix in prefixes:
                self._socket.setsockopt(zmq.SUBSCRIBE, prefix.encode("ascii"))
            for endpoint in endpoints:
                self._socket.connect(endpoint)
        except zmq.ZMQError as e:
            self._socket.close(linger=0)
            raise BusError(f"bus: cannot subscribe: {e.strerror}") from e

    def load_snapshot(self, snapshot: Mapping[str, int]) -> None:
        """Drop later messages with seq <= snapshot[topic] (Clone pattern: call after subscribing
        and after the snapshot was read, before consuming)."""
        self.sequences.load_snapshot(snapshot)

    async def receive(self, timeout_s: float) -> Received | None:
        """Return the next accepted message, or None when none arrived within timeout_s.

        Malformed messages are counted, logged (rate-limited) and skipped; stale ones dropped.
        On cancellation nothing is consumed that was not returned.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            remaining_ms = max(0, round((deadline - time.monotonic()) * 1000))
            if not await self._socket.poll(timeout=remaining_ms):
                return None
            # Readable: this completes at once (a multipart message arrives whole).
            frames = await self._socket.recv_multipart()
            received = self._accept(frames)
            if received is not None:
                return received
            if time.monotonic() >= deadline:
                return None

    def drain(self, max_messages: int) -> list[Received]:
        """Return the messages already queued (at most max_messages) without waiting.

        A batch consumer calls it after `receive` returned one: a sync shadow of the socket reads
        with NOBLOCK, so a burst (a minute's closes of every symbol) costs one event-loop wake-up,
        not one per message. Malformed and stale messages are handled as in `receive`.
        """
        if self._sync is None:
            self._sync = zmq.Socket.shadow(self._socket.underlying)
        out: list[Received] = []
        for _ in range(max_messages):
            try:
                frames = self._sync.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            received = self._accept(frames)
            if received is not None:
                out.append(received)
        return out

    def _accept(self, frames: list[bytes]) -> Received | None:
        if len(frames) != 2:
            self._bad(f"{len(frames)} frames, expected 2", frames)
            return None
        try:
            topic = frames[0].decode("ascii")
            payload = decode(topic, frames[1])
        except (UnicodeDecodeError, ValueError, msgspec.DecodeError) as e:
            # msgspec.ValidationError is a DecodeError; its message names the field path.
            self._bad(str(e), frames)
            return None
        verdict = self.sequences.observe(topic, payload.seq)
        if verdict.kind is SeqKind.STALE:
            self.stale_dropped += 1
            return None
        if verdict.needs_resync:
            self.gaps += 1
            self.missed += verdict.missed
        return Received(topic, payload, verdict)

    def _bad(self, reason: str, frames: list[bytes]) -> None:
        self.bad_messages += 1
        self.last_bad = b"|".join(frames)[:BAD_MESSAGE_BYTES]
        should_log, suppressed = self._bad_throttle.allow(time.monotonic())
        if should_log:
            self._log.warning(
                "bad_message",
                reason=reason,
                first_bytes=repr(self.last_bad),
                total=self.bad_messages,
                suppressed=suppressed,
            )

    def close(self) -> None:
        """Close the socket at once (linger=0)."""
        self._socket.close(linger=0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class InstanceLock:
    """A bound abstract-namespace unix socket held for the life of the process (DESIGN-RULES 14)."""

    def __init__(self, endpoint: str, sock: socket.socket) -> None:
        self.endpoint = endpoint
        self._sock = sock

    def release(self) -> None:
        """Unbind at once; the kernel also releases it when the process dies, even by SIGKILL."""
        self._sock.close()

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def bind_instance_lock(instance: str, service: str) -> InstanceLock:
    """Bind ipc://@slt-<instance>-<service>; raise InstanceLockedError if another process has it.

    A plain AF_UNIX socket in the abstract namespace: the same address ZeroMQ's ipc://@ uses, but
    bound and released synchronously (a ZeroMQ close completes later, on its I/O thread). The
    socket is not inherited by child processes. Keep the lock referenced for the process's life.
    """
    name = f"slt-{instance}-{service}"
    endpoint = f"ipc://@{name}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind("\0" + name)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise InstanceLockedError(
                f"bus: instance lock {endpoint} is held by another process; "
                f"is {service} already running for instance {instance}?"
            ) from e
        raise BusError(f"bus: cannot bind instance lock {endpoint}: {e.strerror}") from e
    return InstanceLock(endpoint, sock)
