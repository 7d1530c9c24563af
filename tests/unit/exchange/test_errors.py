"""Mapping of HTTP status and Binance code to the error class named by its recovery."""

from __future__ import annotations

import pytest

from shared.exchange.errors import (
    AuthError,
    ExchangeError,
    FatalError,
    RateLimitedError,
    RejectedError,
    TimestampError,
    TransientError,
    UnknownListenKeyError,
    UnknownOrderError,
    classify,
    execution_unknown,
)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (503, -1008, TransientError),  # server overloaded
        (500, -1000, TransientError),
        (502, -1001, TransientError),
        (504, -1007, TransientError),
        (408, 0, TransientError),
        (503, 0, TransientError),  # a proxy's HTML 503 carries no code
        (400, -1001, TransientError),
        (429, -1003, RateLimitedError),
        (418, -1003, RateLimitedError),
        (429, -1015, RateLimitedError),  # too many new orders
        (400, -1021, TimestampError),
        (400, -5028, TimestampError),
        (400, -1022, AuthError),
        (401, -2015, AuthError),
        (400, -2014, AuthError),
        (401, 0, AuthError),
        (400, -2011, UnknownOrderError),
        (400, -2013, UnknownOrderError),
        (400, -1125, UnknownListenKeyError),
        (400, -2019, RejectedError),  # margin is insufficient
        (400, -2021, RejectedError),  # order would immediately trigger
        (400, -2022, RejectedError),  # reduce-only rejected
        (400, -4164, RejectedError),  # notional below the minimum
        (400, -4046, RejectedError),  # margin type unchanged (the client treats it as success)
        (400, -1102, RejectedError),
        (400, -4120, RejectedError),
        (403, 0, FatalError),
        (404, -1000, FatalError),
        (200, -1, RejectedError),  # ccxt raises on a 200 carrying a negative code (§3.3)
    ],
)
def test_classify_maps_status_and_code_to_the_recovery(
    status: int, code: int, expected: type[ExchangeError]
) -> None:
    assert classify(status, code, "") is expected


def test_unknown_order_is_a_rejection_and_auth_is_fatal() -> None:
    assert issubclass(UnknownOrderError, RejectedError)
    assert issubclass(AuthError, FatalError)
    assert issubclass(RateLimitedError, TransientError)
    assert issubclass(TimestampError, TransientError)


@pytest.mark.parametrize(
    ("cls", "status", "expected"),
    [
        (TransientError, 503, True),
        (TransientError, 500, True),
        (TransientError, 408, True),
        (TransientError, 0, True),  # timeout or disconnect after sending
        (TransientError, 400, False),  # -1001 with 400: refused
        (RateLimitedError, 429, False),
        (TimestampError, 400, False),
        (RejectedError, 400, False),
    ],
)
def test_execution_is_unknown_only_for_5xx_408_and_transport_failures(
    cls: type[ExchangeError], status: int, expected: bool
) -> None:
    assert execution_unknown(cls, status) is expected


def test_error_message_names_method_path_status_code_and_binance_text() -> None:
    error = RejectedError(
        "ReduceOnly Order is rejected.",
        code=-2022,
        http_status=400,
        method="POST",
        path="/fapi/v1/order",
    )
    assert str(error) == "POST /fapi/v1/order: http=400 code=-2022 ReduceOnly Order is rejected."
    assert (error.code, error.http_status) == (-2022, 400)
