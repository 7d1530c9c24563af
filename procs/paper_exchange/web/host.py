"""`ExchangeHost`: what the web handlers (`rest.py`, `ws.py`, `control.py`) use of the exchange.

`PaperExchange` (server.py) satisfies it structurally. The handlers depend on this protocol rather
than on the server, so `server.py` imports them without an import circle (a type-only one counts
too: `tests/unit/paper/test_imports.py`). A member joins here only when a handler needs it; the
attributes are read-only because no handler replaces them, it only uses or mutates them.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from procs.paper_exchange.clock import SimClock
from procs.paper_exchange.market.prices import Market
from procs.paper_exchange.web.faults import Faults
from procs.paper_exchange.web.public import PublicEndpoints
from procs.paper_exchange.web.ratelimit import RateLimiter
from procs.paper_exchange.web.userstream import ListenKeys
from shared.config import PaperExchangeConfig


class RequestCounters(Protocol):
    """The counters the REST middleware and the signed handlers increment."""

    requests: int
    errors: int
    orders: int


class ExchangeHost(Protocol):
    """The running exchange as the web handlers see it."""

    @property
    def cfg(self) -> PaperExchangeConfig: ...

    @property
    def clock(self) -> SimClock: ...

    @property
    def market(self) -> Market: ...

    @property
    def public(self) -> PublicEndpoints: ...

    @property
    def listen_keys(self) -> ListenKeys: ...

    @property
    def faults(self) -> Faults: ...

    @property
    def limiter(self) -> RateLimiter: ...

    @property
    def stats(self) -> RequestCounters: ...

    def now_ms(self) -> int:
        """Return the simulated time in integer UTC milliseconds."""
        ...

    def real_ms(self) -> int:
        """Return the wall time in integer UTC milliseconds."""
        ...

    def mark_dirty(self) -> None:
        """Note a state change, to be saved before the reply or soon after."""
        ...

    def save_if_dirty(self) -> None:
        """Save the state file when a change is pending."""
        ...

    def check_api_key(self, request: web.Request) -> None:
        """Check `X-MBX-APIKEY`; raise ApiError -2014/-2015 (HTTP 401)."""
        ...

    def advance(self, now_ms: int) -> bool:
        """Tick the engine at every step boundary up to `now_ms`."""
        ...

    def publish(self, now_ms: int) -> None:
        """Send the engine's pending user-data events to the user streams."""
        ...

    def status(self) -> dict[str, Any]:
        """Return the `GET /_sim/status` document."""
        ...
