"""`Faults`: the fault switches the control API sets (`control.py`) and the web side obeys.

The REST middleware (`rest.py`) reads the HTTP fault and the added latency; the WebSocket side
(`ws.py`, `wsconn.py`) reads `ws_stalled`. The drop and expire actions are bound to the stream hub
and the listenKeys once those exist (`PaperExchange.__init__`). Faults are not state: a restart
clears them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Faults:
    """Fault switches read by the REST middleware and the WebSocket side (`ws_stalled`)."""

    def __init__(self) -> None:
        self.ws_stalled = False  # connections stay open, nothing is sent, pings go unanswered
        self.http_error_until_real_ms = 0  # Binance REST paths fail until this wall time
        self.http_error_status = 0  # the HTTP status they fail with
        self.http_error_method = ""  # only requests with this method fail ("" = any)
        self.http_error_path = ""  # only requests to this path fail ("" = any Binance path)
        self.http_error_skip = 0  # this many matching requests still pass before the failing
        self.latency_ms = 0  # added before every Binance REST reply
        self._drop: Callable[[], int] | None = None
        self._expire: Callable[[int], list[str]] | None = None

    def bind(self, drop: Callable[[], int], expire: Callable[[int], list[str]]) -> None:
        """Connect the actions to the stream hub and the listenKeys (they are built after us)."""
        self._drop = drop
        self._expire = expire

    def drop_all_ws(self) -> int:
        """Abort every WebSocket connection; return how many were open."""
        return self._drop() if self._drop is not None else 0

    def expire_listen_keys(self, now_ms: int) -> list[str]:
        """Expire every listenKey now; return the keys that expired."""
        return self._expire(now_ms) if self._expire is not None else []

    def set_http_error(
        self, status: int, until_real_ms: int, method: str = "", path: str = "", skip: int = 0
    ) -> None:
        """Fail the matching Binance REST requests with `status` until `until_real_ms`, after
        letting the first `skip` of them through (a fault in the middle of a sequence)."""
        self.http_error_status = status
        self.http_error_until_real_ms = until_real_ms
        self.http_error_method = method.upper()
        self.http_error_path = path
        self.http_error_skip = skip

    def clear_http_error(self) -> None:
        """End an HTTP fault now."""
        self.set_http_error(0, 0)

    def http_error_now(self, real_ms: int) -> int | None:
        """Return the HTTP status of the fault in force at `real_ms`, or None."""
        if real_ms < self.http_error_until_real_ms:
            return self.http_error_status
        return None

    def http_error_for(self, real_ms: int, method: str, path: str) -> int | None:
        """Return the HTTP status this request fails with, or None; a request the fault lets
        through while skipping counts against the skip."""
        status = self.http_error_now(real_ms)
        if status is None:
            return None
        if self.http_error_method and method.upper() != self.http_error_method:
            return None
        if self.http_error_path and path != self.http_error_path:
            return None
        if self.http_error_skip > 0:
            self.http_error_skip -= 1
            return None
        return status

    def to_status(self, real_ms: int) -> dict[str, Any]:
        """Return the switches for `GET /_sim/status`."""
        failing = self.http_error_now(real_ms)
        return {
            "ws_stalled": self.ws_stalled,
            "http_error_status": failing or 0,
            "http_error_remaining_ms": max(0, self.http_error_until_real_ms - real_ms)
            if failing
            else 0,
            "http_error_method": self.http_error_method if failing else "",
            "http_error_path": self.http_error_path if failing else "",
            "http_error_skip": self.http_error_skip if failing else 0,
            "latency_ms": self.latency_ms,
        }
