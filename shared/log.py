"""The only logging setup: one line per event on stdout, a fixed prefix, then key=value pairs.

    2025-01-07T12:00:00.123Z INFO trader order_submitted symbol=BTCUSDT qty=0.004

supervisord keeps one file per process. Values with spaces or quotes are quoted; newlines are
escaped so an event is always exactly one line. Fields whose name says secret are redacted here,
as a last line of defence (config objects already redact themselves).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

_SECRET_WORDS = ("secret", "password", "token", "api_key", "apikey", "signature")

_process_name = "slt"


def _format_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\r\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
        return f'"{escaped}"'
    return text


def redact(key: str, value: Any) -> Any:
    """Return value, or its first four characters and '…' when the key names a secret."""
    lowered = key.lower()
    if any(word in lowered for word in _SECRET_WORDS):
        text = str(value)
        return text[:4] + "…" if len(text) > 4 else "…"
    return value


def format_event(level: str, process: str, event: str, fields: dict[str, Any], now_s: float) -> str:
    """Build one log line (pure: the time is an argument)."""
    total_ms = round(now_s * 1000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(total_ms // 1000))
    millis = total_ms % 1000
    parts = [f"{stamp}.{millis:03d}Z", level, process, event]
    parts.extend(f"{key}={_format_value(redact(key, value))}" for key, value in fields.items())
    return " ".join(parts)


class EventLogger:
    """Logger for one process: `log.info("order_filled", symbol="BTCUSDT", qty="0.004")`."""

    def __init__(self, process: str) -> None:
        self.process = process
        self._logger = logging.getLogger(f"slt.{process}")

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            line = format_event(
                logging.getLevelName(level), self.process, event, fields, time.time()
            )
            self._logger.log(level, line)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, event, fields)

    def critical(self, event: str, **fields: Any) -> None:
        self._emit(logging.CRITICAL, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """Log an unexpected exception: the event line, then its traceback (only here)."""
        self._emit(logging.ERROR, event, fields)
        self._logger.error("traceback", exc_info=True)


def setup(process: str, level: str = "INFO") -> EventLogger:
    """Send every log record to stdout, one line each, and return the process's event logger."""
    global _process_name
    _process_name = process
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party loggers speak in their own format; keep only their warnings.
    for noisy in ("aiohttp.access", "websockets", "asyncio", "aiohttp.server"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return EventLogger(process)


def get(process: str | None = None) -> EventLogger:
    """Return an event logger for `process` (default: the one named by setup)."""
    return EventLogger(process or _process_name)


class Throttle:
    """Let a repeated event through once per `interval_s` and count the ones held back.

    Pure (the time is an argument): `allow(now_s)` returns (should_log, suppressed), where
    `suppressed` is how many were held back since the last one let through; log it as a field.
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last_s: float | None = None
        self._suppressed = 0

    def allow(self, now_s: float) -> tuple[bool, int]:
        if self._last_s is not None and now_s - self._last_s < self.interval_s:
            self._suppressed += 1
            return False, self._suppressed
        suppressed, self._suppressed, self._last_s = self._suppressed, 0, now_s
        return True, suppressed

    def reset(self) -> None:
        """Forget the last event (the condition cleared); the next one is logged at once."""
        self._last_s = None
        self._suppressed = 0
