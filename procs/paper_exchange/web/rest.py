"""Binance's REST surface of the paper exchange: the middleware every Binance path passes, the
public and signed route handlers, and the JSON replies (BINANCE-API.md §2, §3, §5).

Owns no state: counters, faults and the exchange live on `PaperExchange` (server.py), which the
handlers see through `ExchangeHost` (host.py). The order of the middleware is Binance's as far as
a client can see it: an HTTP fault or a rate-limit refusal answers before authentication; a signed
route then checks the API key (-2014/-2015, HTTP 401), `timestamp`/`signature` presence (-1102),
`recvWindow` (-1131), the timestamp window (-1021) and the HMAC (-1022), in that order (`auth.py`).

Replies (§3.2, §3.3): always `Content-Type: application/json` with `X-MBX-USED-WEIGHT-1M`; order
endpoints add `X-MBX-ORDER-COUNT-10S`/`-1M`; 429/418 add `Retry-After`. An `ApiError` becomes
`{"code","msg"}` with its HTTP status. An unexpected exception becomes HTTP 500 with Binance's
-1000 body and one log line naming the exception and where it was raised, never a traceback to
the client. An unknown path or method is HTTP 404 with a JSON -1000 body naming the path: Binance
answers an HTML error page there, and clients only look at the status, so JSON keeps "every reply
is JSON" true at no cost. An HTTP fault (`/_sim/http/fail`) answers before anything else with the
body Binance sends for that status (503 -1008, 500 -1000, 502 -1001, 408/504 -1007, 429/418
-1003 with Retry-After), without executing the request.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from procs.paper_exchange.errors import ApiError
from procs.paper_exchange.web.auth import authenticate_signed, decode_body, parse_params
from procs.paper_exchange.web.host import ExchangeHost
from procs.paper_exchange.web.ratelimit import Cost, request_cost
from shared import log

_log = log.get("paper_exchange")

PX_KEY = web.AppKey("paper_exchange", object)  # the ExchangeHost (typed via `exchange_of`)

# Binance's own spelling ("occured"); ccxt and others match some messages by text.
UNKNOWN_ERROR = "An unknown error occured while processing the request."
FAULT_BODIES: dict[int, tuple[int, str]] = {
    # §3.2 / §3.4: what Binance answers with these statuses.
    408: (
        -1007,
        "Timeout waiting for response from backend server. "
        "Send status unknown; execution status unknown.",
    ),
    500: (-1000, UNKNOWN_ERROR),
    502: (-1001, "Internal error; unable to process your request. Please try again."),
    503: (
        -1008,
        "Server is currently overloaded with other requests. Please try again in a few minutes.",
    ),
    504: (
        -1007,
        "Timeout waiting for response from backend server. "
        "Send status unknown; execution status unknown.",
    ),
}

EngineHandler = Callable[[dict[str, str], int], Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class RawRequest:
    query: str  # the query string exactly as received (percent-encoding kept)
    body: str  # the body exactly as received (undecodable bytes kept as surrogates)
    params: dict[str, str]  # query + form body merged, query wins (§2.1)
    cost: Cost  # IP weight and order counts (§3.1)


RAW_KEY = web.RequestKey("paper_raw", RawRequest)  # the request's parsed `RawRequest`


def exchange_of(app: web.Application) -> ExchangeHost:
    """Return the exchange stored on the app by `build_app`."""
    return app[PX_KEY]  # type: ignore[return-value]


def _dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))


def json_reply(body: Any, status: int = 200) -> web.Response:
    """Return a JSON reply with `Content-Type: application/json`, compact like Binance's."""
    return web.Response(text=_dumps(body), status=status, content_type="application/json")


def error_reply(status: int, code: int, msg: str, retry_after_s: int | None = None) -> web.Response:
    """Return Binance's error reply `{"code": <int>, "msg": <str>}` (§3.3)."""
    reply = json_reply({"code": code, "msg": msg}, status)
    if retry_after_s is not None:
        reply.headers["Retry-After"] = str(retry_after_s)
    return reply


def _fault_reply(px: ExchangeHost, status: int, ip: str, real_ms: int) -> web.Response:
    remaining_s = max(1, -(-(px.faults.http_error_until_real_ms - real_ms) // 1000))
    if status == 429:
        msg = (
            f"Too many requests; current limit of IP({ip}) is "
            f"{px.cfg.request_weight_limit_1m} requests per minute. Please use the websocket "
            "for live updates to avoid polling the API."
        )
        return error_reply(429, -1003, msg, remaining_s)
    if status == 418:
        until = px.faults.http_error_until_real_ms
        msg = (
            f"Way too many requests; IP({ip}) banned until {until}. "
            "Please use the websocket for live updates to avoid bans."
        )
        return error_reply(418, -1003, msg, remaining_s)
    code, msg = FAULT_BODIES.get(status, (-1000, UNKNOWN_ERROR))
    return error_reply(status, code, msg)


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


@web.middleware
async def binance_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply faults, rate limits, error mapping and Binance's headers to every REST request."""
    if _is_websocket(request):
        return await handler(request)
    if request.path.startswith("/_sim/"):  # the control API: no faults, no limits, no weight
        try:
            return await handler(request)
        except web.HTTPException as e:
            return error_reply(404 if e.status == 405 else e.status, -1000, e.reason)
    px = exchange_of(request.app)
    px.stats.requests += 1
    ip = request.remote or ""
    real_ms = px.real_ms()
    failing = px.faults.http_error_for(real_ms, request.method, request.path)
    if failing is not None:
        fault = _fault_reply(px, failing, ip, real_ms)
        fault.headers["X-MBX-USED-WEIGHT-1M"] = str(px.limiter.used_weight(ip, real_ms))
        px.stats.errors += 1
        return fault
    try:
        query = request.raw_path.partition("?")[2]
        body = decode_body(await request.read())
    except web.HTTPException as e:  # e.g. 413: body over client_max_size
        return error_reply(e.status, -1000, e.reason)
    params = parse_params(query, body)
    cost = request_cost(request.method, request.path, params)
    request[RAW_KEY] = RawRequest(query, body, params, cost)
    verdict = px.limiter.admit(ip, cost, real_ms)
    reply: web.StreamResponse
    if not verdict.is_allowed:
        reply = error_reply(verdict.status, verdict.code, verdict.msg, verdict.retry_after_s)
    else:
        reply = await _call(request, handler)
        if request.method != "GET":
            # Before the reply: an acknowledged order or listenKey survives a kill -9.
            px.save_if_dirty()
    if px.faults.latency_ms:
        # The reply is late, not the request: as on Binance, a client that times out meanwhile
        # does not know that its order was executed (and must reconcile by client id).
        await asyncio.sleep(px.faults.latency_ms / 1000)
    if reply.status >= 400:
        px.stats.errors += 1
    reply.headers["X-MBX-USED-WEIGHT-1M"] = str(verdict.used_weight_1m)
    if cost.is_order:
        reply.headers["X-MBX-ORDER-COUNT-10S"] = str(verdict.order_count_10s)
        reply.headers["X-MBX-ORDER-COUNT-1M"] = str(verdict.order_count_1m)
    return reply


async def _call(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        return error_reply(e.http_status, e.code, e.msg)
    except web.HTTPException as e:
        if e.status in (404, 405):  # unknown path or method (module docstring)
            msg = f"Path {request.path}, method {request.method} is not served by this exchange."
            return error_reply(404, -1000, msg)
        return error_reply(e.status, -1000, e.reason)
    except Exception as e:  # the one place an unexpected error becomes Binance's -1000
        frame = traceback.extract_tb(e.__traceback__)[-1]
        _log.error(
            "request_failed",
            method=request.method,
            path=request.path,
            error=repr(e),
            where=f"{Path(frame.filename).name}:{frame.lineno}",
        )
        return error_reply(500, -1000, UNKNOWN_ERROR)


def public_handler(px: ExchangeHost, fn: EngineHandler) -> Handler:
    """Wrap a public (NONE security) endpoint: parameters in, JSON out, simulated time."""

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = request[RAW_KEY]
        return json_reply(fn(raw.params, px.now_ms()))

    return handle


def signed_handler(px: ExchangeHost, fn: EngineHandler) -> Handler:
    """Wrap a TRADE/USER_DATA endpoint: authenticate, catch the engine up, call, publish, save."""

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = request[RAW_KEY]
        cfg = px.cfg
        now_ms = px.now_ms()
        authenticate_signed(
            request.headers.get("X-MBX-APIKEY"),
            raw.query,
            raw.body,
            raw.params,
            cfg.api_key,
            cfg.api_secret,
            (now_ms, px.real_ms()),
            request.remote or "",
        )
        px.advance(now_ms)  # ticks first, so the engine never sees time go backwards
        try:
            body = fn(raw.params, now_ms)
        finally:
            px.publish(now_ms)
            if request.method != "GET":
                px.mark_dirty()  # the middleware saves before replying
        if raw.cost.is_order:
            px.stats.orders += 1
        return json_reply(body)

    return handle


def register_rest_routes(
    app: web.Application,
    px: ExchangeHost,
    public: dict[tuple[str, str], EngineHandler],
    signed: dict[tuple[str, str], EngineHandler],
) -> None:
    """Register the public and signed routes; a signed route wins over a public one."""
    for (method, path), fn in public.items():
        if (method, path) not in signed:
            app.router.add_route(method, path, public_handler(px, fn))
    for (method, path), fn in signed.items():
        app.router.add_route(method, path, signed_handler(px, fn))

    async def no_currencies(_request: web.Request) -> web.StreamResponse:
        return json_reply([])  # spot wallet endpoint ccxt calls with fetchCurrencies on (§10)

    app.router.add_get("/sapi/v1/capital/config/getall", no_currencies)
