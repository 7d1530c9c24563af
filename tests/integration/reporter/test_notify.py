"""The Notifier against local Telegram and Discord stand-ins: real aiohttp servers on free ports
that record each request (method, path, JSON body, arrival time) and answer from a script."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import numpy
import pytest
from aiohttp import web

from procs.reporter.notify import (
    Notifier,
    alert_text,
    retry_after_s,
    trade_closed_text,
    trade_opened_text,
)
from shared.config.reporter import ReporterConfig
from shared.log import EventLogger
from shared.schemas.guard import Alert
from shared.schemas.records import TradeRecord
from tests.services import free_port

TOKEN = "123456789:SECRETbottokenAAAA"
CHAT_ID = "-100777"
WEBHOOK_PATH = "/api/webhooks/1/tok"
TELEGRAM_PATH = f"/bot{TOKEN}/sendMessage"
LOGGER = "slt.reporter"


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-able, None: no body
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    body: Any
    at_s: float  # time.monotonic() on arrival


@dataclass
class StandIn:
    """A local HTTP server that records every request and answers from `script`, then `default`."""

    default: Reply
    script: list[Reply] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(Received(request.method, request.path, body, time.monotonic()))
        reply = self.script.pop(0) if self.script else self.default
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.body is None:
            return web.Response(status=reply.status, headers=reply.headers)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def stand_in(default: Reply, script: list[Reply] | None = None) -> AsyncIterator[StandIn]:
    server = StandIn(default=default, script=list(script or []), port=free_port())
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    try:
        yield server
    finally:
        await runner.cleanup()


def telegram_ok() -> Reply:
    return Reply(200, {"ok": True, "result": {"message_id": 1}})


def discord_ok() -> Reply:
    return Reply(204)


def config(
    telegram: StandIn | str | None, discord: StandIn | str | None, **overrides: Any
) -> ReporterConfig:
    def base(target: StandIn | str) -> str:
        return target.url if isinstance(target, StandIn) else target

    cfg = ReporterConfig(notify_min_interval_s=0.05, notify_timeout_s=2.0, notify_max_attempts=3)
    if telegram is not None:
        cfg = replace(
            cfg, telegram_api_url=base(telegram), telegram_chat_id=CHAT_ID, telegram_bot_token=TOKEN
        )
    if discord is not None:
        cfg = replace(cfg, discord_webhook_url=base(discord) + WEBHOOK_PATH)
    return replace(cfg, **overrides)


def notifier(cfg: ReporterConfig) -> Notifier:
    return Notifier(cfg, EventLogger("reporter"), rng=numpy.random.default_rng(20261123))


@contextlib.asynccontextmanager
async def running(n: Notifier) -> AsyncIterator[Notifier]:
    async with n:
        task = asyncio.create_task(n.run())
        try:
            yield n
        finally:
            task.cancel()
            await task  # run() returns on cancellation


async def until(predicate: Callable[[], object], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.01)


def events(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f" {event} " in r.getMessage() + " "]


def assert_no_secret(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    # Everything logged but the stand-ins' own access logs (they are the server: they see paths).
    client_side = [r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp.")]
    captured = capsys.readouterr()
    text = "\n".join(client_side) + captured.out + captured.err
    for secret in (TOKEN, "SECRETbottoken", WEBHOOK_PATH, TELEGRAM_PATH):
        assert secret not in text


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def test_messages_are_delivered_in_order_on_both_channels_spaced_by_the_min_interval(
    logs: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> tuple[StandIn, StandIn, dict[str, int]]:
        async with stand_in(telegram_ok()) as tg, stand_in(discord_ok()) as dc:
            async with running(notifier(config(tg, dc, notify_min_interval_s=0.2))) as n:
                for i in range(4):
                    n.notify("test", f"message {i}")
                await until(lambda: n.stats["telegram_sent"] + n.stats["discord_sent"] == 8, 5.0)
                return tg, dc, dict(n.stats)

    tg, dc, stats = asyncio.run(scenario())
    assert [(r.method, r.path) for r in tg.received] == [("POST", TELEGRAM_PATH)] * 4
    assert [r.body for r in tg.received] == [
        {"chat_id": CHAT_ID, "text": f"message {i}", "disable_web_page_preview": True}
        for i in range(4)
    ]
    assert [(r.method, r.path) for r in dc.received] == [("POST", WEBHOOK_PATH)] * 4
    assert [r.body["content"] for r in dc.received] == [f"message {i}" for i in range(4)]
    assert dc.received[0].body["allowed_mentions"] == {"parse": []}
    for server in (tg, dc):
        arrivals = [r.at_s for r in server.received]
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        # Spacing is measured from each send's start; an arrival also includes the connection
        # set-up (first send) and event-loop jitter, hence the slack of a server-side view.
        assert min(gaps) >= 0.15, gaps
        assert arrivals[-1] - arrivals[0] >= 3 * 0.2 - 0.05, gaps
    assert stats == {
        "skipped": 0,
        "telegram_sent": 4,
        "telegram_dropped": 0,
        "telegram_failed": 0,
        "telegram_rate_limited": 0,
        "discord_sent": 4,
        "discord_dropped": 0,
        "discord_failed": 0,
        "discord_rate_limited": 0,
    }
    assert_no_secret(logs, capsys)


def test_telegram_429_waits_retry_after_then_resends_the_same_message_once(
    logs: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    limited = Reply(
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        },
    )

    async def scenario() -> tuple[StandIn, dict[str, int]]:
        async with stand_in(telegram_ok(), [limited]) as tg:
            async with running(notifier(config(tg, None))) as n:
                n.notify("test", "hello")
                await until(lambda: n.stats["telegram_sent"] == 1, 5.0)
                await asyncio.sleep(0.2)  # nothing more arrives
                return tg, dict(n.stats)

    tg, stats = asyncio.run(scenario())
    assert [r.body["text"] for r in tg.received] == ["hello", "hello"]
    assert tg.received[1].at_s - tg.received[0].at_s >= 1.0
    assert stats["telegram_rate_limited"] == 1 and stats["telegram_failed"] == 0
    (warning,) = events(logs, "notification_rate_limited")
    assert "channel=telegram" in warning and "status=429" in warning
    assert_no_secret(logs, capsys)


@pytest.mark.parametrize(
    "limited",
    [
        Reply(429, {"message": "You are being rate limited.", "retry_after": 0.5, "global": False}),
        Reply(429, None, headers={"Retry-After": "0.5"}),
    ],
    ids=["body", "header"],
)
def test_discord_429_waits_retry_after_then_resends_the_same_message_once(
    limited: Reply, logs: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> tuple[StandIn, dict[str, int]]:
        async with stand_in(discord_ok(), [limited]) as dc:
            async with running(notifier(config(None, dc))) as n:
                n.notify("test", "hello")
                await until(lambda: n.stats["discord_sent"] == 1, 5.0)
                await asyncio.sleep(0.2)
                return dc, dict(n.stats)

    dc, stats = asyncio.run(scenario())
    assert [r.body["content"] for r in dc.received] == ["hello", "hello"]
    assert 0.5 <= dc.received[1].at_s - dc.received[0].at_s < 1.5
    assert stats["discord_rate_limited"] == 1 and stats["discord_sent"] == 1
    assert_no_secret(logs, capsys)


def test_endless_429s_drop_the_message_after_max_attempts_and_the_next_one_goes_out(
    logs: pytest.LogCaptureFixture,
) -> None:
    limited = Reply(429, {"retry_after": 0.05})

    async def scenario() -> tuple[StandIn, dict[str, int]]:
        async with stand_in(discord_ok(), [limited] * 3) as dc:
            async with running(notifier(config(None, dc))) as n:
                n.notify("test", "first")
                n.notify("test", "second")
                await until(lambda: n.stats["discord_sent"] == 1, 5.0)
                return dc, dict(n.stats)

    dc, stats = asyncio.run(scenario())
    assert [r.body["content"] for r in dc.received] == ["first"] * 3 + ["second"]
    assert stats["discord_rate_limited"] == 3 and stats["discord_failed"] == 1
    (failed,) = events(logs, "notification_failed")
    assert "channel=discord" in failed and "reason=rate_limited" in failed


def test_server_errors_and_timeouts_are_retried_with_back_off_then_delivered(
    logs: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    script = [Reply(502, {"ok": False}), Reply(200, {"ok": True}, delay_s=1.0)]

    async def scenario() -> tuple[StandIn, dict[str, int]]:
        async with stand_in(telegram_ok(), script) as tg:
            cfg = config(tg, None, notify_timeout_s=0.4, notify_max_attempts=4)
            async with running(notifier(cfg)) as n:
                n.notify("test", "hello")
                await until(lambda: n.stats["telegram_sent"] == 1, 8.0)
                return tg, dict(n.stats)

    tg, stats = asyncio.run(scenario())
    assert [r.body["text"] for r in tg.received] == ["hello"] * 3
    assert stats["telegram_failed"] == 0 and stats["telegram_rate_limited"] == 0
    retries = events(logs, "notification_retrying")
    assert len(retries) == 2
    assert "status=502" in retries[0] and "error=" in retries[1]  # the timeout, by class name
    assert_no_secret(logs, capsys)


def test_a_4xx_rejection_drops_the_message_without_retrying(
    logs: pytest.LogCaptureFixture,
) -> None:
    rejected = Reply(
        400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
    )

    async def scenario() -> tuple[StandIn, dict[str, int]]:
        async with stand_in(telegram_ok(), [rejected]) as tg:
            async with running(notifier(config(tg, None))) as n:
                n.notify("test", "first")
                n.notify("test", "second")
                await until(lambda: n.stats["telegram_sent"] == 1, 5.0)
                return tg, dict(n.stats)

    tg, stats = asyncio.run(scenario())
    assert [r.body["text"] for r in tg.received] == ["first", "second"]
    assert stats["telegram_failed"] == 1
    (failed,) = events(logs, "notification_failed")
    assert "reason=rejected" in failed and "status=400" in failed


def test_with_the_servers_down_notify_returns_at_once_and_messages_are_dropped_after_attempts(
    logs: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused

    async def scenario() -> tuple[float, dict[str, int]]:
        cfg = config(down, down, notify_queue_max=3, notify_max_attempts=2)
        async with running(notifier(cfg)) as n:
            texts = [f"message {i}" for i in range(1000)]
            rounds_s = []
            for _ in range(3):  # the fastest of three rounds: the machine may be busy
                started = time.perf_counter()
                for text in texts:
                    n.notify("test", text)
                rounds_s.append(time.perf_counter() - started)
            elapsed_s = min(rounds_s)
            await until(lambda: n.stats["telegram_failed"] + n.stats["discord_failed"] >= 6, 8.0)
            return elapsed_s, dict(n.stats)

    elapsed_s, stats = asyncio.run(scenario())
    assert elapsed_s < 0.005
    for channel in ("telegram", "discord"):
        assert stats[f"{channel}_dropped"] == 2997  # no await ran: the last three are queued
        assert stats[f"{channel}_failed"] == 3
        assert stats[f"{channel}_sent"] == 0
    failed = events(logs, "notification_failed")
    assert len(failed) == 6
    assert all("reason=attempts_exhausted" in f and "attempts=2" in f for f in failed)
    assert all("error=ClientConnectorError" in f for f in failed)
    assert_no_secret(logs, capsys)


def test_a_full_queue_drops_the_oldest_and_warns_once_with_the_suppressed_count(
    logs: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> tuple[StandIn, StandIn, dict[str, int]]:
        async with stand_in(telegram_ok()) as tg, stand_in(discord_ok()) as dc:
            n = notifier(config(tg, dc, notify_queue_max=3))
            for i in range(6):  # before run(): nothing is taken from the queues
                n.notify("test", f"message {i}")
            async with running(n):
                await until(lambda: n.stats["telegram_sent"] + n.stats["discord_sent"] == 6, 5.0)
                return tg, dc, dict(n.stats)

    tg, dc, stats = asyncio.run(scenario())
    expected = ["message 3", "message 4", "message 5"]
    assert [r.body["text"] for r in tg.received] == expected
    assert [r.body["content"] for r in dc.received] == expected
    assert stats["telegram_dropped"] == 3 and stats["discord_dropped"] == 3
    dropped = events(logs, "notification_dropped")
    assert len(dropped) == 2  # one per channel; the later drops are rate-limited
    assert all("reason=queue_full" in d and "suppressed=0" in d for d in dropped)


def test_with_no_channel_configured_notify_is_a_counted_no_op() -> None:
    async def scenario() -> dict[str, int]:
        async with running(notifier(ReporterConfig())) as n:
            assert n.channels == ()
            n.notify("test", "nobody hears this")
            await asyncio.sleep(0.05)
            return dict(n.stats)

    assert asyncio.run(scenario()) == {"skipped": 1}


def test_long_texts_are_cut_to_each_channel_limit_with_an_ellipsis() -> None:
    async def scenario() -> tuple[StandIn, StandIn]:
        async with stand_in(telegram_ok()) as tg, stand_in(discord_ok()) as dc:
            async with running(notifier(config(tg, dc))) as n:
                n.notify("test", "x" * 5000)
                n.notify("test", "short")
                await until(lambda: len(tg.received) == 2 and len(dc.received) == 2, 5.0)
                return tg, dc

    tg, dc = asyncio.run(scenario())
    long_telegram, long_discord = tg.received[0].body["text"], dc.received[0].body["content"]
    assert len(long_telegram) == 4096 and long_telegram.endswith("x…")
    assert len(long_discord) == 2000 and long_discord.endswith("x…")
    assert tg.received[1].body["text"] == dc.received[1].body["content"] == "short"


def trade(**overrides: Any) -> TradeRecord:
    fields: dict[str, Any] = {
        "trade_id": "sig-8812",
        "is_virtual": False,
        "symbol": "BTCUSDT",
        "side": "SELL",
        "quantity": Decimal("0.004"),
        "entry_price": Decimal("97012.5"),
        "entry_ms": 1_767_225_600_000,
        "confidence": 0.634,
        "model_version": 3,
        "feature_schema": "v1",
        "features": (0.1, 0.2),
    }
    fields.update(overrides)
    return TradeRecord(**fields)


def test_trade_and_alert_texts_carry_symbol_side_quantity_prices_pnl_and_reason() -> None:
    opened = trade_opened_text(trade())
    closed = trade_closed_text(
        trade(
            exit_price=Decimal("96500.0"),
            exit_ms=1_767_225_600_000 + 5_400_000,
            exit_reason="take_profit",
            gross_pnl_usdt=Decimal("2.05"),
            fees_usdt=Decimal("0.1553"),
            funding_usdt=Decimal("-0.01"),
            net_pnl_usdt=Decimal("1.8847"),
            is_win=True,
        )
    )
    alert = alert_text(
        Alert(
            kind="kill_switch_drawdown",
            source="guard",
            detail="drawdown 12.1% exceeds 10%",
            ts_ms=1_767_225_600_000,
            symbol="BTCUSDT",
        )
    )
    assert opened == (
        "OPENED BTCUSDT SHORT qty 0.004 at 97012.5\n"
        "trade sig-8812 at 2026-01-01 00:00:00 UTC, confidence 0.63, model v3"
    )
    assert closed == (
        "CLOSED BTCUSDT SHORT qty 0.004 entry 97012.5 exit 96500.0 reason take_profit\n"
        "net PnL +1.88 USDT (win) (gross +2.05, fees +0.16, funding -0.01), held 1h30m"
    )
    assert alert == (
        "ALERT kill_switch_drawdown BTCUSDT from guard at 2026-01-01 00:00:00 UTC\n"
        "drawdown 12.1% exceeds 10%"
    )
    assert trade_opened_text(trade(is_virtual=True)).startswith("OPENED (virtual) BTCUSDT")


@pytest.mark.parametrize(
    ("body", "header", "expected_s"),
    [
        (b'{"ok":false,"error_code":429,"parameters":{"retry_after":7}}', None, 7.0),
        (b'{"message":"You are being rate limited.","retry_after":1.25,"global":false}', "2", 1.25),
        (b"", "3.5", 3.5),
        (b"<html>busy</html>", None, 1.0),
        (b'{"retry_after":"soon"}', None, 1.0),
        (b'{"retry_after":NaN}', None, 1.0),
        (b'{"retry_after":1e12}', None, 600.0),
        (b'{"retry_after":-5}', None, 0.0),
    ],
)
def test_retry_after_reads_telegram_and_discord_replies_and_clamps_hostile_values(
    body: bytes, header: str | None, expected_s: float
) -> None:
    assert retry_after_s(body, header) == expected_s
