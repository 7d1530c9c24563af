"""Redis: every key name lives here (`Keys`), and every call has an explicit deadline.

Only what the processes need so far: the rate-limit weight budget shared by all processes of
one instance (`shared/exchange/ratelimit.py` decides; this module stores), and the feed's latest
values with their Clone-pattern snapshot (`write_feed`, `load_feed_snapshot`). Redis is a cache
(DESIGN-RULES rule 18): a caller that gets `CacheUnavailableError` falls back to local state.

Class tree:
    Exception
    └── CacheUnavailableError   Redis did not answer within the deadline, or refused the call

The client is redis-py (pinned in pyproject.toml) with its defaults overridden explicitly
(rule 17): socket and connect timeouts set, no automatic retries (the caller decides), no
health-check pings, a bounded connection pool. Each call is also wrapped in `asyncio.timeout`,
so a stalled connect or a server that accepts but never answers cannot exceed the deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

T = TypeVar("T")


class CacheUnavailableError(Exception):
    """Redis did not answer in time or refused; fall back to local state and try again later."""


class Keys:
    """Every Redis key of one instance; the instance id keeps parallel stacks apart (rule 14)."""

    def __init__(self, instance_id: str) -> None:
        self.prefix = f"slt:{instance_id}"

    def weight_window(self, window_start_ms: int) -> str:
        """Request weight used in the minute window starting at `window_start_ms` (an int)."""
        return f"{self.prefix}:rate:weight:{window_start_ms}"

    def request_block(self) -> str:
        """Exists while every process must hold its requests (a 429/418 Retry-After); PX TTL."""
        return f"{self.prefix}:rate:block"

    def heartbeat(self, process: str) -> str:
        """A process's last heartbeat (msgpack BusHeartbeat), PX TTL = 3 intervals (rule 7: the
        observability mirror; the shared-memory table is the channel the watchdog trusts)."""
        return f"{self.prefix}:hb:{process}"

    def feed_latest(self) -> str:
        """Hash {bus topic: msgpack payload of the last message published on it} (the feed)."""
        return f"{self.prefix}:feed:latest"

    def feed_seqs(self) -> str:
        """Hash {bus topic: seq of that last message}: the Clone-pattern snapshot floors."""
        return f"{self.prefix}:feed:seqs"

    def feed_orders(self) -> str:
        """Hash {client order id: msgpack OrderState} of the open regular and algo orders."""
        return f"{self.prefix}:feed:orders"

    def alerts(self) -> str:
        """Stream of alerts (msgpack bus.Alert under field `a`) for the reporter to deliver."""
        return f"{self.prefix}:alerts"

    def guard_halt(self) -> str:
        """The guard's halt flag mirror (msgpack bus.HaltState); the file in run/ is the truth."""
        return f"{self.prefix}:guard:halt"

    def guard_lease(self) -> str:
        """The guard's entry lease (msgpack guard.GuardLease), PX TTL = `guard.lease_ttl_s`:
        renewed after each full reconcile that found every position's resting stop, deleted when
        one lacks it or the guard stops; the trader sends no entry without it
        (shared/core/lease.py)."""
        return f"{self.prefix}:guard:lease"

    def exit_plans(self) -> str:
        """Hash {entry client id: msgpack guard.ExitPlan}: the trader's exit plan per entry."""
        return f"{self.prefix}:guard:plans"

    def exit_reasons(self) -> str:
        """Hash {symbol: "<signal_id> <reason>"}: the guard's last exit rule per position, read
        by the trader when it records the closed trade."""
        return f"{self.prefix}:guard:exit_reasons"

    def db_outbox(self) -> str:
        """Stream of records (msgpack records.Record under field `r`) waiting for PostgreSQL;
        never trimmed: an entry is deleted only after its upsert committed
        (procs/trader/outbox.py)."""
        return f"{self.prefix}:db:outbox"


def redis_url(url: str, private_port: int) -> str:
    """Return `url`, or the stack's private instance on 127.0.0.1:`private_port` when empty."""
    return url or f"redis://127.0.0.1:{private_port}/0"


@dataclass(frozen=True, slots=True)
class FeedSnapshot:
    """What the feed mirrored into Redis, read in one transaction (so seqs match the values)."""

    latest: dict[str, bytes]  # bus topic -> msgpack payload
    seqs: dict[str, int]  # bus topic -> seq of that payload
    orders: dict[str, bytes]  # client order id -> msgpack OrderState


# Reserve weight atomically: refuse while blocked, or when the window would pass `allowed`.
# KEYS: window counter, block key. ARGV: weight, allowed, counter TTL ms.
# Returns {granted 0/1, used in the window, block ms left (0 = not blocked)}.
_RESERVE = """
local left = redis.call('PTTL', KEYS[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if left > 0 then return {0, used, left} end
local weight = tonumber(ARGV[1])
if weight > 0 and used + weight > tonumber(ARGV[2]) then return {0, used, 0} end
used = redis.call('INCRBY', KEYS[1], weight)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, used, 0}
"""

# Raise the window counter to what the exchange reports (never lower it). Returns the count.
# KEYS: window counter. ARGV: reported used weight, counter TTL ms.
_RAISE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local seen = tonumber(ARGV[1])
if seen > used then
  redis.call('SET', KEYS[1], seen, 'PX', ARGV[2])
  return seen
end
return used
"""

# Block all requests for ARGV[1] ms unless a longer block is already in place. Returns ms left.
_BLOCK = """
local left = redis.call('PTTL', KEYS[1])
local wanted = tonumber(ARGV[1])
if left < wanted then
  redis.call('SET', KEYS[1], '1', 'PX', wanted)
  return wanted
end
return left
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    is_granted: bool
    used_weight: int  # weight used in the window after this call
    blocked_ms: int  # > 0: a Retry-After block is in place for this many more ms


class Cache:
    """An async Redis client with a deadline on every call. Use as `async with Cache(...)`."""

    def __init__(self, url: str, instance_id: str, timeout_s: float, max_connections: int = 8):
        self.keys = Keys(instance_id)
        self.timeout_s = timeout_s
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # no hidden retries: the caller falls back instead
            retry_on_timeout=False,
            health_check_interval=0,
            max_connections=max_connections,
            client_name=f"slt-{instance_id}",
        )
        self._reserve = self._redis.register_script(_RESERVE)
        self._raise = self._redis.register_script(_RAISE)
        self._block = self._redis.register_script(_BLOCK)

    async def __aenter__(self) -> Cache:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool (bounded by the deadline)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._redis.aclose()
        except (TimeoutError, RedisError, OSError):
            pass  # closing a dead connection: nothing left to release

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await call
        except (TimeoutError, RedisError, OSError) as e:
            raise CacheUnavailableError(f"redis: {what} failed ({type(e).__name__}: {e})") from e

    async def ping(self) -> bool:
        """Return True when Redis answers; raises CacheUnavailableError."""
        return bool(await self._call("PING", self._redis.ping()))

    async def reserve_weight(
        self, window_start_ms: int, weight: int, allowed: int, ttl_ms: int
    ) -> Reservation:
        """Atomically add `weight` to the window unless blocked or over `allowed`."""
        keys = [self.keys.weight_window(window_start_ms), self.keys.request_block()]
        reply: Any = await self._call(
            "reserve_weight", self._reserve(keys, [weight, allowed, ttl_ms])
        )
        return Reservation(bool(reply[0]), int(reply[1]), int(reply[2]))

    async def raise_weight(self, window_start_ms: int, used_weight: int, ttl_ms: int) -> int:
        """Raise the window's count to `used_weight` if higher; return the count."""
        keys = [self.keys.weight_window(window_start_ms)]
        reply: Any = await self._call("raise_weight", self._raise(keys, [used_weight, ttl_ms]))
        return int(reply)

    async def block_requests(self, duration_ms: int) -> int:
        """Make every process hold its requests for `duration_ms`; return the ms left."""
        keys = [self.keys.request_block()]
        reply: Any = await self._call("block_requests", self._block(keys, [duration_ms]))
        return int(reply)

    async def request_block_ms(self) -> int:
        """Return the ms left of a Retry-After block (0 when none)."""
        left = await self._call("PTTL", self._redis.pttl(self.keys.request_block()))
        return max(0, int(left))

    async def window_weight(self, window_start_ms: int) -> int:
        """Return the weight counted in the window (0 when none)."""
        value = await self._call("GET", self._redis.get(self.keys.weight_window(window_start_ms)))
        return int(value or 0)

    async def write_feed(
        self,
        is_full: bool,
        latest: dict[str, bytes],
        seqs: dict[str, int],
        orders: dict[str, bytes],
        removed_orders: list[str],
    ) -> None:
        """Write the feed's changed values in one MULTI/EXEC; `is_full` first deletes the three
        hashes, so they hold exactly what is given. Raises CacheUnavailableError."""
        k = self.keys
        pipe = self._redis.pipeline(transaction=True)
        if is_full:
            pipe.delete(k.feed_latest(), k.feed_seqs(), k.feed_orders())
        if latest:
            pipe.hset(k.feed_latest(), mapping=latest)  # type: ignore[arg-type]
        if seqs:
            pipe.hset(k.feed_seqs(), mapping=seqs)  # type: ignore[arg-type]
        if orders:
            pipe.hset(k.feed_orders(), mapping=orders)  # type: ignore[arg-type]
        if removed_orders:
            pipe.hdel(k.feed_orders(), *removed_orders)
        await self._call("write_feed", pipe.execute())

    async def write_heartbeat(self, process: str, payload: bytes, ttl_ms: int) -> None:
        """SET the process's heartbeat mirror with a PX TTL. Raises CacheUnavailableError."""
        call = self._redis.set(self.keys.heartbeat(process), payload, px=ttl_ms)
        await self._call("write_heartbeat", call)

    async def read_heartbeat(self, process: str) -> tuple[bytes | None, int]:
        """Return (payload or None, remaining TTL ms; negative when absent)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self.keys.heartbeat(process))
        pipe.pttl(self.keys.heartbeat(process))
        payload, ttl_ms = await self._call("read_heartbeat", pipe.execute())
        return payload, int(ttl_ms)

    async def write_guard_lease(self, payload: bytes, ttl_ms: int) -> None:
        """SET the guard's lease with a PX TTL. Raises CacheUnavailableError."""
        await self._call(
            "write_guard_lease", self._redis.set(self.keys.guard_lease(), payload, px=ttl_ms)
        )

    async def read_guard_lease(self) -> bytes | None:
        """GET the guard's lease (None when absent or expired). Raises CacheUnavailableError."""
        value: Any = await self._call("read_guard_lease", self._redis.get(self.keys.guard_lease()))
        return None if value is None else bytes(value)

    async def delete_guard_lease(self) -> None:
        """DEL the guard's lease. Raises CacheUnavailableError."""
        await self._call("delete_guard_lease", self._redis.delete(self.keys.guard_lease()))

    async def add_alert(self, payload: bytes, max_length: int = 10_000) -> None:
        """XADD an alert to the alerts stream (capped). Raises CacheUnavailableError."""
        call = self._redis.xadd(
            self.keys.alerts(), {"a": payload}, maxlen=max_length, approximate=True
        )
        await self._call("add_alert", call)

    async def read_alerts(self, count: int = 100) -> list[bytes]:
        """Return the newest `count` alert payloads, oldest first."""
        rows: Any = await self._call(
            "read_alerts", self._redis.xrevrange(self.keys.alerts(), count=count)
        )
        return [bytes(fields[b"a"]) for _id, fields in reversed(rows)]

    async def read_alerts_after(self, entry_id: str, count: int) -> list[tuple[str, bytes]]:
        """Return up to `count` alerts (entry id, payload) after `entry_id` ("0-0": from the
        oldest), oldest first. Raises CacheUnavailableError."""
        rows: Any = await self._call(
            "read_alerts_after",
            self._redis.xrange(self.keys.alerts(), min=f"({entry_id}", count=count),
        )
        return [(i.decode() if isinstance(i, bytes) else str(i), bytes(f[b"a"])) for i, f in rows]

    async def append_stream(self, key: str, payload: bytes) -> str:
        """XADD `payload` under field `r` (never trimmed); return the entry id."""
        entry_id: Any = await self._call("XADD", self._redis.xadd(key, {"r": payload}))
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def read_stream(self, key: str, count: int) -> list[tuple[str, bytes]]:
        """Return the oldest `count` entries as (entry id, payload of field `r`), oldest first."""
        rows: Any = await self._call("XRANGE", self._redis.xrange(key, count=count))
        return [(entry_id.decode(), bytes(fields.get(b"r", b""))) for entry_id, fields in rows]

    async def delete_stream_entries(self, key: str, entry_ids: list[str]) -> int:
        """XDEL entries by id; return how many existed."""
        if not entry_ids:
            return 0
        return int(await self._call("XDEL", self._redis.xdel(key, *entry_ids)))

    async def stream_length(self, key: str) -> int:
        """XLEN a stream (0 when absent)."""
        return int(await self._call("XLEN", self._redis.xlen(key)))

    async def set_value(self, key: str, payload: bytes) -> None:
        """SET a key (no TTL). Raises CacheUnavailableError."""
        await self._call("SET", self._redis.set(key, payload))

    async def get_value(self, key: str) -> bytes | None:
        """GET a key. Raises CacheUnavailableError."""
        value: Any = await self._call("GET", self._redis.get(key))
        return None if value is None else bytes(value)

    async def set_field(self, key: str, field: str, payload: bytes | None) -> None:
        """HSET one hash field, or HDEL it when payload is None. Raises CacheUnavailableError."""
        if payload is None:
            await self._call("HDEL", self._redis.hdel(key, field))
        else:
            await self._call("HSET", self._redis.hset(key, field, payload))

    async def get_fields(self, key: str) -> dict[str, bytes]:
        """HGETALL a hash as {field: payload}. Raises CacheUnavailableError."""
        raw: Any = await self._call("HGETALL", self._redis.hgetall(key))
        return {k.decode(): bytes(v) for k, v in raw.items()}

    async def load_feed_snapshot(self) -> FeedSnapshot:
        """Read the feed's latest values, seqs and open orders atomically."""
        k = self.keys
        pipe = self._redis.pipeline(transaction=True)
        pipe.hgetall(k.feed_latest())
        pipe.hgetall(k.feed_seqs())
        pipe.hgetall(k.feed_orders())
        latest, seqs, orders = await self._call("load_feed_snapshot", pipe.execute())
        return FeedSnapshot(
            latest={t.decode(): v for t, v in latest.items()},
            seqs={t.decode(): int(v) for t, v in seqs.items()},
            orders={c.decode(): v for c, v in orders.items()},
        )
