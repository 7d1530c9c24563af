"""One symbol's failure stays that symbol's: `SymbolFaults` is the recovery the guard's per-symbol
loops apply to any exception of one symbol's handling (a NaN level, an entry of 0, a bug).

Each failure is counted (`stats["symbol_errors"]`), logged as one `symbol_error` line (at most
every `LOG_INTERVAL_S` per symbol and place, with the number suppressed) and alerted
(`symbol_error`, rate-limited per symbol by the Alerter); the caller skips that symbol and goes
on with the others, whose stops and exits are untouched.
"""

from __future__ import annotations

import time

from shared import log
from shared.store.alerts import Alerter

LOG_INTERVAL_S = 30.0  # a symbol failing on every mark is logged at most this often


class SymbolFaults:
    """Report a failure of one symbol's handling: count, log (rate-limited), alert."""

    def __init__(self, logger: log.EventLogger, alerter: Alerter, stats: dict[str, int]) -> None:
        self.log, self.alerter, self.stats = logger, alerter, stats
        self.stats.setdefault("symbol_errors", 0)
        self._throttles: dict[tuple[str, str], log.Throttle] = {}

    async def report(self, symbol: str, where: str, error: BaseException) -> None:
        """Record that handling `symbol` in `where` (evaluate, execute_exit, reconcile, protect)
        failed with `error`; the caller goes on with the other symbols."""
        self.stats["symbol_errors"] += 1
        text = f"{type(error).__name__}: {error}"[:300]
        throttle = self._throttles.setdefault((symbol, where), log.Throttle(LOG_INTERVAL_S))
        should_log, suppressed = throttle.allow(time.monotonic())
        if should_log:
            self.log.error(
                "symbol_error", symbol=symbol, where=where, error=text, suppressed=suppressed
            )
        await self.alerter.send(
            "symbol_error",
            f"handling {symbol} failed in {where}: {text}; the other symbols go on",
            symbol,
        )
