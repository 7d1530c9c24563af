"""What the feed's own code counts and warns about: `FeedCounters` (the figures `feed_stats`
reports beside the stream connections' own, and whether Redis is down) and `Warnings` (its
rate-limited warnings). `procs.feed.main.Feed` owns one of each; it and the tasks of
`procs.feed.tasks` update them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable

from shared import log


@dataclasses.dataclass(slots=True)
class FeedCounters:
    """The feed's counts since it started (the stream connections keep theirs) and Redis's state."""

    backfills: int = 0  # REST backfills that succeeded (start, reconnect, hole; not polls)
    backfill_failures: int = 0  # backfills and kline polls whose REST call failed
    rest_fallbacks: int = 0  # closed klines that followed a hole: a REST backfill was tried first
    bad_messages: int = 0  # messages, or parts of one, the feed itself rejected
    redis_failures: int = 0  # mirror flushes Redis did not take
    is_redis_down: bool = False  # the last flush failed; the next that succeeds says so


class Warnings:
    """Warnings limited per kind: at most one line per `interval_s`, with the count held back."""

    def __init__(self, logger: log.EventLogger, interval_s: float, kinds: Iterable[str]) -> None:
        self.log = logger
        self._throttles = {k: log.Throttle(interval_s) for k in kinds}

    def warn(self, kind: str, event: str, **fields: object) -> None:
        """Log `event` unless a warning of `kind` was logged within `interval_s` (then count it);
        KeyError for a kind not given at construction."""
        should_log, suppressed = self._throttles[kind].allow(time.monotonic())
        if should_log:
            self.log.warning(event, suppressed=suppressed, **fields)

    def cleared(self, kind: str) -> None:
        """The condition behind `kind` cleared: its next warning is logged at once."""
        self._throttles[kind].reset()
