"""Alerts (DESIGN-RULES 22): an ERROR `alert` log line, always, and an entry in the Redis alerts
stream for the reporter to deliver to Telegram/Discord, when Redis answers.

An alert never blocks its caller for long (the Redis write has the cache's deadline) and is never
raised as an error: a dead Redis leaves the log line, which the watchdog and the operator see.
The same (kind, symbol) is sent at most once per `interval_s`; the suppressed count is reported.
"""

from __future__ import annotations

import time

from shared import log
from shared.cache import Cache, CacheUnavailableError
from shared.schemas import guard as g


class Alerter:
    """Sends alerts of one process; `cache` may be None (log line only)."""

    def __init__(self, source: str, logger: log.EventLogger, interval_s: float = 60.0) -> None:
        self.source = source
        self.log = logger
        self.interval_s = interval_s
        self.cache: Cache | None = None
        self.sent = 0
        self._throttles: dict[tuple[str, str], log.Throttle] = {}

    async def send(self, kind: str, detail: str, symbol: str = "", **fields: object) -> bool:
        """Log and queue one alert; return False when it was throttled."""
        throttle = self._throttles.setdefault((kind, symbol), log.Throttle(self.interval_s))
        allowed, suppressed = throttle.allow(time.monotonic())
        if not allowed:
            return False
        where = {"symbol": symbol} if symbol else {}
        self.log.error("alert", kind=kind, **where, detail=detail, suppressed=suppressed, **fields)
        self.sent += 1
        if self.cache is None:
            return True
        alert = g.Alert(
            kind=kind,
            source=self.source,
            detail=detail,
            ts_ms=time.time_ns() // 1_000_000,
            symbol=symbol,
        )
        try:
            await self.cache.add_alert(g.encode(alert))
        except CacheUnavailableError as e:
            self.log.warning("alert_not_queued", kind=kind, error=str(e))
        return True
