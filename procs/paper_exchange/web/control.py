"""The paper exchange's control API under `/_sim/...`; the fault switches it sets are `Faults`.

Outside Binance's paths on purpose: no Binance client ever calls them, and faults never apply to
them (a test must be able to switch a 503 fault off again). Each call needs the paper API key in
`X-MBX-APIKEY` (no signature, no timestamp); a missing or wrong key gets Binance's -2014/-2015
reply. Parameters go in the query string or a form body. Every reply is JSON: the status document
of `GET /_sim/status`, plus the action's own result keys where it has one (`dropped`, `expired`).

| verb | path                               | effect                                            |
|------|------------------------------------|---------------------------------------------------|
| POST | /_sim/ws/drop                      | abort every WebSocket, no close frame (`dropped`) |
| POST | /_sim/ws/stall                     | sockets stay open; no data, no pings, no pongs    |
| POST | /_sim/ws/unstall                   | end the stall; queued closed candles follow       |
| POST | /_sim/http/fail?status=S&seconds=N | Binance REST paths answer S for N real seconds    |
|      |                                    | (5xx, or 429/418 with Retry-After); 503, 10 s;    |
|      | [&method=M][&path=P][&skip=K]      | only method M / path P if given, after letting    |
|      |                                    | the first K matching requests through             |
| POST | /_sim/http/ok                      | end an HTTP fault now                             |
| POST | /_sim/listenkeys/expire            | expire the listenKey (`expired`); streams get     |
|      |                                    | listenKeyExpired                                  |
| POST | /_sim/clock/pause                  | freeze simulated time                             |
| POST | /_sim/clock/resume                 | let simulated time run on from where it stopped   |
| POST | /_sim/clock/jump?ms=N              | move simulated time N ms forward; every 250 ms    |
|      |                                    | step in between is still ticked (stops fire)      |
| POST | /_sim/clock/speed?value=X          | sim seconds per real second (0 < X <= 3600)       |
| POST | /_sim/price?symbol=S&price=P       | pin last, mark, index, book of S to P (rounded    |
|      |                                    | to the tick); without `price`: clear the pin      |
| POST | /_sim/latency?ms=N                 | delay Binance REST replies N ms (0 off, <= 60000) |
| GET  | /_sim/status                       | clock, speed, paused, faults, pins, connections   |

Clock changes are saved to the state file at once; faults, latency and price overrides are not
state (a restart clears them).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from procs.paper_exchange.errors import ApiError, invalid_value, missing_param
from procs.paper_exchange.web.auth import check_api_key, decode_body, parse_params
from procs.paper_exchange.web.host import ExchangeHost
from procs.paper_exchange.web.rest import error_reply, json_reply
from shared import log

_log = log.get("paper_exchange")

MAX_LATENCY_MS = 60_000
MAX_SPEED = 3600.0
DEFAULT_FAIL_STATUS = 503
DEFAULT_FAIL_S = 10.0


def _float_param(params: dict[str, str], name: str, default: float | None = None) -> float:
    text = params.get(name, "")
    if not text:
        if default is None:
            raise missing_param(name)
        return default
    try:
        value = float(text)
    except ValueError:
        raise invalid_value(name) from None
    if not math.isfinite(value):
        raise invalid_value(name)
    return value


def _int_param(params: dict[str, str], name: str, default: int | None = None) -> int:
    value = _float_param(params, name, None if default is None else float(default))
    if value != int(value):
        raise invalid_value(name)
    return int(value)


Action = Callable[[ExchangeHost, dict[str, str]], dict[str, Any]]


def _ws_drop(px: ExchangeHost, _params: dict[str, str]) -> dict[str, Any]:
    dropped = px.faults.drop_all_ws()
    _log.warning("fault_ws_dropped", connections=dropped)
    return {"dropped": dropped}


def _ws_stall(px: ExchangeHost, _params: dict[str, str]) -> dict[str, Any]:
    px.faults.ws_stalled = True
    _log.warning("fault_ws_stalled")
    return {}


def _ws_unstall(px: ExchangeHost, _params: dict[str, str]) -> dict[str, Any]:
    px.faults.ws_stalled = False
    _log.info("fault_ws_unstalled")
    return {}


def _http_fail(px: ExchangeHost, params: dict[str, str]) -> dict[str, Any]:
    status = _int_param(params, "status", DEFAULT_FAIL_STATUS)
    seconds = _float_param(params, "seconds", DEFAULT_FAIL_S)
    if not 400 <= status <= 599:
        raise invalid_value("status")
    if seconds <= 0:
        raise invalid_value("seconds")
    method = params.get("method", "").upper()
    if method not in ("", "GET", "POST", "PUT", "DELETE"):
        raise invalid_value("method")
    path = params.get("path", "")
    if path and not path.startswith(("/fapi/", "/api/")):
        raise invalid_value("path")
    skip = _int_param(params, "skip", 0)
    if skip < 0:
        raise invalid_value("skip")
    px.faults.set_http_error(status, px.real_ms() + int(seconds * 1000), method, path, skip)
    _log.warning(
        "fault_http_failing",
        status=status,
        seconds=seconds,
        method=method or "any",
        path=path or "any",
        skip=skip,
    )
    return {}


def _http_ok(px: ExchangeHost, _params: dict[str, str]) -> dict[str, Any]:
    px.faults.clear_http_error()
    _log.info("fault_http_ended")
    return {}


def _listen_keys_expire(px: ExchangeHost, _params: dict[str, str]) -> dict[str, Any]:
    expired = px.faults.expire_listen_keys(px.now_ms())
    px.mark_dirty()
    _log.warning("fault_listen_keys_expired", keys=len(expired))
    return {"expired": len(expired)}


def _clock_pause(px: ExchangeHost, _params: dict[str, str]) -> dict[str, Any]:
    px.clock.pause(px.real_ms())
    px.mark_dirty()
    _log.info("clock_paused", sim_ms=px.now_ms())
    return {}


def _clock_resume(px: ExchangeHost, _params: dict[str, str]) -> dict[str, Any]:
    px.clock.resume(px.real_ms())
    px.mark_dirty()
    _log.info("clock_resumed", sim_ms=px.now_ms())
    return {}


def _clock_jump(px: ExchangeHost, params: dict[str, str]) -> dict[str, Any]:
    delta_ms = _int_param(params, "ms")
    if delta_ms < 0:
        raise invalid_value("ms")
    px.clock.jump(delta_ms, px.real_ms())
    px.mark_dirty()
    _log.info("clock_jumped", delta_ms=delta_ms, sim_ms=px.now_ms())
    return {}


def _clock_speed(px: ExchangeHost, params: dict[str, str]) -> dict[str, Any]:
    speed = _float_param(params, "value")
    if not 0 < speed <= MAX_SPEED:
        raise invalid_value("value")
    px.clock.set_speed(speed, px.real_ms())
    px.mark_dirty()
    _log.info("clock_speed_set", speed=speed)
    return {}


def _price(px: ExchangeHost, params: dict[str, str]) -> dict[str, Any]:
    symbol = params.get("symbol", "")
    if not symbol:
        raise missing_param("symbol")
    if symbol not in px.market.symbols:
        raise ApiError(400, -1121, "Invalid symbol.")
    text = params.get("price", "")
    price: Decimal | None = None
    if text:
        try:
            price = Decimal(text)
        except InvalidOperation:
            raise invalid_value("price") from None
        if not price.is_finite() or price <= 0:
            raise invalid_value("price")
    try:
        px.market.set_override(symbol, price)
    except ValueError:
        raise invalid_value("price") from None
    override = px.market.override(symbol)
    _log.warning("fault_price_override", symbol=symbol, price=override if override else "cleared")
    return {"symbol": symbol, "price": None if override is None else str(override)}


def _latency(px: ExchangeHost, params: dict[str, str]) -> dict[str, Any]:
    latency_ms = _int_param(params, "ms")
    if not 0 <= latency_ms <= MAX_LATENCY_MS:
        raise invalid_value("ms")
    px.faults.latency_ms = latency_ms
    _log.warning("fault_latency_set", latency_ms=latency_ms)
    return {}


def _status(_px: ExchangeHost, _params: dict[str, str]) -> dict[str, Any]:
    return {}


ACTIONS: dict[tuple[str, str], Action] = {
    ("POST", "/_sim/ws/drop"): _ws_drop,
    ("POST", "/_sim/ws/stall"): _ws_stall,
    ("POST", "/_sim/ws/unstall"): _ws_unstall,
    ("POST", "/_sim/http/fail"): _http_fail,
    ("POST", "/_sim/http/ok"): _http_ok,
    ("POST", "/_sim/listenkeys/expire"): _listen_keys_expire,
    ("POST", "/_sim/clock/pause"): _clock_pause,
    ("POST", "/_sim/clock/resume"): _clock_resume,
    ("POST", "/_sim/clock/jump"): _clock_jump,
    ("POST", "/_sim/clock/speed"): _clock_speed,
    ("POST", "/_sim/price"): _price,
    ("POST", "/_sim/latency"): _latency,
    ("GET", "/_sim/status"): _status,
}


def _handler(
    px: ExchangeHost, action: Action
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        ip = request.remote or ""
        try:
            check_api_key(request.headers.get("X-MBX-APIKEY"), px.cfg.api_key, ip)
            query = request.raw_path.partition("?")[2]
            params = parse_params(query, decode_body(await request.read()))
            result = action(px, params)
        except ApiError as e:
            return error_reply(e.http_status, e.code, e.msg)
        if request.method != "GET":
            px.save_if_dirty()
        return json_reply({**px.status(), **result})

    return handle


def add_control_routes(app: web.Application, px: ExchangeHost) -> None:
    """Register the `/_sim/...` routes of the table above on `app`."""
    for (method, path), action in ACTIONS.items():
        app.router.add_route(method, path, _handler(px, action))
