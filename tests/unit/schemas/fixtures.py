"""Loading of the real Binance payloads in tests/fixtures/binance/ (see its PROVENANCE.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "binance"
CCXT_FILE = FIXTURES / "ccxt-extracted" / "ccxt_binance_linear_httpResponses.json"
# PROVENANCE.md §3: ccxt's static-test harness stringifies these integer fields; on the wire
# they are JSON numbers. `restore_ccxt_integers` undoes exactly that and nothing else.
CCXT_STRINGIFIED = frozenset(
    {
        "orderId",
        "time",
        "updateTime",
        "adl",
        "goodTillDate",
        "lastUpdateId",
        "E",
        "T",
        "feeTier",
        "tradeGroupId",
        "id",
    }
)


def raw(relative: str) -> bytes:
    """Return the bytes of one fixture file."""
    return (FIXTURES / relative).read_bytes()


def ccxt_entry(method: str, endpoint: str) -> Any:
    """Return the httpResponse of the ccxt entry with this method and inferred endpoint."""
    entries = json.loads(CCXT_FILE.read_text())["entries"]
    (entry,) = [
        e for e in entries if e["ccxt_method"] == method and e["endpoint_inferred"] == endpoint
    ]
    return entry["httpResponse"]


def restore_ccxt_integers(value: Any) -> Any:
    """Turn the harness's stringified integers back into the JSON numbers Binance sends."""
    if isinstance(value, list):
        return [restore_ccxt_integers(v) for v in value]
    if isinstance(value, dict):
        return {
            k: int(v)
            if k in CCXT_STRINGIFIED and isinstance(v, str) and v.lstrip("-").isdigit()
            else restore_ccxt_integers(v)
            for k, v in value.items()
        }
    return value


def as_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()
