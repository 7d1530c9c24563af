"""Print the trader's decision latency for 200 symbols and the model's training time.

    .venv/bin/python scripts/bench_trader.py [--samples 200] [--symbols 200] [--keep]

Takes about five minutes on 2 cores. Real processes and services: a private redis-server and
PostgreSQL, the paper exchange (`procs.paper_exchange`, speed 1, rate limits raised) and the trader
(`python -m procs.trader`, its bootstrap model trained from the exchange's kline history).

1. Closed klines -> entry order at the exchange, for N symbols (default 200). The bench plays the
   feed: it owns the shared-memory kline segment of N symbols (the paper exchange's six plus
   N - 6 synthetic ones, each a real symbol's 1m history at another offset, so every window is
   real data) and the feed's ZeroMQ PUB endpoint. Per sample it does what the feed does when a
   minute closes: append the minute's bar of every symbol to shm and publish its `kline.1m.<S>`
   message. The clock starts before the first append (t0, wall clock) and stops at the entry's
   transaction time `updateTime` at the exchange (its clock brought to the wall clock by the
   offset of the shortest of 30 `GET /fapi/v1/time` round trips, NTP's rule, error printed);
   the exchange runs at speed 1, so the offset is constant. In between: the trader's receive of
   N bus messages, shm window reads, features of N windows, 2N predictions, ranking, sizing from
   cached equity, the intent written to PostgreSQL, the ExitPlan to Redis, leverage set when it
   changes, and the MARKET order. Only the six listed symbols can be entered; the trader enters
   at most one per sample (`max_open_positions = 1`), and the bench closes it again after the
   sample so the next minute can enter. A minute whose best listed candidate is not above 0.5
   confidence enters nothing and is counted, not timed. The bench keeps off the cores while
   the trader decides (it sleeps 0.3 s, then reads only the new lines of the trader's log), and
   the trader's account check runs every 1 s (2 s by default), so few decisions meet it. The
   trader's own `score_ms` (first bus message -> ranked candidates) is printed beside it from
   its log.
   Not included: the exchange -> feed WebSocket hop and the feed's parse of the N klines
   (scripts/bench_feed.py: p50 16-17 us per message, so about 3 ms for 200).
2. Training time: `shared.learn.model.train_model` on 50,000 samples of the real data (nthread 2,
the
   default parameters), and the dataset build it needs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared import log  # noqa: E402
from shared.bus import Publisher, bus_endpoint  # noqa: E402
from shared.cache import Cache  # noqa: E402
from shared.config import load_config  # noqa: E402
from shared.core import features as fe  # noqa: E402
from shared.exchange.rest import ExchangeClient  # noqa: E402
from shared.learn.dataset import build_dataset, load_kline_csvs  # noqa: E402
from shared.learn.model import TrainParams, train_model  # noqa: E402
from shared.schemas import bus  # noqa: E402
from shared.shm.rings import KlineWriter  # noqa: E402
from shared.shm.segment import unlink_segments  # noqa: E402
from tests.integration.feed.conftest import FeedProcess, feed_overlay  # noqa: E402
from tests.paper_exchange_fixture import (  # noqa: E402
    ALL_SYMBOLS,
    PaperExchangeProcess,
    start_paper_exchange,
    write_overlay,
)
from tests.services import eventually, postgres_server, redis_server  # noqa: E402

SAMPLES = 200
SYMBOLS = 200
WINDOW_BARS = 500
DATA_DIR = ROOT / "procs" / "paper_exchange" / "data" / "klines"
UNLIMITED = 1_000_000
PAPER_LIMITS = {
    "request_weight_limit_1m": UNLIMITED,
    "order_limit_10s": UNLIMITED,
    "order_limit_1m": UNLIMITED,
}
SAMPLE_TIMEOUT_S = 3.0
TARGET_P99_MS = 25.0
TRAIN_SAMPLES = 50_000
QUIET_S = 0.3  # the bench does nothing this long after publishing a minute
CHECK_S = 1.0  # the trader's account check (2 s by default): not during most decisions


class LogTail:
    """The lines a log file gained since the previous read."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def read(self) -> str:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        return data.decode(errors="replace")


def synthetic_names(count: int) -> list[str]:
    """Return the six listed symbols plus count - 6 unlisted names (`S007USDT`, ...)."""
    return [*ALL_SYMBOLS, *(f"S{i:03d}USDT" for i in range(len(ALL_SYMBOLS), count))]


def histories(names: list[str], bars: int) -> dict[str, np.ndarray]:
    """Return, per name, `bars` consecutive real 1m bars (a listed symbol's history, offset)."""
    real = load_kline_csvs(DATA_DIR, ALL_SYMBOLS)
    out = {}
    for i, name in enumerate(names):
        source = real[ALL_SYMBOLS[i % len(ALL_SYMBOLS)]]
        start = (i // len(ALL_SYMBOLS)) * 97 % (len(source) - bars)
        out[name] = source[start : start + bars]
    return out


def kline_row(bar: np.ndarray, open_ms: int) -> list[float]:
    """Return a shm row (KlineColumn order) for a real OHLCV bar at `open_ms`."""
    _t, o, h, low, c, v = (float(x) for x in bar[:6])
    return [open_ms, o, h, low, c, v, open_ms + 59_999, c * v, 100.0, v / 2, c * v / 2]


class FakeFeed:
    """The feed's side of shm and the bus, played by the bench."""

    def __init__(self, instance: str, names: list[str], data: dict[str, np.ndarray]) -> None:
        self.names, self.data = names, data
        self.writer = KlineWriter.open(instance, names, WINDOW_BARS)
        self.pub = Publisher(bus_endpoint(instance, "feed"), "feed")
        self.topics = {s: bus.kline_topic("1m", s) for s in names}
        self.bar = 0
        self.open_ms = (time.time_ns() // 1_000_000 // 60_000 - WINDOW_BARS - 10) * 60_000
        for _ in range(WINDOW_BARS):
            self.step(publish=False)

    def prepare(self) -> list[tuple[str, np.ndarray, bus.Kline]]:
        """Return the next minute's rows and bus messages (what the feed decodes from the WS)."""
        t = self.open_ms
        out = []
        for s in self.names:
            row = kline_row(self.data[s][self.bar], t)
            out.append(
                (
                    s,
                    np.asarray(row, dtype=np.float64),
                    bus.Kline(
                        ts_ms=t + 60_000,
                        symbol=s,
                        interval="1m",
                        open_time_ms=t,
                        close_time_ms=t + 59_999,
                        open=row[1],
                        high=row[2],
                        low=row[3],
                        close=row[4],
                        volume=row[5],
                        quote_volume=row[7],
                        trades=100,
                        taker_buy_volume=row[9],
                        taker_buy_quote_volume=row[10],
                        is_closed=True,
                    ),
                )
            )
        return out

    def step(
        self, publish: bool = True, prepared: list[tuple[str, np.ndarray, bus.Kline]] | None = None
    ) -> int:
        """Append (and publish) the next minute of every symbol; return its open time."""
        t = self.open_ms
        for s, row, kline in prepared or self.prepare():
            self.writer.append(s, row)
            if publish:
                self.pub.publish(self.topics[s], kline)
        self.bar += 1
        self.open_ms += 60_000
        return t

    def close(self) -> None:
        self.pub.close()
        self.writer.close()


async def clock_offset_ms(rest_url: str) -> tuple[float, float]:
    """Return (exchange ms - wall ms, error bound ms) from the shortest of 30 round trips."""
    best: tuple[float, float] | None = None
    async with aiohttp.ClientSession() as http:
        for _ in range(30):
            sent = time.time_ns() / 1e6
            async with http.get(f"{rest_url}/fapi/v1/time") as reply:
                server = (await reply.json())["serverTime"]
            got = time.time_ns() / 1e6
            rtt = got - sent
            if best is None or rtt < best[1] * 2:
                best = (server - (sent + got) / 2, rtt / 2)
    assert best is not None
    return best


Samples = tuple[list[float], list[float], int, float]


async def run_samples(
    px: PaperExchangeProcess, trader: FeedProcess, cfg_path: Path, feed: FakeFeed, samples: int
) -> Samples:
    """Run the samples; return (latencies ms, bench publish ms, minutes without entry, error)."""
    cfg = load_config("paper", env={"SLT_CONFIG": str(cfg_path)})
    offset_ms, error_ms = await clock_offset_ms(px.rest_url)
    latencies: list[float] = []
    publish_ms: list[float] = []
    skipped = 0
    logger = log.get("bench")
    async with (
        Cache(cfg.redis.url, "bench", 0.5) as cache,
        ExchangeClient(cfg.exchange, cache, logger=logger) as client,
    ):
        tail = LogTail(trader.log_path)
        for _ in range(samples):
            prepared = feed.prepare()
            t0 = time.time_ns() / 1e6
            minute = feed.step(prepared=prepared)
            publish_ms.append(time.time_ns() / 1e6 - t0)
            tag = f"_{minute // 60_000}_"
            cid = None
            deadline = time.monotonic() + SAMPLE_TIMEOUT_S
            # Stay off the two cores while the trader decides; then read only the new log lines.
            await asyncio.sleep(QUIET_S)
            text = ""
            while time.monotonic() < deadline and cid is None:
                text += tail.read()
                found = re.search(rf"order_filled symbol=(\S+) .*client_id=(\S*{tag}\S*)", text)
                if found:
                    cid = (found.group(1), found.group(2))
                elif re.search(rf"decision minute_ms={minute} .*taken=None", text):
                    break
                await asyncio.sleep(0.005)
            if cid is None:
                skipped += 1
                continue
            order = await client.fetch_order_by_client_id(*cid)
            assert order is not None
            latencies.append(order.update_time_ms - offset_ms - t0)
            for p in await client.position_risk():  # free the symbol for the next minute
                if p.amount != 0:
                    side = "SELL" if p.amount > 0 else "BUY"
                    await client.new_order(
                        p.symbol,
                        side,
                        "MARKET",
                        abs(p.amount),
                        f"bench-close-{minute // 60_000}-{p.symbol}",
                        is_reduce_only=True,
                    )
            await asyncio.sleep(CHECK_S + 0.3)  # the trader's position check sees it closed
    return latencies, publish_ms, skipped, error_ms


def training_seconds() -> tuple[float, float, int]:
    """Return (dataset build s, training s, samples) for TRAIN_SAMPLES real samples."""
    started = time.perf_counter()
    data = {s: v[:6000] for s, v in load_kline_csvs(DATA_DIR, ALL_SYMBOLS).items()}
    ds = build_dataset(data)
    built = time.perf_counter() - started
    rows = np.sort(np.random.default_rng(7).choice(len(ds), TRAIN_SAMPLES, replace=False))
    ds = ds.subset(rows.astype(np.intp))
    started = time.perf_counter()
    train_model(ds, TrainParams(nthread=2))
    return built, time.perf_counter() - started, len(ds)


def percentiles(label: str, values: list[float]) -> str:
    if not values:
        return f"{label}: no samples"
    a = np.asarray(values)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return f"{label}: n={len(a)} p50={p50:.2f} p90={p90:.2f} p99={p99:.2f} max={a.max():.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--symbols", type=int, default=SYMBOLS)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs) at the end")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="slt-bench-trader-"))
    os.chmod(base, 0o755)
    names = synthetic_names(args.symbols)
    load_before = os.getloadavg()
    started = time.perf_counter()
    trader: FeedProcess | None = None
    px: PaperExchangeProcess | None = None
    feed: FakeFeed | None = None
    try:
        with redis_server(base) as redis, postgres_server(base) as pg:
            px = start_paper_exchange(
                base / "paper", overlay={"symbols": ALL_SYMBOLS, **PAPER_LIMITS}
            )
            run_dir = base / "trader"
            run_dir.mkdir()
            overlay = feed_overlay(px, redis.url, run_dir)
            overlay["exchange"]["weight_limit_1m"] = UNLIMITED
            del overlay["streams"]
            overlay["feed"] = {"symbols": names}
            overlay["postgres"] = {"dsn": pg.dsn}
            overlay["trader"] = {
                "max_open_positions": 1,
                "position_check_interval_s": CHECK_S,
                "virtual_min_confidence": 1.0,
                "cycle_wait_s": 2.0,
            }
            config = base / "trader.toml"
            write_overlay(config, overlay)
            trader = FeedProcess(config, base / "trader.log", run_dir, {}, module="procs.trader")
            feed = FakeFeed(trader.instance, names, histories(names, WINDOW_BARS + args.samples))
            trader.start()
            eventually(
                lambda: (
                    "model_swapped" in trader.log_text()  # type: ignore[union-attr]
                    and "trader_started" in trader.log_text()
                ),
                180,
                0.2,
            )  # type: ignore[union-attr]
            time.sleep(1.0)  # the trader's subscription is up
            latencies, publish_ms, skipped, error_ms = asyncio.run(
                run_samples(px, trader, config, feed, args.samples)
            )
            score_ms = [
                float(m) for m in re.findall(r" decision .*score_ms=([\d.]+)", trader.log_text())
            ]
            errors = len(re.findall(r" (ERROR|CRITICAL) ", trader.log_text()))
    finally:
        if trader is not None:
            trader.stop()
            unlink_segments(trader.instance)
        if feed is not None:
            feed.close()
        if px is not None:
            px.stop()
        if args.keep:
            print(f"bench: logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    built_s, train_s, train_n = training_seconds()
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()
    print("bench_trader: the trader (python -m procs.trader) against the paper exchange")
    print(
        f"cores={os.cpu_count()} elapsed_s={elapsed:.1f} load_1m_before={load_before[0]:.2f} "
        f"load_1m_after={load_after[0]:.2f} trader_errors={errors}"
    )
    print(
        f"1 closed klines of {len(names)} symbols -> entry at the exchange (updateTime, clock "
        f"offset error <= {error_ms:.2f} ms + 1 ms resolution); minutes without an entry "
        f"(no listed candidate above 0.5): {skipped}"
    )
    print("  " + percentiles("kline_to_order_at_exchange_ms", latencies))
    print("  " + percentiles("bench_append_and_publish_ms (the feed's part, played)", publish_ms))
    print("  " + percentiles("trader_score_ms (first bus message -> ranked)", score_ms))
    p99 = float(np.percentile(latencies, 99)) if latencies else float("nan")
    verdict = "met" if p99 < TARGET_P99_MS else "NOT met"
    print(f"  target p99 < {TARGET_P99_MS:.0f} ms: {verdict}")
    print(
        f"2 training: {train_n} real samples, {len(fe.FEATURE_NAMES) + 1} inputs, nthread=2: "
        f"train_s={train_s:.2f} (dataset build from 6 x 6000 bars: {built_s:.2f} s)"
    )
    print(f"run at {datetime.now().isoformat(timespec='seconds')}")


if __name__ == "__main__":
    main()
