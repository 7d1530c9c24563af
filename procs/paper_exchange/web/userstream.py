"""The paper account's listenKey: creation, keep-alive, deletion, expiry (BINANCE-API.md §6.1-6.3).

Pure apart from key generation (`secrets`, injectable): every call takes the real time `real_ms`.

Validity is measured in REAL (wall) milliseconds, not simulated ones. Clients keep their key alive
on wall-clock timers (ccxt every 20 min, python-binance every 5 min, §6.1); with simulated time at
`--speed 60` a 60-minute validity would pass in one real minute and keys would expire between
keep-alives, which no real client expects. Event times (`E`) stay simulated, like every other event.

Binance semantics kept here (§6.1, §11 item 12): one key per account; POST returns the same key
while it is active and extends it; PUT extends it (the key parameter is optional) and answers
-1125 for an unknown or expired key; DELETE invalidates it. An expired or deleted key is forgotten,
so it is "unknown" from then on. Keys that expired (by time or by `expire_all`) are queued until
`take_expired` hands them to the stream hub, which sends `listenKeyExpired` to their connections.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from typing import Any

LISTEN_KEY_LENGTH = 64  # §6.1 example key length
_ALPHABET = string.ascii_letters + string.digits

UNKNOWN_KEY_CODE = -1125
UNKNOWN_KEY_MSG = "This listenKey does not exist."


class UnknownListenKeyError(Exception):
    """PUT/DELETE named a key that does not exist or has expired (Binance -1125, HTTP 400)."""


def random_listen_key() -> str:
    """Return a fresh 64-character alphanumeric listenKey."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(LISTEN_KEY_LENGTH))


def listen_key_expired_event(key: str, now_ms: int) -> dict[str, Any]:
    """Build the `listenKeyExpired` event; `E` is a string on the wire (§6.3, §4)."""
    return {"e": "listenKeyExpired", "E": str(now_ms), "listenKey": key}


class ListenKeys:
    """The account's one listenKey and its expiry, in real milliseconds."""

    def __init__(
        self,
        validity_s: float,
        state: dict[str, Any] | None = None,
        new_key: Callable[[], str] = random_listen_key,
    ) -> None:
        """Start empty, or from `to_state()` output; `validity_s` is real seconds per keep-alive."""
        self._validity_ms = int(validity_s * 1000)
        self._new_key = new_key
        self._key: str | None = None
        self._expires_real_ms = 0
        self._expired: list[str] = []  # expired, not yet announced to connections
        if state is not None and state.get("key"):
            self._key = str(state["key"])
            self._expires_real_ms = int(state["expires_real_ms"])

    @classmethod
    def from_state(cls, state: dict[str, Any], validity_s: float) -> ListenKeys:
        """Rebuild from `to_state()` output; a key that expired while the process was down is
        announced as expired on the first `take_expired`."""
        return cls(validity_s, state)

    def to_state(self) -> dict[str, Any]:
        """Return the JSON-able state: the key and its real expiry time (ms)."""
        return {"key": self._key, "expires_real_ms": self._expires_real_ms}

    def _expire_due(self, real_ms: int) -> None:
        if self._key is not None and real_ms >= self._expires_real_ms:
            self._expired.append(self._key)
            self._key = None

    def active(self, real_ms: int) -> str | None:
        """Return the active key, or None when there is none (never created, expired, deleted)."""
        self._expire_due(real_ms)
        return self._key

    def open(self, real_ms: int) -> str:
        """POST: return the active key extended by the validity, or a new key."""
        self._expire_due(real_ms)
        if self._key is None:
            self._key = self._new_key()
        self._expires_real_ms = real_ms + self._validity_ms
        return self._key

    def keepalive(self, key: str | None, real_ms: int) -> str:
        """PUT: extend the active key (`key` may be omitted); raise UnknownListenKeyError."""
        self._expire_due(real_ms)
        if self._key is None or (key and key != self._key):
            raise UnknownListenKeyError(key or "")
        self._expires_real_ms = real_ms + self._validity_ms
        return self._key

    def close(self, key: str | None, real_ms: int) -> str:
        """DELETE: invalidate the active key and return it; raise UnknownListenKeyError."""
        self._expire_due(real_ms)
        if self._key is None or (key and key != self._key):
            raise UnknownListenKeyError(key or "")
        closed, self._key = self._key, None
        return closed

    def expire_all(self, now_ms: int | None = None) -> list[str]:
        """Expire the active key at once (fault injection); return the keys expired.

        `now_ms` is accepted for the server's call signature and unused: expiry is immediate.
        """
        if self._key is None:
            return []
        expired, self._key = self._key, None
        self._expired.append(expired)
        return [expired]

    def take_expired(self, real_ms: int) -> list[str]:
        """Return the keys that expired since the last call (by time or `expire_all`), once."""
        self._expire_due(real_ms)
        expired, self._expired = self._expired, []
        return expired
