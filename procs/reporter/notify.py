"""Telegram and Discord notifications: bounded queues, one paced sender per channel, retries.

Channels: Telegram when `telegram_chat_id` and `telegram_bot_token` are set (POST
`{telegram_api_url}/bot{token}/sendMessage`, JSON {chat_id, text, disable_web_page_preview});
Discord when `discord_webhook_url` is set (POST it, JSON {content, allowed_mentions}).

Rules:
- `notify()` never blocks and never raises. Each channel has a bounded deque of
  `notify_queue_max`; when full the OLDEST notification is dropped (counted, one WARNING per
  minute with the number suppressed). With no channel configured it is a counted no-op.
- One sender task per channel; two sends of a channel start at least `notify_min_interval_s`
  apart (retries included), one send is bounded by `notify_timeout_s`.
- HTTP 429: wait what the server asks, then resend the same message. Telegram puts it in
  `parameters.retry_after` (integer seconds, https://core.telegram.org/bots/api#responseparameters);
  Discord in the body's `retry_after` (float seconds) and the `Retry-After` header
  (https://discord.com/developers/docs/topics/rate-limits). A 429 is not a failed attempt, but
  after `notify_max_attempts` of them the message is dropped, and one wait is clamped to
  10 minutes, so a hostile server cannot stall a channel forever.
- 5xx, 408, timeouts and connection errors are retried with full-jitter exponential back-off
  (`shared.core.backoff`, base `notify_min_interval_s`, cap 60 s) up to `notify_max_attempts`
  attempts; other 4xx replies cannot succeed by repetition and drop the message at once. A
  dropped message is counted in `stats` and logged as one WARNING.
- Texts longer than the channel's limit (Telegram 4096, Discord 2000, counted in UTF-16 units
  as both services do) are cut and end with "…".
- Secrets: the bot token is in the Telegram URL path and the webhook URL is itself a credential.
  Neither is ever logged: log lines carry the channel name, the HTTP status, or the class name
  of an exception (aiohttp exceptions may embed the URL), never the URL or the exception text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any

import aiohttp
import numpy

from shared.config.reporter import ReporterConfig
from shared.core.backoff import backoff_delay_s
from shared.log import EventLogger, Throttle
from shared.schemas.guard import Alert
from shared.schemas.records import TradeRecord

TELEGRAM_TEXT_LIMIT = 4096  # sendMessage text, after entity parsing
DISCORD_TEXT_LIMIT = 2000  # webhook `content`
_RETRY_CAP_S = 60.0  # longest back-off delay between two failed attempts
_MAX_RETRY_AFTER_S = 600.0  # one 429 wait is clamped to this
_DEFAULT_RETRY_AFTER_S = 1.0  # a 429 that does not say how long to wait
_BODY_LIMIT_BYTES = 65536  # at most this much of a reply is read
_WARNING_INTERVAL_S = 60.0  # repeated warnings of a channel are rate-limited to one per minute
_ELLIPSIS = "…"


@dataclass
class _Channel:
    name: str
    url: str = field(repr=False)  # secret: holds the bot token or is the webhook URL
    limit: int
    payload: Callable[[str], dict[str, Any]]
    queue: deque[tuple[str, str]]  # (kind, text); overflow policy: drop the oldest
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    drop_throttle: Throttle = field(default_factory=lambda: Throttle(_WARNING_INTERVAL_S))
    limit_throttle: Throttle = field(default_factory=lambda: Throttle(_WARNING_INTERVAL_S))
    last_start_s: float | None = None  # monotonic start of the previous send
    dropped_key: str = ""  # stats key, built once: notify() is on the callers' hot path

    def __post_init__(self) -> None:
        self.dropped_key = f"{self.name}_dropped"


@dataclass(frozen=True)
class _Outcome:
    is_sent: bool = False
    retry_after_s: float | None = None  # set for a 429
    is_retryable: bool = False
    status: int | None = None  # HTTP status, None when no reply came
    error: str = ""  # exception class name when no reply came


class Notifier:
    """Deliver notifications to Telegram and/or Discord; `async with` it, then run `run()`."""

    def __init__(
        self,
        cfg: ReporterConfig,
        logger: EventLogger,
        rng: numpy.random.Generator | None = None,
    ) -> None:
        self._cfg = cfg
        self._log = logger
        self._rng = rng if rng is not None else numpy.random.default_rng()
        self._session: aiohttp.ClientSession | None = None
        self._channels: list[_Channel] = []
        if cfg.telegram_chat_id and cfg.telegram_bot_token:
            chat_id = cfg.telegram_chat_id
            self._channels.append(
                _Channel(
                    name="telegram",
                    url=f"{cfg.telegram_api_url.rstrip('/')}/bot{cfg.telegram_bot_token}"
                    "/sendMessage",
                    limit=TELEGRAM_TEXT_LIMIT,
                    payload=lambda text: {
                        "chat_id": chat_id,
                        "text": text,
                        "disable_web_page_preview": True,
                    },
                    queue=deque(maxlen=cfg.notify_queue_max),
                )
            )
        if cfg.discord_webhook_url:
            self._channels.append(
                _Channel(
                    name="discord",
                    url=cfg.discord_webhook_url,
                    limit=DISCORD_TEXT_LIMIT,
                    # No mention in a message may ping anyone (an alert detail is free text).
                    payload=lambda text: {"content": text, "allowed_mentions": {"parse": []}},
                    queue=deque(maxlen=cfg.notify_queue_max),
                )
            )
        self.stats: dict[str, int] = {"skipped": 0}
        for channel in self._channels:
            for what in ("sent", "dropped", "failed", "rate_limited"):
                self.stats[f"{channel.name}_{what}"] = 0

    @property
    def channels(self) -> tuple[str, ...]:
        """Return the names of the configured channels ("telegram", "discord")."""
        return tuple(channel.name for channel in self._channels)

    async def __aenter__(self) -> Notifier:
        timeout = aiohttp.ClientTimeout(total=self._cfg.notify_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def notify(self, kind: str, text: str) -> None:
        """Queue `text` on every channel; never blocks or raises (a full queue drops its oldest)."""
        if not self._channels:
            self.stats["skipped"] += 1
            return
        item = (kind, text)
        for channel in self._channels:
            queue = channel.queue
            if len(queue) == self._cfg.notify_queue_max:
                self._count_drop(channel, queue[0][0])
            queue.append(item)  # a deque with maxlen drops the oldest itself
            channel.wakeup.set()

    def _count_drop(self, channel: _Channel, kind: str) -> None:
        self.stats[channel.dropped_key] += 1
        should_log, suppressed = channel.drop_throttle.allow(time.monotonic())
        if should_log:
            self._log.warning(
                "notification_dropped",
                channel=channel.name,
                kind=kind,
                reason="queue_full",
                queue_max=self._cfg.notify_queue_max,
                suppressed=suppressed,
            )

    async def run(self) -> None:
        """Send queued notifications until cancelled, one sender task per channel.

        Needs the `async with` block. With no channel configured it idles until cancelled.
        Cancellation: a message in flight is abandoned and run() returns.
        """
        if self._session is None:
            raise RuntimeError("notify: run() needs the Notifier's `async with` block")
        self._log.info("notifier_started", channels=",".join(self.channels) or "none")
        try:
            if not self._channels:
                await asyncio.Event().wait()
            async with asyncio.TaskGroup() as group:
                for channel in self._channels:
                    group.create_task(self._send_loop(channel), name=f"notify-{channel.name}")
        except asyncio.CancelledError:
            self._log.info("notifier_stopped", **self.stats)

    async def _send_loop(self, channel: _Channel) -> None:
        while True:
            while not channel.queue:
                channel.wakeup.clear()
                await channel.wakeup.wait()
            kind, text = channel.queue.popleft()
            try:
                await self._deliver(channel, kind, text)
            except Exception as e:  # one bad message must not end the channel: drop it, go on
                self._drop(channel, kind, "unexpected_error", error=type(e).__name__)

    async def _deliver(self, channel: _Channel, kind: str, text: str) -> None:
        text = truncate(text, channel.limit)
        failures = 0
        rate_limits = 0
        while True:
            await self._wait_for_turn(channel)
            outcome = await self._attempt(channel, text)
            if outcome.is_sent:
                self.stats[f"{channel.name}_sent"] += 1
                self._log.debug("notification_sent", channel=channel.name, kind=kind)
                return
            if outcome.retry_after_s is not None:
                self.stats[f"{channel.name}_rate_limited"] += 1
                rate_limits += 1
                if rate_limits >= self._cfg.notify_max_attempts:
                    self._drop(channel, kind, "rate_limited", status=429)
                    return
                should_log, suppressed = channel.limit_throttle.allow(time.monotonic())
                if should_log:
                    self._log.warning(
                        "notification_rate_limited",
                        channel=channel.name,
                        status=429,
                        retry_after_s=round(outcome.retry_after_s, 3),
                        suppressed=suppressed,
                    )
                await asyncio.sleep(outcome.retry_after_s)
                continue
            failures += 1
            detail: dict[str, Any] = (
                {"status": outcome.status} if outcome.status is not None else {}
            )
            if outcome.error:
                detail["error"] = outcome.error
            if not outcome.is_retryable:
                self._drop(channel, kind, "rejected", **detail)
                return
            if failures >= self._cfg.notify_max_attempts:
                self._drop(channel, kind, "attempts_exhausted", attempts=failures, **detail)
                return
            delay_s = backoff_delay_s(
                failures - 1, self._cfg.notify_min_interval_s, _RETRY_CAP_S, self._rng
            )
            self._log.debug(
                "notification_retrying",
                channel=channel.name,
                attempt=failures,
                delay_s=round(delay_s, 3),
                **detail,
            )
            await asyncio.sleep(delay_s)

    async def _wait_for_turn(self, channel: _Channel) -> None:
        """Sleep until `notify_min_interval_s` has passed since the channel's previous send."""
        if channel.last_start_s is not None:
            wait_s = channel.last_start_s + self._cfg.notify_min_interval_s - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
        channel.last_start_s = time.monotonic()

    async def _attempt(self, channel: _Channel, text: str) -> _Outcome:
        """POST one message; map the reply or the failure to an outcome (never raises I/O errors).

        Timeout: `notify_timeout_s` (the session's total timeout) becomes a retryable outcome.
        """
        assert self._session is not None
        try:
            async with self._session.post(channel.url, json=channel.payload(text)) as response:
                status = response.status
                if 200 <= status < 300:
                    # Delivered. The reply is read only so the connection can be reused; a
                    # failure reading it must not send the message twice.
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        await response.content.read(_BODY_LIMIT_BYTES)
                    return _Outcome(is_sent=True, status=status)
                body = await response.content.read(_BODY_LIMIT_BYTES)
                if status == 429:
                    header = response.headers.get("Retry-After")
                    return _Outcome(retry_after_s=retry_after_s(body, header), status=status)
                return _Outcome(is_retryable=status >= 500 or status == 408, status=status)
        except (aiohttp.ClientError, TimeoutError) as e:
            # The exception's text may hold the URL (a secret): keep only its class name.
            return _Outcome(is_retryable=True, error=type(e).__name__)

    def _drop(self, channel: _Channel, kind: str, reason: str, **detail: Any) -> None:
        self.stats[f"{channel.name}_failed"] += 1
        self._log.warning(
            "notification_failed", channel=channel.name, kind=kind, reason=reason, **detail
        )


def retry_after_s(body: bytes, header: str | None) -> float:
    """Return the seconds a 429 reply asks to wait, clamped to [0, 600]; 1 s when it says none.

    Telegram: {"parameters": {"retry_after": N}}; Discord: {"retry_after": 1.5} and the
    `Retry-After` header (seconds). The body wins over the header.
    """
    value: Any = None
    try:
        decoded = json.loads(body) if body else None
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        parameters = decoded.get("parameters")
        if isinstance(parameters, dict):
            value = parameters.get("retry_after")
        if value is None:
            value = decoded.get("retry_after")
    if value is None and header is not None:
        value = header
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return _DEFAULT_RETRY_AFTER_S
    if seconds != seconds:  # NaN
        return _DEFAULT_RETRY_AFTER_S
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)


def truncate(text: str, limit: int) -> str:
    """Return `text` cut to `limit` UTF-16 code units, ending with "…" when it was cut."""
    if len(text) <= limit // 2 or len(text.encode("utf-16-le")) // 2 <= limit:
        return text
    kept: list[str] = []
    units = 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if units + width > limit - 1:  # leave room for the ellipsis (one unit)
            break
        kept.append(char)
        units += width
    return "".join(kept) + _ELLIPSIS


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms // 1000))


def _direction(side: str) -> str:
    return {"BUY": "LONG", "SELL": "SHORT"}.get(side, side)


def _money(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _trade_head(verb: str, t: TradeRecord) -> str:
    virtual = " (virtual)" if t.is_virtual else ""
    return f"{verb}{virtual} {t.symbol} {_direction(t.side)} qty {t.quantity:f}"


def alert_text(alert: Alert) -> str:
    """Return the alert as two lines: kind, symbol, source and time; then the detail."""
    symbol = f" {alert.symbol}" if alert.symbol else ""
    return f"ALERT {alert.kind}{symbol} from {alert.source} at {_utc(alert.ts_ms)}\n{alert.detail}"


def trade_opened_text(t: TradeRecord) -> str:
    """Return an opened trade as two lines: symbol, side, quantity, entry; then id and model."""
    return (
        f"{_trade_head('OPENED', t)} at {t.entry_price:f}\n"
        f"trade {t.trade_id} at {_utc(t.entry_ms)}, confidence {t.confidence:.2f},"
        f" model v{t.model_version}"
    )


def trade_closed_text(t: TradeRecord) -> str:
    """Return a closed trade as two lines: symbol, side, quantity, prices, reason; then PnL."""
    exit_price = "n/a" if t.exit_price is None else f"{t.exit_price:f}"
    reason = t.exit_reason or "unknown"
    held = ""
    if t.exit_ms is not None:
        minutes = max(0, t.exit_ms - t.entry_ms) // 60_000
        held = f", held {minutes // 60}h{minutes % 60:02d}m"
    outcome = "" if t.is_win is None else (" (win)" if t.is_win else " (loss)")
    return (
        f"{_trade_head('CLOSED', t)} entry {t.entry_price:f} exit {exit_price} reason {reason}\n"
        f"net PnL {_money(t.net_pnl_usdt)} USDT{outcome} (gross {_money(t.gross_pnl_usdt)},"
        f" fees {_money(t.fees_usdt)}, funding {_money(t.funding_usdt)}){held}"
    )
