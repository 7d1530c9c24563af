"""Kline stream semantics at high simulated speed: exactly one `x:true` per candle, in order, equal
to the REST kline of that candle (BINANCE-API.md §7.3, §11 item 11)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.integration.paper.ws_harness import (
    Exchange,
    collect,
    collect_until,
    run,
    running_exchange,
)


def as_rest_row(k: dict[str, Any]) -> list[Any]:
    """The REST /fapi/v1/klines element a closed stream kline must equal."""
    return [
        k["t"],
        k["o"],
        k["h"],
        k["l"],
        k["c"],
        k["v"],
        k["T"],
        k["q"],
        k["n"],
        k["V"],
        k["Q"],
        "0",
    ]


async def rest_klines(ex: Exchange, interval: str, start_ms: int, limit: int) -> list[list[Any]]:
    reply = await ex.rest.public(
        "/fapi/v1/klines", symbol="BTCUSDT", interval=interval, startTime=start_ms, limit=limit
    )
    assert reply.status == 200, reply.text
    rows: list[list[Any]] = reply.body
    return rows


def check_closed_candles(klines: list[dict[str, Any]], interval_ms: int) -> list[dict[str, Any]]:
    """Assert one x:true per candle, consecutive, and nothing about a candle after its x:true."""
    closed = [k for k in klines if k["x"]]
    opens = [k["t"] for k in closed]
    assert len(opens) == len(set(opens)), f"a candle closed twice: {opens}"
    assert opens == list(range(opens[0], opens[0] + interval_ms * len(opens), interval_ms))
    final_seen: set[int] = set()
    for k in klines:
        assert k["t"] not in final_seen, f"update of candle {k['t']} after its x:true"
        assert k["T"] == k["t"] + interval_ms - 1
        if k["x"]:
            final_seen.add(k["t"])
    return closed


@pytest.mark.parametrize(
    ("speed", "duration_s", "min_closed"),
    [(60.0, 3.3, 2), (1200.0, 1.5, 12)],  # 1200: 5 candles close between two pushes
)
def test_each_candle_closes_exactly_once_and_equals_the_rest_kline(
    tmp_path: Path, speed: float, duration_s: float, min_closed: int
) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path, speed=speed) as ex:
            streams = "btcusdt@kline_1m/btcusdt_perpetual@continuousKline_1m"
            async with connect(f"{ex.ws_url}/stream?streams={streams}") as ws:
                messages = await collect(ws, duration_s)
            plain = [m["data"]["k"] for m in messages if m["stream"] == "btcusdt@kline_1m"]
            continuous = [m["data"]["k"] for m in messages if m["data"]["e"] == "continuous_kline"]
            closed = check_closed_candles(plain, 60_000)
            assert len(closed) >= min_closed
            pushes = Counter(m["data"]["E"] for m in messages if m["data"]["k"]["x"])
            assert max(pushes.values()) >= (6 if speed >= 1200 else 2)  # two streams per push
            assert [k["t"] for k in check_closed_candles(continuous, 60_000)][:2] == [
                k["t"] for k in closed
            ][:2]
            rows = await rest_klines(ex, "1m", closed[0]["t"], len(closed))
            assert [as_rest_row(k) for k in closed] == rows

    run(body())


def test_five_minute_candles_close_once_at_high_speed(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(tmp_path, speed=3000.0) as ex:
            async with connect(ex.ws_url + "/market/ws/btcusdt@kline_5m") as ws:
                # Ten closed 5m candles take 0.2 s at speed 3000; wait for them, not for a time.
                messages = await collect_until(
                    ws, lambda ms: sum(1 for m in ms if m["k"]["x"]) >= 11, 30.0
                )
            closed = check_closed_candles([m["k"] for m in messages], 300_000)
            assert len(closed) >= 10
            rows = await rest_klines(ex, "5m", closed[0]["t"], len(closed))
            assert [as_rest_row(k) for k in closed] == rows

    run(body())
