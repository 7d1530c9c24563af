"""Print how long reading kline windows takes from shared memory versus from Redis.

    .venv/bin/python scripts/bench_shm.py

200 symbols x 500 closed 1m bars x 11 float64 columns (8.8 MB). shm: KlineReader.window per
symbol (seqlocked copy out of the segment). Redis: a private redis-server started here (as the
tests do), one key per symbol holding the window as raw float64 bytes (the cheapest possible
serialization), read with GET, or with one MGET for all symbols, then decoded with numpy.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.shm import COLUMN_COUNT, KlineReader, KlineWriter, unlink_segments
from tests.services import redis_server

SYMBOLS = [f"SYM{i:03d}USDT" for i in range(200)]
BARS = 500


def per_call_us(fn: Callable[[], object], seconds: float = 1.0) -> float:
    """Return the median microseconds per call over batches run for about `seconds`."""
    fn()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e6)
    return float(np.median(samples))


def main() -> None:
    rng = np.random.default_rng(7)
    instance = "bench" + uuid.uuid4().hex[:8]
    writer = KlineWriter.open(instance, SYMBOLS, BARS)
    windows = {}
    for symbol in SYMBOLS:
        rows = rng.random((BARS, COLUMN_COUNT))
        rows[:, 0] = np.arange(BARS) * 60_000.0
        windows[symbol] = rows
        for row in rows:
            writer.append(symbol, row)
    reader = KlineReader(instance)
    assert np.array_equal(reader.window(SYMBOLS[0], BARS), windows[SYMBOLS[0]])

    def shm_one() -> object:
        return reader.window(SYMBOLS[0], BARS)

    def shm_all() -> object:
        return [reader.window(symbol, BARS) for symbol in SYMBOLS]

    with tempfile.TemporaryDirectory(prefix="slt-bench-") as tmp, redis_server(Path(tmp)) as srv:
        client = redis.Redis(port=srv.port, socket_timeout=5, socket_connect_timeout=5)
        keys = [f"klines:1m:{symbol}" for symbol in SYMBOLS]
        client.mset({key: windows[s].tobytes() for key, s in zip(keys, SYMBOLS, strict=True)})

        def decode(raw: Any) -> npt.NDArray[np.float64]:
            return np.frombuffer(raw, np.float64).reshape(BARS, COLUMN_COUNT).copy()

        def redis_one() -> npt.NDArray[np.float64]:
            return decode(client.get(keys[0]))

        def redis_all() -> object:
            return [decode(raw) for raw in client.mget(keys)]

        assert np.array_equal(redis_one(), windows[SYMBOLS[0]])
        figures = [
            ("one window (1 symbol x 500 bars)", per_call_us(shm_one), per_call_us(redis_one)),
            ("all windows (200 symbols x 500 bars)", per_call_us(shm_all), per_call_us(redis_all)),
        ]
        client.close()
    reader.close()
    writer.close()
    unlink_segments(instance)
    print(f"kline windows, {COLUMN_COUNT} float64 columns, median per read")
    for label, shm_us, redis_us in figures:
        print(
            f"{label:38s} shm {shm_us:9.1f} us   redis {redis_us:9.1f} us   "
            f"redis/shm {redis_us / shm_us:6.1f}x"
        )


if __name__ == "__main__":
    main()
