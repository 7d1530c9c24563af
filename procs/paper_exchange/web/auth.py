"""Request parameters and authentication exactly as Binance does them (BINANCE-API.md §2.1-§2.5).

Pure: the server passes the raw query string, the raw body, the header value and both clocks in.
Owns nothing. Checks raise the engine's `ApiError(http_status, code, msg)` (errors.py) with
Binance's code and message, so the server has one error reply for both.

Parameters (§2.1): query string and `application/x-www-form-urlencoded` body are merged, the query
wins on a repeated key, `+` is a space, key order is free, and an empty body with
`Content-Type: application/json` (binance-futures-connector) is simply no body.

Signature (§2.3): HMAC-SHA256 with the secret over the exact received query string concatenated
with the exact received body (no `&` between them), each with the `signature=` pair and its joining
`&` removed; the hex comparison ignores case. If that fails, the HMAC of the percent-decoded string
is accepted too: python-binance signs the unencoded `k=v&…` string and then lets `requests`
percent-encode the body, so its signatures only match after decoding (§2.1, §2.3 leniency).

Timing (§2.4): valid when `timestamp < server + 1000` and `server - timestamp <= recvWindow`
(default 5000, at most 60000 else -1131). `server` may be EITHER the simulated clock or the wall
clock: at `--speed 60` the simulated clock (what `/fapi/v1/time` answers) runs ahead of the wall
clock, so a client that syncs its offset with `/fapi/v1/time` (ccxt, python-binance) stamps
requests in simulated time, while one that does not (the connector) stamps them in wall time.
Both are honest clients and both are served; a stale or future stamp in both clocks is -1021.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, unquote, unquote_plus

from procs.paper_exchange.errors import ApiError, missing_param

DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60000
FUTURE_TOLERANCE_MS = 1000  # §2.4: timestamp < serverTime + 1000

_KEY_FORMAT = re.compile(r"^[A-Za-z0-9_\-]{1,256}$")
_DIGITS = re.compile(r"^[0-9]{1,20}$")
_RECV_WINDOW = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,3})?$")

MSG_KEY_FORMAT = "API-key format invalid."
MSG_BAD_SIGNATURE = "Signature for this request is not valid."
MSG_OUTSIDE_WINDOW = "Timestamp for this request is outside of the recvWindow."
MSG_AHEAD = "Timestamp for this request was 1000ms ahead of the server's time."


def decode_body(body: bytes) -> str:
    """Decode a raw body for parsing and signing; undecodable bytes survive the round trip."""
    return body.decode("utf-8", "surrogateescape")


def parse_params(query: str, body: str) -> dict[str, str]:
    """Merge query-string and form-body parameters; the query wins, the first of repeats wins."""
    params: dict[str, str] = {}
    for source in (query, body):
        for key, value in parse_qsl(source, keep_blank_values=True, errors="replace"):
            params.setdefault(key, value)
    return params


def _strip_signature(raw: str) -> tuple[str, str | None]:
    """Remove every `signature=` pair (and its joining `&`); return the rest and the first value."""
    if "signature=" not in raw:
        return raw, None
    kept: list[str] = []
    signature: str | None = None
    for pair in raw.split("&"):
        key, _, value = pair.partition("=")
        if key == "signature":
            if signature is None:
                signature = value
        else:
            kept.append(pair)
    return "&".join(kept), signature


def signed_payload(query: str, body: str) -> tuple[str, str | None]:
    """Return (query + body without the signature pair, the signature or None); query wins."""
    query_rest, query_sig = _strip_signature(query)
    body_rest, body_sig = _strip_signature(body)
    signature = query_sig if query_sig is not None else body_sig
    return query_rest + body_rest, signature


def hmac_hex(secret: str, payload: str) -> str:
    """Return the lower-case hex HMAC-SHA256 of payload under secret."""
    data = payload.encode("utf-8", "surrogateescape")
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def is_signature_valid(secret: str, payload: str, signature: str) -> bool:
    """Compare signature (any hex case) with the HMAC of payload or of its percent-decoded forms."""
    wanted = unquote(signature).strip().lower()
    candidates = [payload]
    if "%" in payload or "+" in payload:
        candidates += [unquote(payload), unquote_plus(payload)]
    return any(hmac.compare_digest(hmac_hex(secret, c), wanted) for c in dict.fromkeys(candidates))


def check_api_key(header: str | None, api_key: str, ip: str) -> None:
    """Raise -2014 (missing or malformed key) or -2015 (unknown key), both HTTP 401 (§2.5)."""
    if header is not None and hmac.compare_digest(header.encode(), api_key.encode()):
        return
    if not header or not _KEY_FORMAT.match(header):
        # §2.5: HTTP status of -2014 unconfirmed (401 or 400); 401 like the other key failures.
        raise ApiError(401, -2014, MSG_KEY_FORMAT)
    raise ApiError(401, -2015, f"Invalid API-key, IP, or permissions for action, request ip: {ip}")


def check_timestamp(params: dict[str, str], server_times_ms: Sequence[int]) -> None:
    """Apply Binance's recvWindow rule against any of the server times.

    Raises ApiError -1102 (timestamp), -1100 (recvWindow malformed), -1131 (recvWindow > 60000)
    or -1021 (outside the window of every server time).
    """
    timestamp_text = params.get("timestamp", "")
    if not _DIGITS.match(timestamp_text):
        raise missing_param("timestamp")
    timestamp = int(timestamp_text)
    window_text = params.get("recvWindow")
    recv_window: float = DEFAULT_RECV_WINDOW_MS
    if window_text is not None:
        if not _RECV_WINDOW.match(window_text):
            raise ApiError(
                400,
                -1100,
                "Illegal characters found in parameter 'recvWindow'; "
                "legal range is '^[0-9]{1,20}$'.",
            )
        recv_window = float(window_text)
    if recv_window > MAX_RECV_WINDOW_MS:
        raise ApiError(400, -1131, f"recvWindow must be less than {MAX_RECV_WINDOW_MS}.")
    is_ahead_everywhere = True
    for server_ms in server_times_ms:
        is_ahead = timestamp >= server_ms + FUTURE_TOLERANCE_MS
        if not is_ahead and server_ms - timestamp <= recv_window:
            return
        is_ahead_everywhere = is_ahead_everywhere and is_ahead
    raise ApiError(400, -1021, MSG_AHEAD if is_ahead_everywhere else MSG_OUTSIDE_WINDOW)


def authenticate_signed(
    key_header: str | None,
    query: str,
    body: str,
    params: dict[str, str],
    api_key: str,
    api_secret: str,
    server_times_ms: Sequence[int],
    ip: str,
) -> None:
    """Run the TRADE/USER_DATA checks in Binance's order: key, timestamp, window, signature.

    Raises ApiError with -2014/-2015 (401), -1102, -1100, -1131, -1021 or -1022 (400).
    """
    check_api_key(key_header, api_key, ip)
    payload, signature = signed_payload(query, body)
    if not params.get("timestamp"):
        raise missing_param("timestamp")
    if not signature:
        raise missing_param("signature")
    check_timestamp(params, server_times_ms)
    if not is_signature_valid(api_secret, payload, signature):
        raise ApiError(400, -1022, MSG_BAD_SIGNATURE)
