"""The status page's HTTP routes (aiohttp): GET / (HTML), /api/status (JSON), /metrics
(Prometheus text 0.0.4). Each request collects a fresh snapshot through `get_snapshot`.

Rules:
- With `reporter.status_token` set, every route needs `Authorization: Bearer <token>` or
  `?token=<token>`; anything else gets 401 with JSON {"error": ...}. The comparison is constant
  time (hmac.compare_digest).
- The token never appears in a log line or a reply. The query form would show in an access log,
  so serve the app with `start_status_site`, which runs the site without an access log.
- A snapshot that cannot be produced answers 503 with JSON {"error": ...}, never a traceback.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from procs.reporter.status.collect import StatusSnapshot, render_metrics, render_status_html
from shared.config.reporter import ReporterConfig

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SnapshotSource = Callable[[], Awaitable[StatusSnapshot]]


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def is_authorized(request: web.Request, token: str) -> bool:
    """Return whether the request carries `token` (header or query); True when no token is set."""
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    given = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
    given = given or request.query.get("token", "")
    return hmac.compare_digest(given.encode(), token.encode())


async def _snapshot(get_snapshot: SnapshotSource) -> StatusSnapshot | web.Response:
    try:
        return await get_snapshot()
    except Exception as e:  # a page answers with what failed instead of a traceback
        return _error(503, f"status could not be collected ({type(e).__name__})")


def make_app(get_snapshot: SnapshotSource, cfg: ReporterConfig) -> web.Application:
    """Return the status application; every route checks the token when one is configured."""
    token = cfg.status_token

    @web.middleware
    async def check_token(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not is_authorized(request, token):
            return _error(401, "a valid status token is required (Bearer header or ?token=)")
        return await handler(request)

    async def page(request: web.Request) -> web.Response:
        s = await _snapshot(get_snapshot)
        if isinstance(s, web.Response):
            return s
        text = render_status_html(s, cfg.status_refresh_s)
        return web.Response(
            text=text, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    async def api(request: web.Request) -> web.Response:
        s = await _snapshot(get_snapshot)
        if isinstance(s, web.Response):
            return s
        return web.Response(body=msgspec.json.encode(s), content_type="application/json")

    async def metrics(request: web.Request) -> web.Response:
        s = await _snapshot(get_snapshot)
        if isinstance(s, web.Response):
            return s
        return web.Response(body=render_metrics(s).encode(), headers={"Content-Type": METRICS_TYPE})

    app = web.Application(middlewares=[check_token])
    app.router.add_get("/", page)
    app.router.add_get("/api/status", api)
    app.router.add_get("/metrics", metrics)
    return app


async def start_status_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve `app` on host:port without an access log (it would record ?token=); return the
    runner, which the caller cleans up (`await runner.cleanup()`)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
