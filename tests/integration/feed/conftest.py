"""Fixtures of the feed tests: one paper exchange at --speed 60 (a 1m candle closes every real
second) shared by the package, the session's private Redis, and `start_feed`, which runs
`python -m procs.feed` as a real subprocess with an `SLT_CONFIG` overlay pointing it at both,
a run dir in tmp and shrunk intervals."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from procs.feed.main import Feed
from shared import log
from shared.bus import Publisher, bus_endpoint
from shared.cache import Cache, FeedSnapshot
from shared.config import Config, load_config
from shared.exchange.frames import StreamMessage
from shared.exchange.inbox import Inbox
from shared.exchange.streams import StreamConnection
from shared.shm.rings import KlineWriter
from shared.shm.segment import unlink_segments
from shared.stack import instance_id
from tests.paper_exchange_fixture import (
    REPO_ROOT,
    TEST_SYMBOLS,
    PaperExchangeProcess,
    start_paper_exchange,
    write_overlay,
)
from tests.services import RedisServer, eventually

SPEED = 60.0
WINDOW_BARS = 60
BACKFILL_BARS = 20
STOP_TIMEOUT_S = 10.0


@pytest.fixture(scope="package")
def fast_paper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaperExchangeProcess]:
    """One paper exchange at --speed 60 for every feed test (tests undo their faults)."""
    process = start_paper_exchange(Path(tmp_path_factory.mktemp("paper-feed")), speed=SPEED)
    yield process
    process.stop()


def feed_overlay(px: PaperExchangeProcess, redis_url: str, run_dir: Path) -> dict[str, Any]:
    """Return the feed's config overlay: the paper exchange, the Redis, shrunk intervals."""
    return {
        "exchange": {
            "rest_url": px.rest_url,
            "ws_url": px.ws_url,
            "api_key": px.api_key,
            "api_secret": px.api_secret,
            "request_timeout_s": 3.0,
            "retry_base_s": 0.05,
            "retry_cap_s": 0.5,
            "breaker_cooldown_s": 1.0,
            "budget_redis_timeout_s": 0.2,
            "budget_redis_retry_s": 1.0,
        },
        "streams": {
            "ping_interval_s": 0.5,
            "pong_timeout_s": 1.0,
            "silence_timeout_s": 2.0,
            "open_timeout_s": 3.0,
            "close_timeout_s": 0.5,
            "reconnect_base_s": 0.1,
            "reconnect_cap_s": 0.4,
            "healthy_after_s": 5.0,
            "user_call_timeout_s": 5.0,
            "bad_message_log_interval_s": 1.0,
        },
        "feed": {
            "symbols": TEST_SYMBOLS,
            "window_bars": WINDOW_BARS,
            "backfill_bars": BACKFILL_BARS,
            "heartbeat_interval_s": 0.2,
            "stats_interval_s": 1.0,
            "cache_flush_interval_s": 0.05,
            "cache_retry_s": 0.3,
            "warning_interval_s": 1.0,
        },
        "redis": {"url": redis_url, "socket_timeout_s": 0.5},
        "run": {"dir": str(run_dir)},
    }


@dataclass
class FeedProcess:
    """The feed subprocess(es) of one test: same config, same run dir, same instance."""

    config_path: Path
    log_path: Path
    run_dir: Path
    env_overrides: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    module: str = "procs.feed"  # the guard's tests run procs.guard the same way

    @property
    def instance(self) -> str:
        return instance_id(self.run_dir)

    def start(self) -> FeedProcess:
        env = dict(os.environ)
        env.update(
            {
                "SLT_CONFIG": str(self.config_path),
                "SLT_MODE": "paper",
                "PYTHONUNBUFFERED": "1",
                **self.env_overrides,
            }
        )
        env.pop("PYTHONASYNCIODEBUG", None)
        with self.log_path.open("ab") as log:
            args = [sys.executable, "-m", self.module]
            self.process = subprocess.Popen(
                args, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self, event: str) -> list[str]:
        """Return the log lines of `event` (any logger of the process: feed, exchange)."""
        return [line for line in self.log_text().splitlines() if line.split(" ")[3:4] == [event]]

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, wait, SIGKILL if still alive; return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """kill -9."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def snapshot(self, redis_url: str) -> FeedSnapshot:
        """Read the feed's Redis snapshot."""

        async def load() -> FeedSnapshot:
            async with Cache(redis_url, self.instance, 2.0) as cache:
                return await cache.load_feed_snapshot()

        return asyncio.run(load())


@pytest.fixture
def start_feed(
    fast_paper: PaperExchangeProcess, redis_instance: RedisServer, tmp_path: Path
) -> Iterator[Callable[..., FeedProcess]]:
    """Return `start(redis_url=None, env=None)`: a running feed of the test's instance (every one
    started is stopped, and the instance's shm removed, after the test)."""
    feeds: list[FeedProcess] = []

    def start(redis_url: str | None = None, env: dict[str, str] | None = None) -> FeedProcess:
        run_dir = tmp_path / "run"
        run_dir.mkdir(exist_ok=True)
        config = tmp_path / f"feed-{len(feeds)}.toml"
        write_overlay(config, feed_overlay(fast_paper, redis_url or redis_instance.url, run_dir))
        log_path = tmp_path / f"feed-{len(feeds)}.log"
        feed = FeedProcess(config, log_path, run_dir, env or {}).start()
        feeds.append(feed)
        return feed

    yield start
    for feed in feeds:
        feed.stop()
    for feed in feeds:
        unlink_segments(feed.instance)


async def sim(px: PaperExchangeProcess, path: str) -> Any:
    """POST to the paper exchange's `/_sim/...` control API; return its JSON."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(px.rest_url + path, headers={"X-MBX-APIKEY": px.api_key}) as reply,
    ):
        body = await reply.json()
        assert reply.status == 200, body
        return body


def wait_for_log(feed: FeedProcess, event: str, count: int = 1, timeout_s: float = 10.0) -> None:
    """Wait until the feed logged `event` at least `count` times (fail with the log if it dies)."""

    def logged() -> bool:
        assert feed.is_running(), feed.log_text()
        return len(feed.log_events(event)) >= count

    eventually(logged, timeout_s)


@contextlib.contextmanager
def feed_parts(
    symbols: Sequence[str], window_bars: int, prefix: str
) -> Iterator[tuple[Config, KlineWriter, Publisher, str]]:
    """What `procs.feed.main.Feed` needs, without sockets to the exchange: a paper config for
    `symbols` (no REST: holes are never backfilled), a private shm instance and a Publisher on
    a private endpoint; removed afterwards."""
    instance = prefix + uuid.uuid4().hex[:8]
    cfg = load_config("paper", env={})
    feed_cfg = dataclasses.replace(
        cfg.feed, symbols=tuple(symbols), window_bars=window_bars, disable_rest_fallback=True
    )
    cfg = dataclasses.replace(cfg, feed=feed_cfg)
    writer = KlineWriter.open(instance, symbols, window_bars)
    try:
        with Publisher(bus_endpoint(instance, "feed"), "feed") as publisher:
            yield cfg, writer, publisher, instance
    finally:
        writer.close()
        unlink_segments(instance)


@dataclasses.dataclass
class FeedPath:
    """The feed's own per-message path without sockets: a `StreamConnection` configured as
    procs.feed's StreamPool configures it (open klines dropped at the frame check) -> `Inbox`
    -> `Feed.on_market`."""

    feed: Feed
    conn: StreamConnection
    inbox: Inbox

    @classmethod
    def build(cls, cfg: Config, writer: KlineWriter, publisher: Publisher) -> FeedPath:
        feed = Feed(cfg, None, writer, publisher, log.get("feed"))  # type: ignore[arg-type]
        inbox = Inbox(cfg.streams.queue_max_messages, "drop_oldest")
        conn = StreamConnection(
            "market-0",
            lambda: "",
            (),
            cfg.streams,
            inbox,  # type: ignore[arg-type,return-value]
            drops_open_klines=True,
        )
        return cls(feed, conn, inbox)

    async def push(self, frame: bytes) -> None:
        """Hand one frame through the path (a frame the check drops stops there)."""
        message = self.conn.accept_frame(frame)
        if message is not None:
            await self.inbox.put(message)
            item = await self.inbox.get()
            assert isinstance(item, StreamMessage)
            await self.feed.on_market(item)
