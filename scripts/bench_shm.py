"""Print how long reading kline windows takes from shared memory versus from Redis.

    .venv/bin/python scripts/bench_shm.py

200 symbols x 500 closed 1m bars x 11 float64 columns (8.8 MB). shm: KlineReader.window per
symbol (seqlocked copy out of the segment), or KlineReader.views + validate (zero-copy read-only
views, one vectorized seqlock check before and after). Redis: a private redis-server started here
(as the tests do), one key per symbol holding the window as raw float64 bytes (the cheapest
possible serialization), read with GET, or with one MGET for all symbols, then decoded with numpy.

`KlineReader.block` gives all 200 windows as one (200, 500, 11) view when their rings end at the
same row (the symbols took the same number of appends, as here and in a running feed).

A view costs almost nothing until it is used, so the last line adds a trivial computation (sum of
the close column of every window) to both sides: shm views + sum + validate versus Redis MGET +
decode + sum. No writer runs during the timing, so every validation succeeds.
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

from shared.shm.rings import (
    COLUMN_COUNT,
    KlineColumn,
    KlineReader,
    KlineWriter,
    unlink_segments,
)
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

    def shm_one_view() -> object:
        view = reader.view(SYMBOLS[0], BARS)
        assert view.is_valid()
        return view

    def shm_all_views() -> object:
        views = reader.views(SYMBOLS, BARS)
        assert not reader.validate(views)
        return views

    def shm_all_views_sum() -> object:
        views = reader.views(SYMBOLS, BARS)
        sums = [float(view.rows[:, KlineColumn.CLOSE].sum()) for view in views]
        assert not reader.validate(views)
        return sums

    def shm_block() -> object:
        block = reader.block(SYMBOLS, BARS)
        assert block is not None and not block.stale()
        return block

    def shm_block_sum() -> object:
        block = reader.block(SYMBOLS, BARS)
        assert block is not None
        sums = block.rows[:, :, KlineColumn.CLOSE].sum(axis=1).tolist()
        assert not block.stale()
        return sums

    expected_sums = [float(windows[s][:, KlineColumn.CLOSE].sum()) for s in SYMBOLS]
    assert shm_all_views_sum() == expected_sums
    assert np.allclose(shm_block_sum(), expected_sums, rtol=1e-12)  # type: ignore[arg-type]

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

        def redis_all_sum() -> object:
            return [float(decode(raw)[:, KlineColumn.CLOSE].sum()) for raw in client.mget(keys)]

        assert np.array_equal(redis_one(), windows[SYMBOLS[0]])
        redis_one_us, redis_all_us = per_call_us(redis_one), per_call_us(redis_all)
        figures = [
            ("one window (1 symbol x 500 bars)", per_call_us(shm_one), redis_one_us),
            ("all windows (200 symbols x 500 bars)", per_call_us(shm_all), redis_all_us),
            ("one window zero-copy view + validate", per_call_us(shm_one_view), redis_one_us),
            (
                "all windows zero-copy views + validate (200 x 500)",
                per_call_us(shm_all_views),
                redis_all_us,
            ),
            (
                "all windows views + sum(close) + validate vs MGET + decode + sum(close)",
                per_call_us(shm_all_views_sum),
                per_call_us(redis_all_sum),
            ),
            (
                "all windows as one block view + stale check (200 x 500)",
                per_call_us(shm_block),
                redis_all_us,
            ),
            (
                "one block view + sum(close) + stale check vs MGET + decode + sum(close)",
                per_call_us(shm_block_sum),
                per_call_us(redis_all_sum),
            ),
        ]
        client.close()
    reader.close()
    writer.close()
    unlink_segments(instance)
    print(f"kline windows, {COLUMN_COUNT} float64 columns, median per read")
    for label, shm_us, redis_us in figures:
        print(
            f"{label:72s} shm {shm_us:9.1f} us   redis {redis_us:9.1f} us   "
            f"redis/shm {redis_us / shm_us:6.1f}x"
        )


if __name__ == "__main__":
    main()
