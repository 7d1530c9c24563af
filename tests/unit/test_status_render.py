"""The status page's renderings (HTML escaping, the UNPROTECTED badge, Prometheus text format) and
the token rule of its HTTP routes, served by a local aiohttp test server."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TypeVar

import msgspec
from aiohttp.test_utils import TestClient, TestServer

from procs.reporter.status.collect import (
    OrderStatus,
    PositionStatus,
    ProgramStatus,
    StatusSnapshot,
    StopOrder,
    render_metrics,
    render_status_html,
    render_status_text,
)
from procs.reporter.status.web import make_app
from shared.config.reporter import ReporterConfig

T = TypeVar("T")
TOKEN = "s3cret-status-token"
SAMPLE_LINE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"\})? '
    r"(-?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?|NaN|[+-]Inf)$"
)


def program(name: str, state: str) -> ProgramStatus:
    running = state == "RUNNING"
    return ProgramStatus(
        name=name,
        state=state,
        pid=4242 if running else 0,
        uptime_s=3725.0 if running else 0.0,
        heartbeat_age_s=0.4,
        loop_lag_ms=1.5,
        restarts=0 if running else 3,
    )


def position(symbol: str, amount: str, stop_id: str | None) -> PositionStatus:
    stops = [StopOrder(client_id=stop_id, trigger_price=Decimal("95000"))] if stop_id else []
    return PositionStatus(
        symbol=symbol,
        amount=Decimal(amount),
        entry_price=Decimal("100000.5"),
        mark_price=Decimal("100100"),
        unrealized_pnl_usdt=Decimal("0.3"),
        liquidation_price=Decimal("80000"),
        liquidation_distance_pct=20.08,
        stops=stops,
        is_protected=bool(stops),
    )


def sample_snapshot(**changes: object) -> StatusSnapshot:
    """Return feed and guard RUNNING, trader BACKOFF, BTCUSDT protected, ETHUSDT unprotected."""
    s = StatusSnapshot(
        ts_ms=1_763_900_000_000,
        mode="paper",
        instance="abc123",
        programs=[
            program("feed", "RUNNING"),
            program("guard", "RUNNING"),
            program("trader", "BACKOFF"),
        ],
        positions=[
            position("BTCUSDT", "0.003", "slt-s1-stop-0"),
            position("ETHUSDT", "-0.05", None),
        ],
        open_orders=[
            OrderStatus(
                symbol="BTCUSDT",
                client_id="slt-s1-stop-0",
                side="SELL",
                type="STOP_MARKET",
                price=Decimal("95000"),
                quantity=Decimal(0),
            )
        ],
        equity_usdt=Decimal("1000.25"),
        wallet_usdt=Decimal("999.95"),
        feed={"kline_age_s": 12.5, "topics": 4},
        model_version=3,
        model_auc=0.612,
        halted=False,
        halt_reason="",
        errors=[],
    )
    return msgspec.structs.replace(s, **changes)


def test_render_status_html_escapes_every_value() -> None:
    evil = '<script>alert("x")</script>'
    s = sample_snapshot(
        programs=[program(evil, "RUNNING")],
        errors=[f"exchange: {evil}"],
        halted=True,
        halt_reason=evil,
        instance="<b>i</b>",
    )
    page = render_status_html(s, 5)
    assert "<script" not in page and "<b>i</b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert page.count("&lt;script&gt;") == 3  # program name, error, halt reason
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "HALTED" in page


def test_render_status_html_marks_position_without_stop_unprotected() -> None:
    page = render_status_html(sample_snapshot(), 5)
    table = page.split("<h2>Positions</h2>")[1].split("<h2>")[0]
    rows = {m[1]: m[0] for m in re.finditer(r"<tr><td>([A-Z]+USDT)</td>.*?</tr>", table)}
    assert set(rows) == {"BTCUSDT", "ETHUSDT"}
    assert "UNPROTECTED" in rows["ETHUSDT"] and "badge bad" in rows["ETHUSDT"]
    assert "UNPROTECTED" not in rows["BTCUSDT"]
    assert "slt-s1-stop-0 @ 95000" in rows["BTCUSDT"]
    assert "20.1 %" in rows["BTCUSDT"]
    assert '<span class="badge ok">RUNNING</span>' in page
    assert '<span class="badge bad">BACKOFF</span>' in page
    assert "#1a7f37" in page and "#cf222e" in page


def test_render_status_text_lists_programs_positions_and_errors() -> None:
    text = render_status_text(sample_snapshot(errors=["postgres: not connected."]))
    assert re.search(r"trader\s+BACKOFF", text)
    assert re.search(r"ETHUSDT\s+SHORT\s+-0.05.*UNPROTECTED", text)
    assert "  - postgres: not connected." in text
    assert "equity 1000.25 USDT" in text


def test_render_metrics_is_prometheus_text_format() -> None:
    s = sample_snapshot(programs=[program('we"ird\\name\n', "RUNNING"), program("trader", "FATAL")])
    text = render_metrics(s)
    assert text.endswith("\n")
    lines = text.splitlines()
    for line in lines:
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) slt_[a-z_]+ \S", line), line
        else:
            assert SAMPLE_LINE.match(line), line
    samples = {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in lines if line[0] != "#"}
    assert samples['slt_program_up{program="we\\"ird\\\\name\\n"}'] == "1"
    assert samples['slt_program_up{program="trader"}'] == "0"
    assert samples['slt_position_protected{symbol="BTCUSDT"}'] == "1"
    assert samples['slt_position_protected{symbol="ETHUSDT"}'] == "0"
    assert samples['slt_position_amount{symbol="ETHUSDT"}'] == "-0.05"
    assert samples["slt_equity_usdt"] == "1000.25"
    assert samples["slt_halted"] == "0"
    assert samples["slt_model_version"] == "3"
    assert samples["slt_status_errors"] == "0"
    types = [line for line in lines if line.startswith("# TYPE")]
    assert len(types) == len({t.split()[2] for t in types})  # each family declared once


def test_render_metrics_leaves_out_unknown_values() -> None:
    text = render_metrics(sample_snapshot(equity_usdt=None, model_version=None))
    assert "\nslt_equity_usdt " not in text and "\nslt_model_version " not in text
    assert "# TYPE slt_equity_usdt gauge" in text


def serve(token: str, scenario: Callable[[TestClient], Awaitable[T]]) -> T:
    async def snapshot() -> StatusSnapshot:
        return sample_snapshot()

    async def main() -> T:
        cfg = dataclasses.replace(ReporterConfig(), status_token=token)
        async with TestClient(TestServer(make_app(snapshot, cfg))) as client:
            return await scenario(client)

    return asyncio.run(main())


def test_make_app_with_token_refuses_requests_without_the_token() -> None:
    async def scenario(c: TestClient) -> list[tuple[int, object]]:
        out = []
        for path, headers in [
            ("/", {}),
            ("/api/status", {}),
            ("/metrics", {}),
            ("/", {"Authorization": "Bearer wrong"}),
            ("/?token=wrong", {}),
            ("/", {"Authorization": TOKEN}),
        ]:
            async with c.get(path, headers=headers) as reply:
                body = await reply.json()
                assert TOKEN not in str(body)
                out.append((reply.status, sorted(body)))
        return out

    assert serve(TOKEN, scenario) == [(401, ["error"])] * 6


def test_make_app_with_token_answers_with_bearer_header_or_query() -> None:
    async def scenario(c: TestClient) -> None:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with c.get("/", headers=auth) as reply:
            assert reply.status == 200 and reply.content_type == "text/html"
            assert "UNPROTECTED" in await reply.text()
        async with c.get("/api/status", params={"token": TOKEN}) as reply:
            assert reply.status == 200
            body = await reply.json()
            assert [p["name"] for p in body["programs"]] == ["feed", "guard", "trader"]
            assert [p["is_protected"] for p in body["positions"]] == [True, False]
        async with c.get("/metrics", headers=auth) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert 'slt_program_up{program="trader"} 0' in await reply.text()

    serve(TOKEN, scenario)


def test_make_app_without_token_answers_everyone() -> None:
    async def scenario(c: TestClient) -> int:
        async with c.get("/metrics") as reply:
            return reply.status

    assert serve("", scenario) == 200


def test_make_app_answers_503_when_the_snapshot_fails() -> None:
    async def broken() -> StatusSnapshot:
        raise RuntimeError(f"cannot reach {TOKEN}")

    async def main() -> tuple[int, dict[str, str]]:
        app = make_app(broken, ReporterConfig())
        async with TestClient(TestServer(app)) as client, client.get("/") as reply:
            return reply.status, await reply.json()

    status, body = asyncio.run(main())
    assert status == 503 and body == {"error": "status could not be collected (RuntimeError)"}
