"""Rate-limit counting of the paper exchange: weight per minute, 429 with Retry-After, 418 ban,
order counts and -1015 (BINANCE-API.md §3.1)."""

from __future__ import annotations

from procs.paper_exchange.web.ratelimit import Cost, Limits, RateLimiter, request_cost

LIMITS = Limits(weight_1m=10, orders_10s=3, orders_1m=5, ban_after_429s=2, ban_ms=120_000)
T0 = 1_700_000_080_000  # 40 s into a minute
GET = Cost(1, 0, 0)
ORDER = Cost(0, 1, 1)


def test_weight_accumulates_within_the_minute() -> None:
    limiter = RateLimiter(LIMITS)
    verdicts = [limiter.admit("ip", Cost(3, 0, 0), T0 + i) for i in range(3)]
    assert [v.used_weight_1m for v in verdicts] == [3, 6, 9]
    assert all(v.is_allowed for v in verdicts)


def test_weight_resets_at_the_top_of_the_minute() -> None:
    limiter = RateLimiter(LIMITS)
    limiter.admit("ip", Cost(9, 0, 0), T0)
    assert limiter.admit("ip", GET, T0 + 20_000).used_weight_1m == 1


def test_over_the_weight_limit_is_429_1003_with_retry_after_until_the_minute_ends() -> None:
    limiter = RateLimiter(LIMITS)
    limiter.admit("ip", Cost(10, 0, 0), T0)
    verdict = limiter.admit("ip", GET, T0 + 1)
    assert (verdict.status, verdict.code) == (429, -1003)
    assert verdict.retry_after_s == 20
    assert verdict.used_weight_1m == 11


def test_repeated_429s_lead_to_a_418_ban_for_ban_ms() -> None:
    limiter = RateLimiter(LIMITS)
    limiter.admit("ip", Cost(10, 0, 0), T0)
    assert limiter.admit("ip", GET, T0 + 1).status == 429
    assert limiter.admit("ip", GET, T0 + 2).status == 429  # second 429: ban starts
    banned = limiter.admit("ip", GET, T0 + 3)
    assert (banned.status, banned.code) == (418, -1003)
    assert banned.retry_after_s == 120
    assert "banned until" in banned.msg
    # Still banned in the next minute, free after ban_ms.
    assert limiter.admit("ip", GET, T0 + 60_000).status == 418
    assert limiter.admit("ip", GET, T0 + 2 + 120_000).status == 200


def test_ips_are_counted_separately() -> None:
    limiter = RateLimiter(LIMITS)
    limiter.admit("a", Cost(11, 0, 0), T0)
    assert limiter.admit("b", GET, T0).status == 200


def test_order_counts_rise_and_the_fourth_order_in_10_seconds_is_1015() -> None:
    limiter = RateLimiter(LIMITS)
    counts = [limiter.admit("ip", ORDER, T0 + i) for i in range(3)]
    assert [(v.order_count_10s, v.order_count_1m) for v in counts] == [(1, 1), (2, 2), (3, 3)]
    refused = limiter.admit("ip", ORDER, T0 + 3)
    assert (refused.status, refused.code) == (429, -1015)
    assert refused.msg == "Too many new orders; current limit is 3 orders per 10 SECOND."
    assert refused.retry_after_s is None
    assert refused.order_count_10s == 3  # a refused order is not counted


def test_minute_order_limit_applies_across_10_second_windows() -> None:
    limiter = RateLimiter(LIMITS)
    for i in range(3):
        limiter.admit("ip", ORDER, T0 + i)
    for i in range(2):
        assert limiter.admit("ip", ORDER, T0 + 10_000 + i).status == 200
    refused = limiter.admit("ip", ORDER, T0 + 10_100)
    assert (refused.status, refused.code) == (429, -1015)
    assert "per MINUTE" in refused.msg


def test_order_refusals_do_not_ban_the_ip() -> None:
    limiter = RateLimiter(LIMITS)
    for i in range(8):
        limiter.admit("ip", ORDER, T0 + i)
    assert limiter.admit("ip", GET, T0 + 10).status == 200


def test_request_weights_follow_binance_tables() -> None:
    assert request_cost("GET", "/fapi/v1/klines", {"limit": "99"}).weight == 1
    assert request_cost("GET", "/fapi/v1/klines", {}).weight == 5
    assert request_cost("GET", "/fapi/v1/klines", {"limit": "1500"}).weight == 10
    assert request_cost("GET", "/fapi/v1/depth", {"limit": "1000"}).weight == 20
    assert request_cost("GET", "/fapi/v1/ticker/24hr", {}).weight == 40
    assert request_cost("GET", "/fapi/v1/ticker/24hr", {"symbol": "BTCUSDT"}).weight == 1
    assert request_cost("GET", "/fapi/v3/account", {}).weight == 5
    assert request_cost("GET", "/fapi/v1/income", {}).weight == 30
    assert request_cost("POST", "/fapi/v1/order", {}) == Cost(0, 1, 1)
    assert request_cost("POST", "/fapi/v1/batchOrders", {}) == Cost(5, 5, 1)
    assert request_cost("POST", "/fapi/v1/algoOrder", {}) == Cost(0, 1, 1)
    assert request_cost("GET", "/fapi/v1/unknownThing", {}) == Cost(1, 0, 0)
