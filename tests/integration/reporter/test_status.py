"""The status snapshot against the real paper exchange (a protected and an unprotected position,
missing sources reported, not raised), and the page as a real browser shows it: headless Chromium
loads it from the app's port, its DOM names the programs and positions and its screenshot shows
the green RUNNING and the red UNPROTECTED badges."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import msgspec
import pytest

from procs.reporter.status.collect import StatusSnapshot, collect_status
from procs.reporter.status.web import make_app, start_status_site
from shared.cache import Cache
from shared.config import Config, load_config
from shared.exchange.rest import ExchangeClient
from shared.shm.heartbeat import HeartbeatWriter
from shared.shm.segment import unlink_segments
from shared.stack import instance_id
from shared.store.db import Database
from shared.store.halt import halt_path, halted, save_halt
from tests.integration.db.records import model_meta
from tests.integration.exchange.conftest import client_config, client_logger
from tests.integration.watchdog import conftest as watchdog_fixtures
from tests.integration.watchdog.conftest import Program, Stack
from tests.paper_exchange_fixture import PaperExchangeProcess, start_paper_exchange
from tests.services import RedisServer, eventually, free_port
from tests.unit.test_status_render import sample_snapshot

CHROMIUM = "chromium"
GREEN = (0x1A, 0x7F, 0x37)  # RUNNING badge
RED = (0xCF, 0x22, 0x2E)  # UNPROTECTED (and BACKOFF) badge
TOLERANCE = 8  # per channel
TOKEN = "browser-test-token"
start_stack = watchdog_fixtures.start_stack  # a private supervisord running stand-in programs


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaperExchangeProcess]:
    process = start_paper_exchange(tmp_path_factory.mktemp("paper"))
    yield process
    process.stop()


def status_config(px: PaperExchangeProcess, run_dir: Path) -> Config:
    cfg = load_config("paper", env={})
    return dataclasses.replace(
        cfg,
        exchange=client_config(px),
        run=dataclasses.replace(cfg.run, dir=str(run_dir)),
        reporter=dataclasses.replace(cfg.reporter, call_timeout_s=5.0),
    )


def test_collect_status_shows_protected_and_unprotected_positions_and_missing_sources(
    paper: PaperExchangeProcess, tmp_path: Path
) -> None:
    cfg = status_config(paper, tmp_path)
    instance = instance_id(tmp_path)
    save_halt(halt_path(tmp_path), halted("kill_switch_drawdown", 1_000))
    writer = HeartbeatWriter(instance, "feed")
    writer.beat(2.5)

    async def scenario() -> StatusSnapshot:
        async with ExchangeClient(cfg.exchange, logger=client_logger()) as c:
            await c.set_leverage("BTCUSDT", 20)
            await c.set_margin_type("BTCUSDT", "ISOLATED")
            await c.new_order("BTCUSDT", "BUY", "MARKET", Decimal("0.003"), "slt-st1-entry-0")
            await c.new_order("ETHUSDT", "SELL", "MARKET", Decimal("0.010"), "slt-st2-entry-0")
            (mark,) = await c.mark_prices("BTCUSDT")
            trigger = (mark.mark_price * Decimal("0.97")).quantize(Decimal("0.1"), ROUND_DOWN)
            await c.new_algo_order(
                "BTCUSDT", "SELL", "STOP_MARKET", trigger, "slt-st1-stop-0", is_close_position=True
            )
            return await collect_status(cfg, None, c, None, None)

    try:
        s = asyncio.run(scenario())
    finally:
        writer.close()
        unlink_segments(instance)
    assert (s.mode, s.instance) == ("paper", instance)
    btc, eth = s.positions
    assert (btc.symbol, btc.amount, btc.is_protected) == ("BTCUSDT", Decimal("0.003"), True)
    assert [x.client_id for x in btc.stops] == ["slt-st1-stop-0"]
    assert (eth.symbol, eth.amount, eth.is_protected, eth.stops) == (
        "ETHUSDT",
        Decimal("-0.010"),
        False,
        [],
    )
    for p in (btc, eth):
        assert p.liquidation_price > 0 and p.liquidation_distance_pct is not None
        expected = float(abs(p.mark_price - p.liquidation_price) / p.mark_price * 100)
        assert p.liquidation_distance_pct == pytest.approx(expected)
    assert 0 < btc.liquidation_distance_pct < 10  # isolated at 20x: about 5 %
    assert [(o.client_id, o.type) for o in s.open_orders] == [("slt-st1-stop-0", "STOP_MARKET")]
    assert s.equity_usdt is not None and s.equity_usdt > 0 and s.wallet_usdt is not None
    assert (s.halted, s.halt_reason) == (True, "kill_switch_drawdown")
    (feed,) = s.programs  # supervisord unknown: the heartbeat table's programs, state UNKNOWN
    assert (feed.name, feed.state, feed.loop_lag_ms, feed.restarts) == ("feed", "UNKNOWN", 2.5, 0)
    assert feed.heartbeat_age_s is not None and 0 <= feed.heartbeat_age_s < 60
    assert (s.model_version, s.model_auc) == (None, None)
    assert len(s.errors) == 2
    assert s.errors[0].startswith("supervisord: not connected")
    assert s.errors[1].startswith("postgres: not connected")


def test_collect_status_reports_an_unreachable_exchange_as_errors(tmp_path: Path) -> None:
    cfg = load_config("paper", env={})
    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    exchange = dataclasses.replace(
        cfg.exchange,
        rest_url=f"http://{url}",
        ws_url=f"ws://{url}",
        request_timeout_s=0.5,
        retry_base_s=0.01,
        retry_cap_s=0.05,
        rate_limit_max_wait_s=0.5,
    )
    cfg = dataclasses.replace(
        cfg,
        exchange=exchange,
        run=dataclasses.replace(cfg.run, dir=str(tmp_path)),
        reporter=dataclasses.replace(cfg.reporter, call_timeout_s=2.0),
    )

    async def scenario() -> StatusSnapshot:
        async with ExchangeClient(cfg.exchange, logger=client_logger()) as c:
            return await collect_status(cfg, None, c, None, None)

    s = asyncio.run(scenario())
    assert (s.positions, s.open_orders, s.equity_usdt, s.programs) == ([], [], None, [])
    assert (s.halted, s.halt_reason) == (False, "")
    assert sorted(e.split(":")[0] for e in s.errors) == [
        "exchange account",
        "exchange open orders",
        "exchange positions",
        "exchange stop orders",
        "postgres",
        "supervisord",
    ]
    assert all(cfg.exchange.api_secret not in e for e in s.errors)


def test_collect_status_joins_supervisord_heartbeats_model_and_redis(
    start_stack: Callable[[list[Program]], Stack],
    database_dsn: str,
    redis_instance: RedisServer,
) -> None:
    stack = start_stack(
        [Program("feed"), Program("guard"), Program("trader", ("--exit-now",), startretries=0)]
    )
    cfg = load_config("paper", env={})
    cfg = dataclasses.replace(
        cfg,
        run=dataclasses.replace(cfg.run, dir=str(stack.run_dir)),
        reporter=dataclasses.replace(cfg.reporter, call_timeout_s=5.0),
    )

    def settled() -> bool:
        beats = stack.beats()
        return (
            {stack.info(n).state for n in ("feed", "guard")} == {"RUNNING"}
            and stack.info("trader").state == "FATAL"
            and {"feed", "guard"} <= set(beats)
        )

    eventually(settled, 20, 0.1)

    async def scenario() -> StatusSnapshot:
        async with await Database.connect(database_dsn, 5.0) as db:
            await db.apply_migrations()
            version = await db.save_model(model_meta(auc=0.61), b"model")
            await db.promote(version, "first champion", 1_000)
            async with Cache(redis_instance.url, stack.instance, 2.0) as cache:
                return await collect_status(cfg, stack.client, None, db, cache)

    s = asyncio.run(scenario())
    assert s.instance == stack.instance
    assert [(p.name, p.state) for p in s.programs] == [
        ("feed", "RUNNING"),
        ("guard", "RUNNING"),
        ("trader", "FATAL"),
    ]
    feed, guard, trader = s.programs
    for p in (feed, guard):
        assert p.pid == stack.info(p.name).pid and p.pid > 0
        assert 0 < p.uptime_s < 60 and p.restarts == 0
        assert p.heartbeat_age_s is not None and p.heartbeat_age_s < 5
    assert (trader.pid, trader.uptime_s, trader.heartbeat_age_s) == (0, 0.0, None)
    assert "kline_age_s" in s.feed and s.feed["topics"] == 0
    assert (s.model_version, s.model_auc) == (1, 0.61)
    assert s.errors == ["exchange: not connected, so its part of the status is missing."]


# ---- the page in a real browser -----------------------------------------------------------------


def read_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """Return (width, height, rows of raw pixels, bytes per pixel) of an 8-bit RGB/RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows: list[bytes] = []
    prior = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prior[i], prior[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + predictor) & 0xFF
            else:
                assert kind == 0, f"unknown PNG filter {kind}"
        rows.append(bytes(line))
        prior = line
    return width, height, rows, bpp


def count_colour(rows: list[bytes], bpp: int, colour: tuple[int, int, int]) -> int:
    r0, g0, b0 = colour
    return sum(
        1
        for row in rows
        for i in range(0, len(row), bpp)
        if abs(row[i] - r0) <= TOLERANCE
        and abs(row[i + 1] - g0) <= TOLERANCE
        and abs(row[i + 2] - b0) <= TOLERANCE
    )


async def run_chromium(*args: str, timeout_s: float = 90.0) -> bytes:
    with tempfile.TemporaryDirectory(prefix="slt-chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--force-color-profile=srgb",
            f"--user-data-dir={profile}",
            "--window-size=1280,1000",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(timeout_s):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode == 0, err.decode(errors="replace")[-2000:]
        return out


def test_status_page_in_headless_chromium_shows_badges(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            "chromium is not installed: run `scripts/install --with-browser` (scripts/test does)"
        )
    cfg = dataclasses.replace(load_config("paper", env={}).reporter, status_token=TOKEN)
    unprotected = sample_snapshot()  # ETHUSDT has no stop
    btc = unprotected.positions[0]
    protected = sample_snapshot(positions=[btc, msgspec.structs.replace(btc, symbol="ETHUSDT")])
    snapshots = [unprotected, protected]

    async def snap() -> StatusSnapshot:
        return snapshots[0]

    async def scenario() -> str:
        port = free_port()
        runner = await start_status_site(make_app(snap, cfg), "127.0.0.1", port)
        url = f"http://127.0.0.1:{port}/?token={TOKEN}"
        try:
            dom = await run_chromium("--dump-dom", url)
            await run_chromium(f"--screenshot={tmp_path / 'unprotected.png'}", url)
            snapshots.pop(0)
            await run_chromium(f"--screenshot={tmp_path / 'protected.png'}", url)
        finally:
            await runner.cleanup()
        return dom.decode()

    dom = asyncio.run(scenario())
    assert TOKEN not in caplog.text  # the query token never reaches a log (no access log)
    for name in ("feed", "guard", "trader", "BTCUSDT", "ETHUSDT", "UNPROTECTED", "BACKOFF"):
        assert f">{name}<" in dom, f"{name} missing from the rendered DOM"
    assert dom.count(">RUNNING<") == 2
    width, height, rows, bpp = read_png((tmp_path / "unprotected.png").read_bytes())
    assert (width, height) == (1280, 1000)
    colours = {row[i : i + 3] for row in rows[::10] for i in range(0, len(row), bpp * 10)}
    assert len(colours) > 5, "the screenshot is blank"
    green, red = count_colour(rows, bpp, GREEN), count_colour(rows, bpp, RED)
    assert green >= 2000, f"only {green} pixels of the RUNNING green (two badges)"
    _, _, rows_without, _ = read_png((tmp_path / "protected.png").read_bytes())
    red_without = count_colour(rows_without, bpp, RED)  # the BACKOFF badge alone
    assert red_without >= 1000, f"only {red_without} pixels of the BACKOFF red"
    assert red - red_without >= 1000, f"the UNPROTECTED badge adds only {red - red_without} red"
