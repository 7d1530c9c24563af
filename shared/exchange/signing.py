"""HMAC-SHA256 signing of Binance requests (BINANCE-API.md §2.3), written from Binance's docs.

Binance signs `totalParams` = the query string followed directly by the request body, exactly as
they travel (no `&` between them, `signature` itself excluded), and expects the lower-case hex
HMAC-SHA256 under the API secret. The client therefore encodes the parameters once, signs that
text, and sends that very text: `signed_params` returns it with `signature=` appended, and the
transport puts it in the query (GET, DELETE) or in a form body (POST, PUT), never re-encoding it.

The secret lives only inside `Signer`, whose `repr` shows nothing of it; nothing here logs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlencode


def hmac_sha256_hex(secret: str, total_params: str) -> str:
    """Return the lower-case hex HMAC-SHA256 of `total_params` under `secret`."""
    return hmac.new(secret.encode(), total_params.encode(), hashlib.sha256).hexdigest()


def encode_params(params: Iterable[tuple[str, str]]) -> str:
    """Return `k=v&…` percent-encoded as sent (spaces as `+`, like a form body), order kept."""
    return urlencode(list(params))


class Signer:
    """Holds the API key and secret; signs parameter strings. Redacts itself in `repr`."""

    def __init__(self, api_key: str, api_secret: str) -> None:
        self.api_key = api_key
        self._secret = api_secret

    def __repr__(self) -> str:
        shown = self.api_key[:4] + "…" if self.api_key else ""
        return f"Signer(api_key={shown!r})"

    @property
    def key_headers(self) -> dict[str, str]:
        """Return the `X-MBX-APIKEY` header signed and USER_STREAM requests carry."""
        return {"X-MBX-APIKEY": self.api_key}

    def signature(self, total_params: str) -> str:
        """Return the signature of `total_params` (query string + body, as sent)."""
        return hmac_sha256_hex(self._secret, total_params)

    def signed_params(
        self, params: Iterable[tuple[str, str]], timestamp_ms: int, recv_window_ms: int
    ) -> str:
        """Return the encoded parameters plus `recvWindow`, `timestamp` and `signature`.

        The whole string goes into one place (query or body), so it is `totalParams` itself.
        """
        pairs = [*params, ("recvWindow", str(recv_window_ms)), ("timestamp", str(timestamp_ms))]
        text = encode_params(pairs)
        return f"{text}&signature={self.signature(text)}"
