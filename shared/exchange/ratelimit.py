"""The request-weight budget all processes of one instance share through Redis (§3.1).

Binance counts REQUEST_WEIGHT per IP in fixed one-minute windows (`X-MBX-USED-WEIGHT-1M`
restarts at the top of each minute) and answers 429, then 418 (an IP ban), past the limit. Every
process on the machine shares that one limit, so each reserves the weight of a request in Redis
before sending it (one atomic Lua call in `cache.py` over a key per minute window):

- a normal process may fill the window up to `limit × (1 − reserved_share)`;
- the position-guard (`is_guard`) may fill it up to the whole `limit`, so the reserved share is
  always there for protective orders and position checks;
- after each reply the window count is raised to the exchange's `X-MBX-USED-WEIGHT-1M` when
  that is higher (other clients on the IP, requests Redis never saw): the max of both;
- a 429/418 `Retry-After` is written to Redis, and every process holds its requests that long;
  an order (weight 0 on the IP limit) skips the Redis call when Redis reported no block less than
  `BLOCK_KNOWN_S` ago, so a block set by another process holds it at most that much later.

If Redis fails, the budget logs one rate-limited warning, keeps going on a local budget of
`limit × share / expected_processes` (the guard adds the reserved share to its slice), and
tries Redis again after `budget_redis_retry_s`: a dead Redis never stops trading or guarding.
Windows follow the local wall clock (NTP-synced, like Binance's), not the exchange's reported
time: the paper exchange also counts on real time while its simulated clock may run fast.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from shared import log
from shared.cache import Cache, CacheUnavailableError, Reservation
from shared.exchange.errors import RateLimitedError

WINDOW_MS = 60_000
_COUNTER_TTL_MS = 2 * WINDOW_MS  # a window's counter outlives its minute, then Redis drops it
_WARNING_INTERVAL_S = 60.0
BLOCK_KNOWN_S = 1.0  # a weight-0 request trusts Redis's last "no block" answer this long

# §3.1 weights (new SDK docstrings). Order placement weighs 0 on the IP limit (it counts on
# the ORDERS limits instead); paths not listed weigh 1.
_WEIGHTS: dict[tuple[str, str], int] = {
    ("GET", "/fapi/v3/account"): 5,
    ("GET", "/fapi/v3/positionRisk"): 5,
    ("GET", "/fapi/v1/userTrades"): 5,
    ("GET", "/fapi/v1/income"): 30,
    ("GET", "/fapi/v1/positionSide/dual"): 30,  # Binance's "Get Current Position Mode"
    ("POST", "/fapi/v1/order"): 0,
    ("POST", "/fapi/v1/algoOrder"): 0,
    ("POST", "/fapi/v1/countdownCancelAll"): 10,
}
# Endpoints that weigh more without a `symbol`: (with, without).
_SYMBOL_WEIGHTS: dict[tuple[str, str], tuple[int, int]] = {
    ("GET", "/fapi/v1/premiumIndex"): (1, 10),
    ("GET", "/fapi/v1/openOrders"): (1, 40),
    ("GET", "/fapi/v1/openAlgoOrders"): (1, 40),
}


def request_weight(method: str, path: str, params: Mapping[str, str]) -> int:
    """Return the IP weight of one request (§3.1)."""
    if path == "/fapi/v1/klines":
        limit = int(params.get("limit", "500"))  # Binance's default limit is 500
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
    key = (method, path)
    if key in _SYMBOL_WEIGHTS:
        with_symbol, without_symbol = _SYMBOL_WEIGHTS[key]
        return with_symbol if params.get("symbol") else without_symbol
    return _WEIGHTS.get(key, 1)


def shared_allowance(limit: int, reserved_share: float, is_guard: bool) -> int:
    """Return how far this process may fill the shared window (the guard: the whole limit)."""
    return limit if is_guard else math.floor(limit * (1 - reserved_share))


def local_allowance(
    limit: int, reserved_share: float, expected_processes: int, is_guard: bool
) -> int:
    """Return this process's own weight per window when Redis is down."""
    slice_ = math.floor(limit * (1 - reserved_share) / expected_processes)
    return slice_ + (math.floor(limit * reserved_share) if is_guard else 0)


def window_start_ms(now_ms: int) -> int:
    """Return the start of the one-minute window containing `now_ms`."""
    return now_ms - now_ms % WINDOW_MS


@dataclass(frozen=True, slots=True)
class BudgetSettings:
    limit_1m: int  # REQUEST_WEIGHT per minute for the IP
    reserved_share: float  # share of the limit only the guard may use
    expected_processes: int  # processes sharing the limit (sizes the local fallback)
    is_guard: bool  # the position-guard may use the reserved share
    max_wait_s: float  # longest wait for weight or a Retry-After block before RateLimitedError
    redis_retry_s: float  # after a Redis failure, stay on the local budget this long


class LocalWindow:
    """This process's own weight and the IP weight last reported, per window (pure)."""

    def __init__(self) -> None:
        self.start_ms = 0
        self.own_weight = 0
        self.reported_weight = 0
        self.blocked_until_ms = 0

    def _roll(self, now_ms: int) -> None:
        start = window_start_ms(now_ms)
        if start != self.start_ms:
            self.start_ms, self.own_weight, self.reported_weight = start, 0, 0

    def reserve(self, weight: int, own_allowed: int, ip_allowed: int, now_ms: int) -> Reservation:
        """Reserve `weight` if neither this process's slice nor the IP allowance is exceeded."""
        self._roll(now_ms)
        if now_ms < self.blocked_until_ms:
            return Reservation(False, self.own_weight, self.blocked_until_ms - now_ms)
        over_own = self.own_weight + weight > own_allowed
        over_ip = self.reported_weight + weight > ip_allowed
        if weight > 0 and (over_own or over_ip):
            return Reservation(False, self.own_weight, 0)
        self.own_weight += weight
        self.reported_weight += weight
        return Reservation(True, self.own_weight, 0)

    def observe(self, used_weight: int, now_ms: int) -> None:
        """Take the exchange's reported IP weight for the current window, if higher."""
        self._roll(now_ms)
        self.reported_weight = max(self.reported_weight, used_weight)

    def block(self, duration_ms: int, now_ms: int) -> None:
        """Hold requests until `now_ms + duration_ms` (a Retry-After)."""
        self.blocked_until_ms = max(self.blocked_until_ms, now_ms + duration_ms)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class WeightBudget:
    """Reserve request weight before each request; share it through Redis when it answers."""

    def __init__(
        self, settings: BudgetSettings, cache: Cache | None, logger: log.EventLogger
    ) -> None:
        self.settings = settings
        self._cache = cache
        self._log = logger
        self._local = LocalWindow()
        self._redis_retry_at_s = 0.0  # monotonic time before which Redis is not asked
        self._warnings = log.Throttle(_WARNING_INTERVAL_S)
        self._is_degraded = False
        self._block_known_s = -math.inf  # monotonic time of the last Redis answer about blocks
        self._blocked_until_s = 0.0  # monotonic end of the last block Redis reported
        s = settings
        self.shared_allowed = shared_allowance(s.limit_1m, s.reserved_share, s.is_guard)
        self.local_allowed = local_allowance(
            s.limit_1m, s.reserved_share, s.expected_processes, s.is_guard
        )

    @property
    def is_shared(self) -> bool:
        """Whether the last decision was taken in Redis (False: on the local fallback)."""
        return self._cache is not None and not self._is_degraded

    def _redis(self) -> Cache | None:
        if self._cache is None or time.monotonic() < self._redis_retry_at_s:
            return None
        return self._cache

    def _redis_failed(self, error: CacheUnavailableError) -> None:
        self._redis_retry_at_s = time.monotonic() + self.settings.redis_retry_s
        self._is_degraded = True
        should_log, suppressed = self._warnings.allow(time.monotonic())
        if should_log:
            self._log.warning(
                "rate_budget_redis_unavailable",
                fallback="local",
                local_weight_1m=self.local_allowed,
                error=str(error),
                suppressed=suppressed,
            )

    def _redis_ok(self) -> None:
        if self._is_degraded:
            self._is_degraded = False
            self._warnings.reset()
            self._log.info("rate_budget_redis_restored")

    async def _reserve(self, weight: int, now_ms: int) -> Reservation:
        cache = self._redis()
        if cache is not None:
            try:
                start = window_start_ms(now_ms)
                reply = await cache.reserve_weight(
                    start, weight, self.shared_allowed, _COUNTER_TTL_MS
                )
                self._redis_ok()
                now_s = time.monotonic()
                self._block_known_s = now_s
                self._blocked_until_s = now_s + reply.blocked_ms / 1000
                if reply.is_granted:  # keep the local view warm for a fallback
                    self._local.observe(reply.used_weight, now_ms)
                return reply
            except CacheUnavailableError as e:
                self._redis_failed(e)
        return self._local.reserve(weight, self.local_allowed, self.shared_allowed, now_ms)

    async def acquire(self, weight: int) -> None:
        """Reserve `weight` for one request, waiting for the next window or the end of a block.

        Raises RateLimitedError (nothing was sent) when the wait would exceed `max_wait_s`.
        On cancellation nothing is reserved beyond what was already granted.
        """
        now_s = time.monotonic()
        if (
            weight == 0
            and now_s - self._block_known_s < BLOCK_KNOWN_S
            and now_s >= self._blocked_until_s
        ):
            # Orders weigh 0 on the IP limit: only a Retry-After block could hold them, and
            # Redis said there was none less than BLOCK_KNOWN_S ago. Saves a Redis round trip
            # on the order path (the guard's closes).
            return
        deadline = now_s + self.settings.max_wait_s
        while True:
            now_ms = _wall_ms()
            reply = await self._reserve(weight, now_ms)
            if reply.is_granted:
                return
            if reply.blocked_ms > 0:
                wait_s, why = reply.blocked_ms / 1000, "a Retry-After block"
            else:
                wait_s = (window_start_ms(now_ms) + WINDOW_MS - now_ms) / 1000
                why = f"the weight budget ({reply.used_weight} used)"
            if time.monotonic() + wait_s > deadline:
                raise RateLimitedError(
                    f"request weight {weight} held back by {why} for {wait_s:.1f}s more",
                    retry_after_s=wait_s,
                )
            await asyncio.sleep(wait_s)

    async def observe(self, used_weight_1m: int) -> None:
        """Correct the window count with the exchange's `X-MBX-USED-WEIGHT-1M` (the max)."""
        now_ms = _wall_ms()
        self._local.observe(used_weight_1m, now_ms)
        cache = self._redis()
        if cache is not None:
            try:
                await cache.raise_weight(window_start_ms(now_ms), used_weight_1m, _COUNTER_TTL_MS)
                self._redis_ok()
            except CacheUnavailableError as e:
                self._redis_failed(e)

    async def block(self, retry_after_s: float) -> None:
        """Hold every process's requests for `retry_after_s` (a 429/418 Retry-After)."""
        duration_ms = max(1, math.ceil(retry_after_s * 1000))
        self._local.block(duration_ms, _wall_ms())
        cache = self._redis()
        if cache is not None:
            try:
                await cache.block_requests(duration_ms)
                self._redis_ok()
            except CacheUnavailableError as e:
                self._redis_failed(e)
