"""`PaperExchange` in process, with the real data files and an injected wall clock: the step
catch-up, its cap, and the state file round trip (no sockets)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from procs.paper_exchange.server import PaperExchange, StateError, build_app, open_paper_exchange
from shared.config import PaperExchangeConfig, load_config

T0_MS = 1_795_400_000_000


class FakeWall:
    """The wall clock, moved by hand."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def config(tmp_path: Path, **overrides: object) -> PaperExchangeConfig:
    values = {"state_path": str(tmp_path / "state.json"), "symbols": ["BTCUSDT", "ETHUSDT"]}
    overlay = {"paper_exchange": {**values, **overrides}}
    return load_config("paper", overlay=overlay, env={}).paper_exchange


def open_at(cfg: PaperExchangeConfig, wall: FakeWall) -> PaperExchange:
    px, _is_new = open_paper_exchange(cfg, wall)
    return px


def test_advance_ticks_every_step_up_to_now_and_can_be_sliced(tmp_path: Path) -> None:
    wall = FakeWall(T0_MS + 100)
    px = open_at(config(tmp_path), wall)
    assert px.last_step_ms == T0_MS
    wall.now_ms += 1_000
    assert px.advance(px.now_ms(), max_steps=2) is False
    assert px.last_step_ms == T0_MS + 500
    assert px.advance(px.now_ms()) is True
    assert px.last_step_ms == T0_MS + 1_000


def test_catch_up_is_capped_at_max_catch_up(tmp_path: Path) -> None:
    wall = FakeWall(T0_MS)
    px = open_at(config(tmp_path, max_catch_up_s=60.0), wall)
    wall.now_ms += 3_600_000
    assert px.advance(px.now_ms(), max_steps=240) is True  # only the last minute is ticked
    assert px.last_step_ms == T0_MS + 3_600_000


def test_state_round_trip_keeps_orders_epoch_and_running_clock(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    wall = FakeWall(T0_MS)
    px = open_at(cfg, wall)
    price = px.market.last_price("BTCUSDT", px.now_ms()) * 98 // 100
    placed = px.engine.post_order(
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.002",
            "price": str(price),
            "newClientOrderId": "round-trip",
        },
        px.now_ms(),
    )
    px.save()
    saved = json.loads(px.state_path.read_text())
    assert saved["version"] == 1 and saved["last_step_ms"] == T0_MS

    later = FakeWall(T0_MS + 10_000)  # the process was down for 10 s
    restored = open_at(cfg, later)
    assert restored.epoch_ms == px.epoch_ms
    assert restored.now_ms() == T0_MS + 10_000
    assert restored.last_step_ms == T0_MS
    orders = restored.engine.get_open_orders({"symbol": "BTCUSDT"}, restored.now_ms())
    assert [(o["orderId"], o["clientOrderId"]) for o in orders] == [
        (placed["orderId"], "round-trip")
    ]


def test_engine_changes_without_a_request_are_saved(tmp_path: Path) -> None:
    wall = FakeWall(T0_MS)
    px = open_at(config(tmp_path), wall)
    px.save()
    before = px.state_path.read_text()
    px.engine.post_order(
        {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"}, px.now_ms()
    )
    px.engine.drain_events()
    px.save_if_changed()
    assert px.state_path.read_text() != before


def test_unrestorable_engine_state_is_a_state_error(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    wall = FakeWall(T0_MS)
    px = open_at(cfg, wall)
    px.save()
    doc = json.loads(px.state_path.read_text())
    doc["engine"] = {"nonsense": True}
    px.state_path.write_text(json.dumps(doc))
    with pytest.raises(StateError) as e:
        open_at(cfg, wall)
    assert str(px.state_path) in str(e.value)


def test_unexpected_handler_error_is_500_1000_and_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    px = open_at(config(tmp_path), FakeWall(T0_MS))
    app = build_app(px)

    async def broken(_request: web.Request) -> web.StreamResponse:
        raise RuntimeError("engine bug")

    app.router.add_get("/fapi/v1/broken", broken)

    async def run() -> tuple[int, str, str]:
        async with TestServer(app) as server, aiohttp.ClientSession() as session:
            async with session.get(server.make_url("/fapi/v1/broken")) as reply:
                return reply.status, reply.headers["Content-Type"], await reply.text()

    with caplog.at_level(logging.INFO):
        status, content_type, text = asyncio.run(run())
    unknown = "An unknown error occured while processing the request."
    assert (status, json.loads(text)) == (500, {"code": -1000, "msg": unknown})
    assert content_type.startswith("application/json") and "Traceback" not in text
    failures = [r for r in caplog.records if "request_failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is None
    assert "engine bug" in failures[0].getMessage() and "\n" not in failures[0].getMessage()
