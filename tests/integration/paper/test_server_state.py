"""The paper exchange as a process: state survives kill -9, a corrupt state file stops it with exit
code 2, a second instance on the same port or state file exits 1, SIGTERM exits 0, and the log
has a periodic stats line but no line per request."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal
from typing import Any

from tests.paper_exchange_fixture import BinanceTestClient, PaperExchangeProcess, Reply, call
from tests.services import eventually

Factory = Callable[..., PaperExchangeProcess]


def signed(px: PaperExchangeProcess, method: str, path: str, params: dict[str, Any]) -> Reply:
    return call(px, lambda c: c.signed(method, path, params))


def exit_code(px: PaperExchangeProcess, timeout_s: float = 20.0) -> int:
    try:
        return px.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        px.kill()
        raise AssertionError(f"paper exchange did not exit:\n{px.log_text()}") from None


def test_orders_and_positions_survive_kill_9(paper_exchange_factory: Factory) -> None:
    px = paper_exchange_factory()
    last = Decimal(
        call(px, lambda c: c.public("/fapi/v1/ticker/price", symbol="BTCUSDT")).body["price"]
    )
    price = str((last * Decimal("0.98")).quantize(Decimal("0.1"), rounding=ROUND_DOWN))
    limit = signed(
        px,
        "POST",
        "/fapi/v1/order",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.003",
            "price": price,
            "newClientOrderId": "survivor-limit",
        },
    )
    assert limit.status == 200, limit.text
    market = signed(
        px,
        "POST",
        "/fapi/v1/order",
        {"symbol": "ETHUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.020"},
    )
    assert market.status == 200, market.text

    px.kill()  # SIGKILL straight after the replies: the state was saved before they were sent
    px.restart()

    open_orders = signed(px, "GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"}).body
    assert [(o["clientOrderId"], o["price"], o["origQty"]) for o in open_orders] == [
        ("survivor-limit", limit.body["price"], "0.003")
    ]
    positions = signed(px, "GET", "/fapi/v2/positionRisk", {"symbol": "ETHUSDT"}).body
    assert [p["positionAmt"] for p in positions] == ["-0.020"]
    assert "state_loaded" in px.log_text()


def test_sigterm_exits_0_after_saving_state(paper_exchange_factory: Factory) -> None:
    px = paper_exchange_factory()
    assert px.stop() == 0
    state = json.loads(px.state_path.read_text())
    assert state["version"] == 1 and {"clock", "engine", "listen_keys"} <= set(state)
    log = px.log_text()
    assert "state_created" in log and "paper_exchange_started" in log
    assert "paper_exchange_stopped" in log


def test_corrupt_state_exits_2_with_one_line_and_keeps_the_file(
    paper_exchange_factory: Factory, tmp_path: Any
) -> None:
    state_path = tmp_path / "corrupt.json"
    state_path.write_text('{"version": 1, "clock": {"sim_ms": 17')
    px = paper_exchange_factory(state_path=state_path, wait=False)
    assert exit_code(px) == 2
    lines = px.log_text().strip().splitlines()
    assert len(lines) == 1, lines
    assert "CRITICAL" in lines[0] and str(state_path) in lines[0] and "JSON" in lines[0]
    assert state_path.read_text() == '{"version": 1, "clock": {"sim_ms": 17'


def test_state_of_another_version_exits_2(paper_exchange_factory: Factory, tmp_path: Any) -> None:
    state_path = tmp_path / "future.json"
    state_path.write_text(json.dumps({"version": 99}))
    px = paper_exchange_factory(state_path=state_path, wait=False)
    assert exit_code(px) == 2
    assert "version=99" in px.log_text()


def test_second_instance_on_the_same_port_exits_1_with_one_line(
    paper_exchange_factory: Factory,
) -> None:
    first = paper_exchange_factory()
    second = paper_exchange_factory(port=first.port, wait=False)
    assert exit_code(second) == 1
    lines = second.log_text().strip().splitlines()
    assert len(lines) == 1 and f"{first.port}" in lines[0] and "cannot listen" in lines[0], lines
    assert first.is_running()


def test_second_instance_on_the_same_state_file_exits_1(paper_exchange_factory: Factory) -> None:
    first = paper_exchange_factory()
    second = paper_exchange_factory(state_path=first.state_path, wait=False)
    assert exit_code(second) == 1
    assert "another paper exchange uses" in second.log_text()


def stats_lines(px: PaperExchangeProcess) -> list[str]:
    return [line for line in px.log_text().splitlines() if "paper_exchange_stats" in line]


def counted_requests(px: PaperExchangeProcess) -> int:
    return sum(int(line.split("requests=")[1].split()[0]) for line in stats_lines(px))


def test_stats_are_logged_periodically_and_requests_are_not(
    paper_exchange_factory: Factory,
) -> None:
    px = paper_exchange_factory(overlay={"stats_interval_s": 0.3})

    async def many(c: BinanceTestClient) -> None:
        for _ in range(30):
            assert (await c.public("/fapi/v1/ticker/price", symbol="BTCUSDT")).status == 200

    call(px, many)
    eventually(lambda: counted_requests(px) >= 30, 5)
    assert all("ws_connections=" in line and "orders=" in line for line in stats_lines(px))
    other = [line for line in px.log_text().splitlines() if "paper_exchange_stats" not in line]
    assert len(other) < 10, other  # start-up lines only, nothing per request
