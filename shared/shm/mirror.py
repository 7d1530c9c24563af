"""The Redis mirror of a process's heartbeat (DESIGN-RULES 7): `slt:<instance>:hb:<process>`, a
msgpack `bus.BusHeartbeat` with a PX TTL of three intervals, for the status page and operators.

The shared-memory table (shared/shm/heartbeat.py) is the channel the watchdog trusts; this mirror is
observability only, so a dead Redis is skipped without a word (the process's own Redis users
report it).
"""

from __future__ import annotations

import asyncio
import os
import time

from shared.cache import Cache, CacheUnavailableError
from shared.schemas import bus


async def mirror_heartbeat(cache: Cache, process: str, interval_s: float) -> None:
    """Write the process's heartbeat mirror every `interval_s`, forever (until cancelled)."""
    ttl_ms = int(3000 * interval_s)
    while True:
        beat = bus.BusHeartbeat(
            ts_ms=time.time_ns() // 1_000_000, source=process, pid=os.getpid(), published=0
        )
        try:
            await cache.write_heartbeat(process, bus.encode(beat), ttl_ms)
        except CacheUnavailableError:
            pass
        await asyncio.sleep(interval_s)
