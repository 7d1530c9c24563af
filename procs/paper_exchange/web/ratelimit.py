"""Binance's REST rate limits for the paper exchange: request weight per IP per minute, order counts
per account per 10 seconds and per minute, and the 429 → 418 escalation (BINANCE-API.md §3.1).

Pure: the caller passes the real (wall) time in integer milliseconds. Owns the counters only; the
server turns a `Verdict` into an HTTP reply and headers.

Windows are fixed and aligned to the epoch (the minute window starts at every whole minute), the way
Binance's `X-MBX-USED-WEIGHT-1M` drops to zero at the top of each minute. They run on REAL time,
not simulated time: clients pace themselves by the wall clock, and at `--speed 60` a simulated
minute would last one real second and the limits would never bite.

Counting rules (§3.1, with the choices where the docs are silent):
- Every request that reaches the limiter adds its weight, even when it is answered 429, so a client
  that keeps hammering sees the used weight climb past the limit, as on Binance.
- Each -1003 429 is remembered; after `ban_after_429s` of them within one minute the IP is banned
  for `ban_ms`: every request gets 418 with `Retry-After` until the ban ends, and adds no weight.
- Order counts are per account (the paper exchange has one) and only accepted requests count; an
  order request over either order limit gets 429 -1015 and is not counted. -1015 does not lead to
  a ban (the ban is per IP and about weight).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

MINUTE_MS = 60_000
TEN_SECONDS_MS = 10_000

TOO_MANY_REQUESTS = -1003  # §3.4
TOO_MANY_ORDERS = -1015  # §3.4


@dataclass(frozen=True, slots=True)
class Limits:
    weight_1m: int  # REQUEST_WEIGHT per minute per IP
    orders_10s: int  # ORDERS per 10 seconds per account
    orders_1m: int  # ORDERS per minute per account
    ban_after_429s: int  # -1003 answers in one minute after which the IP is banned
    ban_ms: int  # length of an IP ban, real milliseconds


@dataclass(frozen=True, slots=True)
class Cost:
    weight: int  # IP request weight
    orders_10s: int  # count on the 10-second ORDERS limit
    orders_1m: int  # count on the 1-minute ORDERS limit

    @property
    def is_order(self) -> bool:
        """Whether the request counts on the ORDERS limits (and gets X-MBX-ORDER-COUNT headers)."""
        return self.orders_10s > 0 or self.orders_1m > 0


@dataclass(frozen=True, slots=True)
class Verdict:
    status: int  # 200 = serve the request; 429 or 418 = answer with code/msg
    code: int  # Binance error code when refused, else 0
    msg: str  # Binance error message when refused, else ""
    retry_after_s: int | None  # Retry-After header value, seconds
    used_weight_1m: int  # X-MBX-USED-WEIGHT-1M after this request
    order_count_10s: int  # X-MBX-ORDER-COUNT-10S after this request
    order_count_1m: int  # X-MBX-ORDER-COUNT-1M after this request

    @property
    def is_allowed(self) -> bool:
        return self.status == 200


@dataclass(slots=True)
class _Window:
    start_ms: int = 0
    count: int = 0

    def current(self, now_ms: int, length_ms: int) -> int:
        """Return the count of the window containing now_ms (0 when a new window has begun)."""
        start = now_ms - now_ms % length_ms
        if start != self.start_ms:
            self.start_ms = start
            self.count = 0
        return self.count


@dataclass(slots=True)
class _IpState:
    weight: _Window = field(default_factory=_Window)
    recent_429_ms: deque[int] = field(default_factory=deque)
    banned_until_ms: int = 0


class RateLimiter:
    """Weight counters per IP, order counters for the account, and IP bans."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._ips: dict[str, _IpState] = {}
        self._orders_10s = _Window()
        self._orders_1m = _Window()

    def _ip(self, ip: str, real_ms: int) -> _IpState:
        state = self._ips.get(ip)
        if state is None:
            if len(self._ips) > 1000:  # forget idle IPs so the table stays small
                self._ips = {
                    k: v for k, v in self._ips.items() if v.weight.start_ms >= real_ms - MINUTE_MS
                }
            state = self._ips[ip] = _IpState()
        return state

    def used_weight(self, ip: str, real_ms: int) -> int:
        """Return the IP's weight used in the current minute."""
        return self._ip(ip, real_ms).weight.current(real_ms, MINUTE_MS)

    def order_counts(self, real_ms: int) -> tuple[int, int]:
        """Return the account's (10-second, 1-minute) order counts in the current windows."""
        return (
            self._orders_10s.current(real_ms, TEN_SECONDS_MS),
            self._orders_1m.current(real_ms, MINUTE_MS),
        )

    def admit(self, ip: str, cost: Cost, real_ms: int) -> Verdict:
        """Count a request; decide: served (200), rate-limited (429) or banned (418)."""
        state = self._ip(ip, real_ms)
        used = state.weight.current(real_ms, MINUTE_MS)
        count_10s, count_1m = self.order_counts(real_ms)
        if real_ms < state.banned_until_ms:
            return Verdict(
                418,
                TOO_MANY_REQUESTS,
                f"Way too many requests; IP({ip}) banned until {state.banned_until_ms}. "
                "Please use the websocket for live updates to avoid bans.",
                _ceil_s(state.banned_until_ms - real_ms),
                used,
                count_10s,
                count_1m,
            )
        used = state.weight.count = used + cost.weight
        if used > self.limits.weight_1m:
            recent = state.recent_429_ms
            recent.append(real_ms)
            while recent and recent[0] <= real_ms - MINUTE_MS:
                recent.popleft()
            if len(recent) >= self.limits.ban_after_429s:
                state.banned_until_ms = real_ms + self.limits.ban_ms
                recent.clear()
            window_end_ms = state.weight.start_ms + MINUTE_MS
            return Verdict(
                429,
                TOO_MANY_REQUESTS,
                f"Too many requests; current limit of IP({ip}) is {self.limits.weight_1m} requests "
                "per minute. Please use the websocket for live updates to avoid polling the API.",
                _ceil_s(window_end_ms - real_ms),
                used,
                count_10s,
                count_1m,
            )
        if cost.is_order:
            if count_10s + cost.orders_10s > self.limits.orders_10s:
                return _orders_refused(
                    self.limits.orders_10s, "10 SECOND", used, count_10s, count_1m
                )
            if count_1m + cost.orders_1m > self.limits.orders_1m:
                return _orders_refused(self.limits.orders_1m, "MINUTE", used, count_10s, count_1m)
            count_10s = self._orders_10s.count = count_10s + cost.orders_10s
            count_1m = self._orders_1m.count = count_1m + cost.orders_1m
        return Verdict(200, 0, "", None, used, count_10s, count_1m)


def _orders_refused(limit: int, interval: str, used: int, count_10s: int, count_1m: int) -> Verdict:
    # §3.1: futures sends -1015 without Retry-After (unconfirmed); we follow that.
    msg = f"Too many new orders; current limit is {limit} orders per {interval}."
    return Verdict(429, TOO_MANY_ORDERS, msg, None, used, count_10s, count_1m)


def _ceil_s(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


# ---- weights (§3.1, from the official SDK's docstrings) ------------------------------------------

_FIXED_WEIGHTS: dict[tuple[str, str], int] = {
    ("GET", "/fapi/v1/ping"): 1,
    ("GET", "/fapi/v1/time"): 1,
    ("GET", "/fapi/v1/exchangeInfo"): 1,
    ("GET", "/fapi/v1/fundingRate"): 1,
    ("GET", "/fapi/v1/leverageBracket"): 1,
    ("GET", "/fapi/v2/account"): 5,
    ("GET", "/fapi/v3/account"): 5,
    ("GET", "/fapi/v2/balance"): 5,
    ("GET", "/fapi/v3/balance"): 5,
    ("GET", "/fapi/v2/positionRisk"): 5,
    ("GET", "/fapi/v3/positionRisk"): 5,
    ("GET", "/fapi/v1/order"): 1,
    ("DELETE", "/fapi/v1/order"): 1,
    ("PUT", "/fapi/v1/order"): 0,
    ("POST", "/fapi/v1/order"): 0,
    ("POST", "/fapi/v1/batchOrders"): 5,
    ("PUT", "/fapi/v1/batchOrders"): 5,
    ("DELETE", "/fapi/v1/batchOrders"): 1,
    ("POST", "/fapi/v1/algoOrder"): 0,
    ("GET", "/fapi/v1/algoOrder"): 1,
    ("DELETE", "/fapi/v1/algoOrder"): 1,
    ("DELETE", "/fapi/v1/algoOpenOrders"): 1,
    ("GET", "/fapi/v1/allAlgoOrders"): 5,
    ("GET", "/fapi/v1/openOrder"): 1,
    ("GET", "/fapi/v1/allOrders"): 5,
    ("DELETE", "/fapi/v1/allOpenOrders"): 1,
    ("POST", "/fapi/v1/leverage"): 1,
    ("POST", "/fapi/v1/marginType"): 1,
    ("POST", "/fapi/v1/countdownCancelAll"): 10,
    ("GET", "/fapi/v1/userTrades"): 5,
    ("GET", "/fapi/v1/income"): 30,
    ("GET", "/fapi/v1/symbolConfig"): 5,
    ("GET", "/fapi/v1/accountConfig"): 5,
    ("GET", "/fapi/v1/commissionRate"): 20,
    ("GET", "/fapi/v1/positionSide/dual"): 30,
    ("POST", "/fapi/v1/positionSide/dual"): 1,
    ("GET", "/fapi/v1/multiAssetsMargin"): 30,
    ("GET", "/fapi/v1/rateLimit/order"): 1,
    ("POST", "/fapi/v1/listenKey"): 1,
    ("PUT", "/fapi/v1/listenKey"): 1,
    ("DELETE", "/fapi/v1/listenKey"): 1,
}

# (with symbol, without symbol)
_SYMBOL_WEIGHTS: dict[tuple[str, str], tuple[int, int]] = {
    ("GET", "/fapi/v1/ticker/price"): (1, 2),
    ("GET", "/fapi/v2/ticker/price"): (1, 2),
    ("GET", "/fapi/v1/ticker/24hr"): (1, 40),
    ("GET", "/fapi/v1/ticker/bookTicker"): (2, 5),
    ("GET", "/fapi/v1/premiumIndex"): (1, 10),
    ("GET", "/fapi/v1/openOrders"): (1, 40),
    ("GET", "/fapi/v1/openAlgoOrders"): (1, 40),
}

_KLINE_PATHS = frozenset(
    (
        "/fapi/v1/klines",
        "/fapi/v1/continuousKlines",
        "/fapi/v1/markPriceKlines",
        "/fapi/v1/indexPriceKlines",
        "/fapi/v1/premiumIndexKlines",
    )
)

# (10-second count, 1-minute count) per order request (§3.1).
_ORDER_COSTS: dict[tuple[str, str], tuple[int, int]] = {
    ("POST", "/fapi/v1/order"): (1, 1),
    ("PUT", "/fapi/v1/order"): (1, 1),
    ("POST", "/fapi/v1/algoOrder"): (1, 1),
    ("POST", "/fapi/v1/batchOrders"): (5, 1),
    ("PUT", "/fapi/v1/batchOrders"): (5, 1),
}


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    try:
        return int(params.get(name, default))
    except ValueError:
        return default


def kline_weight(limit: int) -> int:
    """Weight of a klines request: 1/2/5/10 for limit < 100 / < 500 / <= 1000 / > 1000."""
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


def depth_weight(limit: int) -> int:
    """Weight of a depth request: 2/5/10/20 for limit <= 50 / 100 / 500 / 1000."""
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20


def request_cost(method: str, path: str, params: dict[str, str]) -> Cost:
    """Return the IP weight and order counts of one REST request (unknown endpoints weigh 1)."""
    key = (method, path)
    orders_10s, orders_1m = _ORDER_COSTS.get(key, (0, 0))
    if path in _KLINE_PATHS:
        weight = kline_weight(_int_param(params, "limit", 500))
    elif path == "/fapi/v1/depth":
        weight = depth_weight(_int_param(params, "limit", 500))
    elif key in _SYMBOL_WEIGHTS:
        with_symbol, without_symbol = _SYMBOL_WEIGHTS[key]
        weight = with_symbol if params.get("symbol") else without_symbol
    else:
        weight = _FIXED_WEIGHTS.get(key, 1)
    return Cost(weight, orders_10s, orders_1m)
