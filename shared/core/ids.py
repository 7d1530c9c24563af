"""Deterministic client order ids: the same intent gives the same id, also after a restart.

    client_order_id("8812", "entry", 0)  ->  "slt-8812-entry-0"

Binance accepts `^[\\.A-Z\\:/a-z0-9_-]{1,36}$` for `newClientOrderId` and `clientAlgoId`
(BINANCE-API.md §3.4 -4015, §5.9, §5.10) and refuses a client id that is already open (-4116), so
re-sending a placement after a restart cannot double an open order, and reconciliation finds the
order by the id it recomputes (DESIGN-RULES rule 18).

A signal id that does not fit (too long, or with characters outside `[A-Za-z0-9_]`) is replaced
by `.` + the first hex digits of its SHA-256. The leading `.` never starts a kept signal id, so a
shortened id can never equal a kept one; two different long ids collide only if their hashes
share the first 13+ hex digits (52+ bits).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

PREFIX = "slt"
MAX_LENGTH = 36  # Binance's limit for newClientOrderId / clientAlgoId
MAX_ATTEMPT = 999
BINANCE_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_PURPOSE = re.compile(r"^[a-z][a-z0-9]{0,9}$")  # e.g. entry, stop, tp, exit, flat
_KEPT_SIGNAL = re.compile(r"^[A-Za-z0-9_]+$")
_HASH_MARK = "."
_MIN_HASH_DIGITS = 13
_OURS = re.compile(r"^slt-(?P<signal>.+)-(?P<purpose>[a-z][a-z0-9]{0,9})-(?P<attempt>\d{1,3})$")


@dataclass(frozen=True, slots=True)
class ClientIdParts:
    signal: str  # the signal id as it appears in the client id (shortened ones start with ".")
    purpose: str
    attempt: int


def client_order_id(signal_id: str, purpose: str, attempt: int) -> str:
    """Return `slt-<signal_id>-<purpose>-<attempt>`, at most 36 characters.

    Raises ValueError for an empty signal id, a purpose outside `[a-z][a-z0-9]{0,9}` or an
    attempt outside 0..999.
    """
    if not signal_id:
        raise ValueError("client id: signal_id is empty")
    if not _PURPOSE.match(purpose):
        raise ValueError(f"client id: purpose={purpose!r} is not 1-10 of [a-z0-9] from a letter")
    if not 0 <= attempt <= MAX_ATTEMPT:
        raise ValueError(f"client id: attempt={attempt} is outside 0..{MAX_ATTEMPT}")
    tail = f"-{purpose}-{attempt}"
    room = MAX_LENGTH - len(PREFIX) - 1 - len(tail)
    signal = signal_id
    if len(signal_id) > room or not _KEPT_SIGNAL.match(signal_id):
        digest = hashlib.sha256(signal_id.encode()).hexdigest()
        signal = _HASH_MARK + digest[: room - len(_HASH_MARK)]
        # The widest purpose and attempt leave room for 16 digits; this is a guard, not a case.
        assert room - len(_HASH_MARK) >= _MIN_HASH_DIGITS
    cid = f"{PREFIX}-{signal}{tail}"
    assert BINANCE_CLIENT_ID.match(cid), cid
    return cid


def parse_client_order_id(client_id: str) -> ClientIdParts | None:
    """Return the parts of one of our client ids, or None for an id we did not make."""
    match = _OURS.match(client_id)
    if match is None or len(client_id) > MAX_LENGTH:
        return None
    return ClientIdParts(match["signal"], match["purpose"], int(match["attempt"]))


def is_ours(client_id: str) -> bool:
    """Return whether the client id was made by `client_order_id` (reconciliation adopts these)."""
    return parse_client_order_id(client_id) is not None
