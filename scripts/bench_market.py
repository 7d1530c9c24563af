"""Print the paper market's speed: replay load, Market build, hot-path calls, REST klines.

    .venv/bin/python scripts/bench_market.py

The hot path is what the server does at speed 60: for every 250 ms sim step, for every symbol,
about ten last_price / partial_bar calls (2400 calls per second per symbol).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from procs.paper_exchange.market.prices import Market
from procs.paper_exchange.market.replay import load_replay

DATA = Path(__file__).resolve().parent.parent / "procs" / "paper_exchange" / "data"
EPOCH_MS = 1_795_395_600_000


def main() -> None:
    specs = {
        s["symbol"]: s for s in json.loads((DATA / "exchange_info.json").read_text())["symbols"]
    }
    started = time.perf_counter()
    replay = load_replay(DATA, list(specs))
    loaded = time.perf_counter()
    market = Market(replay, specs, EPOCH_MS)
    built = time.perf_counter()
    print(f"load_replay symbols={len(replay)} seconds={loaded - started:.3f}")
    print(f"market_build seconds={built - loaded:.3f}")

    steps = 240 * 60  # one sim hour of 250 ms steps
    calls = 0
    started = time.perf_counter()
    for step in range(steps):
        now = EPOCH_MS + step * 250
        for symbol in specs:
            for _ in range(5):
                market.last_price(symbol, now)
                market.partial_bar(symbol, now)
                calls += 2
    seconds = time.perf_counter() - started
    print(f"hot_path calls={calls} microseconds_per_call={seconds / calls * 1e6:.2f}")
    print(f"hot_path sim_hour_seconds={seconds:.3f} symbols={len(specs)}")

    now = EPOCH_MS + 30 * 86_400_000 + 12_345
    for interval in ("1m", "5m", "1h", "1d", "1w", "1M"):
        started = time.perf_counter()
        bars = market.klines("BTCUSDT", interval, None, None, 1500, now)
        elapsed = time.perf_counter() - started
        print(f"klines interval={interval} bars={len(bars)} milliseconds={elapsed * 1000:.1f}")


if __name__ == "__main__":
    main()
