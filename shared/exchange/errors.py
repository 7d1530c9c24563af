"""Errors of the exchange client, named by what the caller does to recover.

Class tree:
    Exception
    └── ExchangeError                 base: HTTP status, Binance code and message, method and path
        ├── TransientError            retry with `core/backoff.py` (5xx, 408, timeouts, connection
        │   │                         errors, -1000/-1001/-1006/-1007/-1008)
        │   ├── RateLimitedError      429/418, -1003/-1015: wait `retry_after_s`, then retry
        │   ├── TimestampError        -1021/-5028: resync the server-time offset, then retry
        │   └── CircuitOpenError      the client's circuit breaker is open: nothing was sent
        ├── ExecutionUnknownError     an order placement got a 5xx or timed out: the order may
        │                             exist; query it by client id before placing it again
        ├── RejectedError             the exchange refused (-2019, -2021, -2022, -4164, …):
        │   │                         record, alert, never retry the same request
        │   ├── UnknownOrderError     -2011/-2013: no such (open) order; reconciliation uses it
        │   └── UnknownListenKeyError -1125: the listenKey expired; create a new one
        └── FatalError                a person must act (403 WAF, 404 wrong URL)
            ├── AuthError             -1022 bad signature, -2014/-2015 bad key, HTTP 401
            └── ProtocolError         a reply does not match the documented schema

`classify(http_status, code, msg)` is the one pure function that maps a reply to a class. The
client translates foreign exceptions (aiohttp, asyncio timeouts) where it catches them, with
`raise ... from e`, and turns a `TransientError` that may have executed into
`ExecutionUnknownError` for a non-idempotent request.
"""

from __future__ import annotations

# Binance codes (BINANCE-API.md §3.4) grouped by the recovery they call for.
_RATE_LIMIT_CODES = frozenset({-1003, -1015})  # too many requests / too many new orders
_TIMESTAMP_CODES = frozenset({-1021, -5028})  # outside recvWindow (API / matching engine)
_AUTH_CODES = frozenset({-1022, -2014, -2015})  # bad signature / key format / key, IP, permission
_UNKNOWN_ORDER_CODES = frozenset({-2011, -2013})  # unknown order sent / order does not exist
_UNKNOWN_LISTEN_KEY = -1125  # this listenKey does not exist
# "Unknown error", "internal error; try again", "unexpected response", "timeout waiting for the
# backend", "server overloaded": Binance's own words say the request may be retried.
_TRANSIENT_CODES = frozenset({-1000, -1001, -1006, -1007, -1008})


class ExchangeError(Exception):
    """A request to the exchange failed; the subclass names the recovery."""

    # Whether the failure says the exchange is unhealthy (feeds the circuit breaker).
    is_exchange_fault: bool = False

    def __init__(
        self,
        msg: str,
        *,
        code: int = 0,
        http_status: int = 0,
        method: str = "",
        path: str = "",
        retry_after_s: float = 0.0,
        may_have_executed: bool = False,
        client_id: str = "",
    ) -> None:
        self.code = code  # Binance error code, 0 when the reply carried none
        self.msg = msg  # Binance's message, or what went wrong on our side
        self.http_status = http_status  # 0 when no HTTP reply arrived
        self.method = method
        self.path = path
        self.retry_after_s = retry_after_s  # seconds to wait before retrying, 0 = back-off
        self.may_have_executed = may_have_executed  # 5xx or timeout after the request was sent
        self.client_id = client_id  # the order's client id, when the request placed an order
        where = f"{method} {path}".strip() or "exchange"
        super().__init__(f"{where}: http={http_status} code={code} {msg}")


class TransientError(ExchangeError):
    """The exchange or the network failed for now; retry with jittered back-off."""

    is_exchange_fault = True


class RateLimitedError(TransientError):
    """A rate limit refused the request (nothing executed); wait `retry_after_s` seconds."""

    is_exchange_fault = False


class TimestampError(TransientError):
    """The timestamp fell outside recvWindow (nothing executed); resync the clock offset."""

    is_exchange_fault = False


class CircuitOpenError(TransientError):
    """The circuit breaker is open: the request was not sent; retry after `retry_after_s`."""

    is_exchange_fault = False


class ExecutionUnknownError(ExchangeError):
    """An order placement failed in a way that may have executed it; reconcile by `client_id`."""

    is_exchange_fault = True


class RejectedError(ExchangeError):
    """The exchange refused the request; record it and alert, never retry it unchanged."""


class UnknownOrderError(RejectedError):
    """The order does not exist (or is no longer open): -2011 on cancel, -2013 on query."""


class UnknownListenKeyError(RejectedError):
    """The listenKey does not exist any more (-1125); create a new one."""


class FatalError(ExchangeError):
    """Retrying cannot help; a person must act (configuration, credentials, IP ban by WAF)."""


class AuthError(FatalError):
    """The API key, its permissions or the signature were refused."""


class ProtocolError(FatalError):
    """A reply did not match the documented schema (the message names the field path)."""


def classify(http_status: int, code: int, msg: str) -> type[ExchangeError]:
    """Return the error class for an HTTP status and Binance error code (0 = none).

    Pure. `msg` is accepted so a future code whose meaning depends on its text can be told
    apart here and nowhere else; no current rule needs it.
    """
    del msg  # see the docstring
    if http_status in (418, 429) or code in _RATE_LIMIT_CODES:
        return RateLimitedError
    if code in _TIMESTAMP_CODES:
        return TimestampError
    if code in _AUTH_CODES or http_status == 401:
        return AuthError
    if code in _UNKNOWN_ORDER_CODES:
        return UnknownOrderError
    if code == _UNKNOWN_LISTEN_KEY:
        return UnknownListenKeyError
    if http_status >= 500 or http_status == 408:
        return TransientError  # §3.2: 5XX means the execution status is unknown
    if http_status in (403, 404):
        return FatalError  # WAF block, or a base URL / path that does not exist
    if code in _TRANSIENT_CODES:
        return TransientError
    return RejectedError


def execution_unknown(error_class: type[ExchangeError], http_status: int) -> bool:
    """Return whether a failed request of this class and HTTP status may still have executed.

    5xx and 408 replies (§3.2: "execution status unknown") and transport failures after the
    request was sent (status 0) may have; explicit refusals (4xx, 429, -1021) have not.
    """
    if error_class is not TransientError:
        return False
    return http_status == 0 or http_status >= 500 or http_status == 408
