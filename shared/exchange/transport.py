"""One REST request to Binance USDT-M, done safely: weight, breaker, signing, retries, errors.

For every attempt, in this order: reserve the request weight in the shared budget
(`ratelimit.py`), ask the circuit breaker (`core/backoff.py`), stamp and sign the parameters
(`signing.py`) with the server-time offset, send them (query for GET/DELETE, form body for
POST/PUT, §2.1) with a total timeout, feed `X-MBX-USED-WEIGHT-1M` back to the budget, store a
429/418 `Retry-After` in it, and map the reply with `errors.classify`.

Retry rules (never blindly re-send an order):
- any request is re-sent when the exchange provably did not execute it: after -1021 (once, right
  after resyncing the time offset), after a 429/418 (once its Retry-After has passed, if that is
  within `rate_limit_max_wait_s`), or when the connection could not even be opened;
- an idempotent request (GET, cancels, listenKey, settings) is also retried on 5xx, timeouts and
  dropped connections, with full-jitter exponential back-off, up to `retry_max_attempts`;
- a non-idempotent request (an order placement) that may have executed raises
  `ExecutionUnknownError`: the caller looks the order up by its client id before anything else.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import msgspec
import numpy
import yarl
from multidict import CIMultiDict

from shared import log
from shared.config import ExchangeConfig
from shared.core.backoff import BreakerState, CircuitBreaker, backoff_delay_s
from shared.exchange.errors import (
    CircuitOpenError,
    ExchangeError,
    ExecutionUnknownError,
    RateLimitedError,
    TimestampError,
    TransientError,
    classify,
    execution_unknown,
)
from shared.exchange.ratelimit import WeightBudget, request_weight
from shared.exchange.signing import Signer, encode_params
from shared.schemas.binance import decode_error_reply, decode_server_time_ms

Params = list[tuple[str, str]]

NONE, USER_STREAM, SIGNED = "NONE", "USER_STREAM", "SIGNED"  # security types (§2.2)


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    security: str  # NONE, USER_STREAM or SIGNED
    is_idempotent: bool  # safe to re-send after a failure that may have executed


SERVER_TIME = Endpoint("GET", "/fapi/v1/time", NONE, True)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _retry_after_s(headers: CIMultiDict[str]) -> float:
    value = headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0


class Transport:
    """Sends REST requests for `ExchangeClient`; owns the session, breaker and time offset."""

    def __init__(
        self,
        cfg: ExchangeConfig,
        budget: WeightBudget,
        rng: numpy.random.Generator,
        logger: log.EventLogger,
    ) -> None:
        self.cfg = cfg
        self.budget = budget
        self.signer = Signer(cfg.api_key, cfg.api_secret)
        self.breaker = CircuitBreaker(cfg.breaker_failures, cfg.breaker_cooldown_s)
        self.time_offset_ms = 0  # server time minus local wall time, ms
        self.is_time_synced = False
        self._rng = rng
        self._log = logger
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_s)
        self._sync_warnings = log.Throttle(60.0)

    async def open(self) -> None:
        """Open the HTTP session (idempotent)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        """Close the HTTP session; in-flight requests are cancelled by their owners first."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def server_now_ms(self) -> int:
        """Return the local estimate of the exchange's clock, ms."""
        return _wall_ms() + self.time_offset_ms

    async def sync_time(self) -> int:
        """Measure the server-time offset with `GET /fapi/v1/time`; return it, ms.

        Raises ExchangeError subclasses like any request.
        """
        before = _wall_ms()
        server_ms = decode_server_time_ms(await self.call(SERVER_TIME, []))
        after = _wall_ms()
        self.time_offset_ms = server_ms - (before + after) // 2  # the reply is mid-flight
        self.is_time_synced = True
        self._log.info(
            "exchange_time_synced", offset_ms=self.time_offset_ms, round_trip_ms=after - before
        )
        return self.time_offset_ms

    def warn_time_sync_failed(self, error: Exception) -> None:
        """Log a failed time sync, at most once a minute (with the count held back)."""
        should_log, suppressed = self._sync_warnings.allow(time.monotonic())
        if should_log:
            self._log.warning(
                "exchange_time_sync_failed", error=str(error)[:160], suppressed=suppressed
            )

    async def call(self, endpoint: Endpoint, params: Params, client_id: str = "") -> bytes:
        """Send one request with the retry rules of the module docstring; return the body.

        Raises the ExchangeError subclass named by the recovery; ExecutionUnknownError (with
        `client_id`) when a non-idempotent request may have executed. Cancellation propagates
        at once; a cancelled order placement is as unknown as a timed-out one.
        """
        if endpoint.security == SIGNED and not self.is_time_synced:
            try:
                await self.sync_time()
            except TransientError as e:  # the wall clock is usually close enough; go on
                self.warn_time_sync_failed(e)
        attempt = 0
        has_resynced = False
        while True:
            try:
                return await self._attempt(endpoint, params)
            except TimestampError:
                if has_resynced or endpoint is SERVER_TIME:
                    raise
                has_resynced = True
                await self.sync_time()  # nothing executed: re-send with the new offset
            except CircuitOpenError:
                raise
            except RateLimitedError as e:
                attempt += 1
                too_long = e.retry_after_s > self.cfg.rate_limit_max_wait_s
                if e.http_status == 0 or too_long or attempt >= self.cfg.retry_max_attempts:
                    raise  # the budget already waited as long as allowed, or it is too long
                # The 429 put a block in the budget: the next attempt waits it out there.
            except TransientError as e:
                if e.may_have_executed and not endpoint.is_idempotent:
                    raise ExecutionUnknownError(
                        f"execution unknown, look up client id {client_id!r}: {e.msg}",
                        code=e.code,
                        http_status=e.http_status,
                        method=e.method,
                        path=e.path,
                        client_id=client_id,
                        may_have_executed=True,
                    ) from e
                attempt += 1
                if attempt >= self.cfg.retry_max_attempts:
                    raise
                delay_s = backoff_delay_s(
                    attempt - 1, self.cfg.retry_base_s, self.cfg.retry_cap_s, self._rng
                )
                self._log.warning(
                    "request_retrying",
                    method=endpoint.method,
                    path=endpoint.path,
                    attempt=attempt,
                    delay_s=round(delay_s, 3),
                    http=e.http_status,
                    code=e.code,
                    error=e.msg[:120],
                )
                await asyncio.sleep(delay_s)

    def _prepare(
        self, endpoint: Endpoint, params: Params
    ) -> tuple[str, bytes | None, dict[str, str]]:
        headers: dict[str, str] = {}
        if endpoint.security == NONE:
            return encode_params(params), None, headers
        headers.update(self.signer.key_headers)
        if endpoint.security == SIGNED:
            text = self.signer.signed_params(params, self.server_now_ms(), self.cfg.recv_window_ms)
        else:
            text = encode_params(params)
        if endpoint.method in ("POST", "PUT"):
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return "", text.encode(), headers
        return text, None, headers

    async def _attempt(self, endpoint: Endpoint, params: Params) -> bytes:
        if self._session is None:
            raise RuntimeError("Transport.open() was not called")
        await self.budget.acquire(request_weight(endpoint.method, endpoint.path, dict(params)))
        now_s = time.monotonic()
        if not self.breaker.allow(now_s):
            wait_s = self.breaker.retry_after_s(now_s)
            raise CircuitOpenError(
                f"circuit breaker open after {self.breaker.consecutive_failures} failures; "
                f"next probe in {wait_s:.1f}s",
                method=endpoint.method,
                path=endpoint.path,
                retry_after_s=wait_s,
            )
        is_reported = False
        try:
            status, headers, body = await self._send(endpoint, params)
            error = await self._reply_error(endpoint, status, headers, body)
            self._report(error is None or not error.is_exchange_fault)
            is_reported = True
            if error is not None:
                raise error
            return body
        except TransientError as e:
            if not is_reported:
                self._report(not e.is_exchange_fault)
                is_reported = True
            raise
        finally:
            if not is_reported:  # cancelled or an unexpected error: the probe told nothing
                self.breaker.release_probe(time.monotonic())

    def _report(self, is_healthy: bool) -> None:
        now_s = time.monotonic()
        before = self.breaker.state(now_s)
        if is_healthy:
            self.breaker.record_success(now_s)
        else:
            self.breaker.record_failure(now_s)
        after = self.breaker.state(now_s)
        if after is not before and after is BreakerState.OPEN:
            self._log.warning(
                "circuit_opened",
                failures=self.breaker.consecutive_failures,
                cooldown_s=self.breaker.cooldown_s,
            )
        elif after is not before and after is BreakerState.CLOSED:
            self._log.info("circuit_closed")

    async def _send(
        self, endpoint: Endpoint, params: Params
    ) -> tuple[int, CIMultiDict[str], bytes]:
        assert self._session is not None
        query, body, headers = self._prepare(endpoint, params)
        url = self.cfg.rest_url.rstrip("/") + endpoint.path + (f"?{query}" if query else "")
        method, path = endpoint.method, endpoint.path
        try:
            async with self._session.request(
                method,
                yarl.URL(url, encoded=True),
                data=body,
                headers=headers,
                timeout=self._timeout,
            ) as reply:
                return reply.status, CIMultiDict(reply.headers), await reply.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            # The connection was never opened, so the request never left: safe to re-send.
            raise TransientError(f"cannot connect: {e}", method=method, path=path) from e
        except TimeoutError as e:
            raise TransientError(
                f"no reply within {self.cfg.request_timeout_s}s",
                method=method,
                path=path,
                may_have_executed=True,
            ) from e
        except aiohttp.ClientError as e:  # dropped mid-request: the exchange may have acted
            raise TransientError(
                f"connection failed: {type(e).__name__}: {e}",
                method=method,
                path=path,
                may_have_executed=True,
            ) from e

    async def _reply_error(
        self, endpoint: Endpoint, status: int, headers: CIMultiDict[str], body: bytes
    ) -> ExchangeError | None:
        used = headers.get("X-MBX-USED-WEIGHT-1M")  # case-insensitive (§3.1: seen lower-cased)
        if used is not None and used.isdigit():
            await self.budget.observe(int(used))
        if status == 200 and b'"code"' not in body[:32]:
            return None
        code, msg = 0, body[:200].decode(errors="replace")
        try:
            reply = decode_error_reply(body)
            code = int(reply.code)
            msg = reply.msg
        except (msgspec.DecodeError, ValueError):
            pass  # not Binance's JSON (a proxy's HTML page): keep the text, code 0
        if status == 200 and code >= 0:
            return None  # the documented {"code": 200, "msg": "success"} replies
        cls = classify(status, code, msg)
        retry_after_s = _retry_after_s(headers) if status in (418, 429) else 0.0
        if issubclass(cls, RateLimitedError):
            if retry_after_s <= 0:  # -1015 comes without Retry-After: wait for the window
                retry_after_s = (60_000 - _wall_ms() % 60_000) / 1000
            await self.budget.block(retry_after_s)
            self._log.warning(
                "rate_limited",
                path=endpoint.path,
                http=status,
                code=code,
                retry_after_s=retry_after_s,
            )
        return cls(
            msg,
            code=code,
            http_status=status,
            method=endpoint.method,
            path=endpoint.path,
            retry_after_s=retry_after_s,
            may_have_executed=execution_unknown(cls, status),
        )
