"""Configuration of the reporter: `[reporter]` (daily report, notifications, status page).

Secrets never live in the TOML files: the Telegram bot token, the Discord webhook URL (it embeds
its own token) and the status page token come from the environment (SLT_TELEGRAM_BOT_TOKEN,
SLT_DISCORD_WEBHOOK_URL, SLT_STATUS_TOKEN, applied in `shared.config`) and are left out of repr.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReporterConfig:
    heartbeat_interval_s: float = 1.0  # shm heartbeat
    host: str = "127.0.0.1"  # status page bind address; anything but loopback needs a token
    port: int = 8710  # status page port
    status_token: str = field(default="", repr=False)  # env SLT_STATUS_TOKEN
    status_refresh_s: float = 5.0  # the HTML page reloads itself this often
    report_hour_utc: int = 0  # the daily report of the previous UTC day is made at this hour
    poll_interval_s: float = 2.0  # new trades and alerts looked for this often
    telegram_api_url: str = "https://api.telegram.org"  # tests point it at a local server
    telegram_chat_id: str = ""  # empty: Telegram off
    telegram_bot_token: str = field(default="", repr=False)  # env SLT_TELEGRAM_BOT_TOKEN
    discord_webhook_url: str = field(default="", repr=False)  # env SLT_DISCORD_WEBHOOK_URL
    notify_queue_max: int = 1000  # per channel; full: the oldest notification is dropped
    notify_min_interval_s: float = 1.0  # at least this long between two messages of a channel
    notify_timeout_s: float = 10.0  # deadline of one send
    notify_max_attempts: int = 5  # a message is dropped (and counted) after this many failures
    call_timeout_s: float = 10.0  # deadline of one REST / supervisord call for the status page


def is_loopback(host: str) -> bool:
    """Return whether `host` is a loopback address (or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_reporter(rep: ReporterConfig) -> None:
    """Raise ValueError (one sentence) for an inconsistent [reporter] section."""
    if not is_loopback(rep.host) and not rep.status_token:
        raise ValueError(
            f"config: reporter.host={rep.host} is not loopback, so the status page needs a token"
            " (set SLT_STATUS_TOKEN)"
        )
    if not 0 <= rep.report_hour_utc <= 23:
        raise ValueError(f"config: reporter.report_hour_utc={rep.report_hour_utc} is not 0..23")
    if not 1 <= rep.port <= 65535:
        raise ValueError(f"config: reporter.port={rep.port} is not a port")
    for name in (
        "heartbeat_interval_s",
        "status_refresh_s",
        "poll_interval_s",
        "notify_min_interval_s",
        "notify_timeout_s",
        "call_timeout_s",
    ):
        if getattr(rep, name) <= 0:
            raise ValueError(f"config: reporter.{name}={getattr(rep, name)} must be > 0")
    if rep.notify_queue_max < 1 or rep.notify_max_attempts < 1:
        raise ValueError("config: reporter.notify_queue_max and notify_max_attempts must be >= 1")
