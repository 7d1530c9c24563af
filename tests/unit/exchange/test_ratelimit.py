"""Pure parts of the shared weight budget: endpoint weights (§3.1), allowances, the local
fallback window, and the Redis key names."""

from __future__ import annotations

import pytest

from shared.cache import Keys
from shared.exchange.ratelimit import (
    LocalWindow,
    local_allowance,
    request_weight,
    shared_allowance,
    window_start_ms,
)

T0 = 1_795_429_620_000  # the start of a minute


@pytest.mark.parametrize(
    ("method", "path", "params", "weight"),
    [
        ("GET", "/fapi/v1/time", {}, 1),
        ("GET", "/fapi/v1/exchangeInfo", {}, 1),
        ("GET", "/fapi/v1/klines", {"limit": "99"}, 1),
        ("GET", "/fapi/v1/klines", {"limit": "100"}, 2),
        ("GET", "/fapi/v1/klines", {}, 5),  # default limit 500
        ("GET", "/fapi/v1/klines", {"limit": "1000"}, 5),
        ("GET", "/fapi/v1/klines", {"limit": "1500"}, 10),
        ("GET", "/fapi/v1/premiumIndex", {"symbol": "BTCUSDT"}, 1),
        ("GET", "/fapi/v1/premiumIndex", {}, 10),
        ("GET", "/fapi/v3/account", {}, 5),
        ("GET", "/fapi/v3/positionRisk", {}, 5),
        ("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"}, 1),
        ("GET", "/fapi/v1/openOrders", {}, 40),
        ("GET", "/fapi/v1/openAlgoOrders", {}, 40),
        ("POST", "/fapi/v1/order", {}, 0),
        ("POST", "/fapi/v1/algoOrder", {}, 0),
        ("DELETE", "/fapi/v1/order", {}, 1),
        ("DELETE", "/fapi/v1/allOpenOrders", {}, 1),
        ("POST", "/fapi/v1/countdownCancelAll", {}, 10),
        ("GET", "/fapi/v1/userTrades", {}, 5),
        ("GET", "/fapi/v1/income", {}, 30),
        ("PUT", "/fapi/v1/listenKey", {}, 1),
    ],
)
def test_request_weight_follows_binance_s_table(
    method: str, path: str, params: dict[str, str], weight: int
) -> None:
    assert request_weight(method, path, params) == weight


def test_normal_processes_leave_the_reserved_share_to_the_guard() -> None:
    assert shared_allowance(2400, 0.2, is_guard=False) == 1920
    assert shared_allowance(2400, 0.2, is_guard=True) == 2400
    assert shared_allowance(60, 0.25, is_guard=False) == 45


def test_local_fallback_is_a_slice_per_process_and_the_guard_keeps_the_reserve() -> None:
    assert local_allowance(2400, 0.2, 4, is_guard=False) == 480
    assert local_allowance(2400, 0.2, 4, is_guard=True) == 480 + 480
    assert local_allowance(100, 0.0, 3, is_guard=False) == 33


def test_windows_are_whole_minutes() -> None:
    assert window_start_ms(T0) == T0
    assert window_start_ms(T0 + 59_999) == T0
    assert window_start_ms(T0 + 60_000) == T0 + 60_000


def test_local_window_grants_up_to_its_own_slice_then_refuses() -> None:
    window = LocalWindow()
    granted = [window.reserve(5, 12, 100, T0 + i).is_granted for i in range(3)]
    assert granted == [True, True, False]
    assert window.own_weight == 10


def test_local_window_refuses_when_the_exchange_reports_the_ip_near_the_limit() -> None:
    window = LocalWindow()
    window.observe(44, T0)
    refused = window.reserve(5, 100, 45, T0 + 1)
    assert (refused.is_granted, refused.blocked_ms) == (False, 0)
    assert window.reserve(1, 100, 45, T0 + 2).is_granted


def test_local_window_starts_over_each_minute() -> None:
    window = LocalWindow()
    assert window.reserve(10, 10, 10, T0).is_granted
    assert not window.reserve(1, 10, 10, T0 + 59_000).is_granted
    assert window.reserve(10, 10, 10, T0 + 60_000).is_granted


def test_zero_weight_requests_pass_a_full_window_but_not_a_retry_after_block() -> None:
    window = LocalWindow()
    window.observe(50, T0)
    assert window.reserve(0, 10, 45, T0 + 1).is_granted  # order placement: weight 0
    window.block(2_000, T0 + 10)
    blocked = window.reserve(0, 10, 45, T0 + 500)
    assert (blocked.is_granted, blocked.blocked_ms) == (False, 1_510)
    assert window.reserve(0, 10, 45, T0 + 2_010).is_granted


def test_a_shorter_block_never_shortens_a_longer_one() -> None:
    window = LocalWindow()
    window.block(10_000, T0)
    window.block(1_000, T0 + 100)
    assert window.blocked_until_ms == T0 + 10_000


def test_redis_keys_carry_the_instance_prefix() -> None:
    keys = Keys("ab12cd34ef")
    assert keys.weight_window(T0) == f"slt:ab12cd34ef:rate:weight:{T0}"
    assert keys.request_block() == "slt:ab12cd34ef:rate:block"
