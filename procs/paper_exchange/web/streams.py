"""Stream names, entry-point routing and the live control protocol of the market streams.

Pure: no sockets, no clock, no event loop. `ws.py` feeds it the text of each incoming frame and
sends back what it returns (sans-I/O, like the `websockets` protocol layer).

Facts are from BINANCE-API.md §7 (section numbers below refer to it):
- §7.1 stream names are `<symbol>@<kind>` with the symbol lower-case; after the 2026 URL split each
  name belongs to one category (public, market, private) and an entry point serves only its own
  category. The legacy root (`/ws`, `/stream`) serves every category here, on purpose: Binance
  now gives it public data only, but the deprecated connector still connects there and subscribes
  klines and its listenKey (§8.2), and a paper exchange that starved it would only break tests.
- §7.2 the control messages and their replies; ids are echoed with their JSON type unchanged.
- Unknown or unserved stream names are accepted silently and get no data: ccxt connects to
  `/market/ws/0`, a bogus stream path, and relies on that.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Category = Literal["public", "market", "private"]
Entry = Literal["root", "public", "market", "private"]

# §7.1: "Max 1024 streams per connection" (docs 2026; ccxt still caps itself at 200).
MAX_STREAMS_PER_CONNECTION = 1024

# §5.3 kline intervals; the same set is valid in stream names.
KLINE_INTERVALS = frozenset(
    ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M")
)
CONTRACT_TYPES = frozenset(("perpetual", "current_quarter", "next_quarter"))
MARK_PRICE_PERIODS_MS = {"": 3000, "@3s": 3000, "@1s": 1000}

METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")


@dataclass(frozen=True, slots=True)
class Kline:
    symbol: str  # upper-case, e.g. BTCUSDT
    interval: str  # e.g. 1m


@dataclass(frozen=True, slots=True)
class ContinuousKline:
    pair: str  # upper-case, e.g. BTCUSDT
    contract_type: str  # upper-case, e.g. PERPETUAL
    interval: str


@dataclass(frozen=True, slots=True)
class MarkPrice:
    symbol: str
    period_ms: int  # 3000 (default, `@3s`) or 1000 (`@1s`), simulated time


@dataclass(frozen=True, slots=True)
class MarkPriceAll:
    period_ms: int  # `!markPrice@arr`: a JSON array with one markPriceUpdate per symbol


@dataclass(frozen=True, slots=True)
class BookTicker:
    symbol: str


@dataclass(frozen=True, slots=True)
class AggTrade:
    symbol: str


@dataclass(frozen=True, slots=True)
class Unserved:
    """A name the paper exchange sends nothing for: a real stream it does not simulate (depth,
    tickers, forceOrder…), a listenKey (served by the user stream, not by this parser), or junk."""

    category: Category | None  # None: not a market-stream name (maybe a listenKey, maybe junk)


Stream = Kline | ContinuousKline | MarkPrice | MarkPriceAll | BookTicker | AggTrade | Unserved

_SYMBOL = r"([a-z0-9]+)"
_KLINE = re.compile(_SYMBOL + r"@kline_(\w+)")
_CONTINUOUS = re.compile(_SYMBOL + r"_([a-z_]+)@continuousKline_(\w+)")
_MARK = re.compile(_SYMBOL + r"@markPrice(@1s|@3s)?")
_MARK_ALL = re.compile(r"!markPrice@arr(@1s|@3s)?")
_BOOK = re.compile(_SYMBOL + r"@bookTicker")
_AGG = re.compile(_SYMBOL + r"@aggTrade")
# §7.1 routing table: what the paper exchange does not serve, by category.
_PUBLIC_UNSERVED = re.compile(r"([a-z0-9]+@(depth\w*|rpiDepth\w*|trade)(@\w+)?|!bookTicker)")
_MARKET_UNSERVED = re.compile(
    r"([a-z0-9_]+@(miniTicker|ticker|forceOrder|compositeIndex|assetIndex|kline_\w+"
    r"|continuousKline_\w+|markPrice@\w+|ticker_\w+)|!(miniTicker|ticker|forceOrder|assetIndex)@arr"
    r"|!contractInfo|tradingSession)"
)


def parse_stream(name: str) -> Stream:
    """Parse one stream name as a client writes it; anything unrecognised is `Unserved`.

    Symbols are matched case-insensitively (Binance wants lower-case, a lenient twin serves both);
    the camel-case kind (`continuousKline`, `markPrice`, `bookTicker`, `aggTrade`) is exact.
    """
    if "@" in name and not name.startswith("!"):
        symbol_part, _, rest = name.partition("@")
        name = symbol_part.lower() + "@" + rest
    if m := _KLINE.fullmatch(name):
        if m[2] in KLINE_INTERVALS:
            return Kline(m[1].upper(), m[2])
    elif m := _CONTINUOUS.fullmatch(name):
        if m[3] in KLINE_INTERVALS and m[2] == "perpetual":
            return ContinuousKline(m[1].upper(), m[2].upper(), m[3])
    elif m := _MARK.fullmatch(name):
        return MarkPrice(m[1].upper(), MARK_PRICE_PERIODS_MS[m[2] or ""])
    elif m := _MARK_ALL.fullmatch(name):
        return MarkPriceAll(MARK_PRICE_PERIODS_MS[m[1] or ""])
    elif m := _BOOK.fullmatch(name):
        return BookTicker(m[1].upper())
    elif m := _AGG.fullmatch(name):
        return AggTrade(m[1].upper())
    if _PUBLIC_UNSERVED.fullmatch(name):
        return Unserved("public")
    if _MARKET_UNSERVED.fullmatch(name):
        return Unserved("market")
    return Unserved(None)


def stream_category(stream: Stream) -> Category | None:
    """Return the entry point that serves `stream` after the 2026 split (§7.1), None if none."""
    if isinstance(stream, BookTicker):
        return "public"
    if isinstance(stream, Unserved):
        return stream.category
    return "market"


def is_served_on(entry: Entry, category: Category | None) -> bool:
    """Whether a connection opened on `entry` gets data of `category` (the root gets all)."""
    if category is None:
        return False
    return entry == "root" or entry == category


def split_stream_names(text: str) -> list[str]:
    """Split `a/b/c` (a raw path or a `streams=` query value) into names, skipping empty ones."""
    return [part for part in text.split("/") if part]


def frame(name: str, raw_json: str, is_combined: bool) -> str:
    """Wrap one serialised payload for a connection: raw, or `{"stream":…,"data":…}` (§7.1)."""
    if not is_combined:
        return raw_json
    return '{"stream":' + json.dumps(name) + ',"data":' + raw_json + "}"


def dumps(payload: Any) -> str:
    """Serialise a payload compactly, as Binance does (no spaces)."""
    return json.dumps(payload, separators=(",", ":"))


@dataclass
class Subscriptions:
    """One connection's subscriptions and properties, changed only by `apply_control`."""

    is_combined: bool  # §7.2: false on /ws, true on /stream; SET_PROPERTY changes it
    names: dict[str, Stream] = field(default_factory=dict)  # insertion-ordered set of names
    max_streams: int = MAX_STREAMS_PER_CONNECTION

    def add(self, names: list[str]) -> bool:
        """Add names (duplicates ignored); return False, changing nothing, past max_streams."""
        new = [n for n in dict.fromkeys(names) if n not in self.names]
        if len(self.names) + len(new) > self.max_streams:
            return False
        for n in new:
            self.names[n] = parse_stream(n)
        return True


def _error(code: int, msg: str, request_id: Any) -> dict[str, Any]:
    # §7.2: ccxt handles this envelope; Binance's exact envelope is unconfirmed.
    return {"error": {"code": code, "msg": msg}, "id": request_id}


def _is_valid_id(request_id: Any) -> bool:
    # §7.2: documented as an unsigned int; the connector sends 13-digit ms timestamps and the new
    # SDK may send strings, so both are accepted and echoed unchanged. bool is an int in Python.
    if request_id is None or isinstance(request_id, str):
        return True
    return isinstance(request_id, int) and not isinstance(request_id, bool) and request_id >= 0


def _string_params(params: Any) -> list[str] | None:
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        return None
    return params


def apply_control(subs: Subscriptions, text: str) -> dict[str, Any]:
    """Apply one incoming control message to `subs` and return the reply to send (§7.2)."""
    try:
        request = json.loads(text)
    except json.JSONDecodeError as e:
        msg = f"Invalid JSON: expected value at line {e.lineno} column {e.colno}"
        return _error(3, msg, None)
    if not isinstance(request, dict) or "method" not in request:
        return _error(2, "Invalid request: missing field `method`", None)
    request_id = request.get("id")
    if not _is_valid_id(request_id):
        return _error(2, "Invalid request: request ID must be an unsigned integer", None)
    method = request["method"]
    if method not in METHODS:
        expected = ", ".join(f"`{m}`" for m in METHODS)
        column = text.find(json.dumps(method)) + len(json.dumps(method)) + 1
        msg = f"Invalid request: unknown variant `{method}`, expected one of {expected}"
        return _error(2, f"{msg} at line 1 column {column}", request_id)
    params = request.get("params", [])
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        names = _string_params(params)
        if names is None:
            return _error(2, "Invalid request: params must be a list of stream names", request_id)
        if method == "UNSUBSCRIBE":
            for name in names:
                subs.names.pop(name, None)
        elif not subs.add(names):
            msg = f"Invalid request: too many streams, the limit is {subs.max_streams}"
            return _error(2, msg, request_id)
        return {"result": None, "id": request_id}
    if method == "LIST_SUBSCRIPTIONS":
        return {"result": list(subs.names), "id": request_id}
    return _apply_property(subs, method, params, request_id)


def _apply_property(
    subs: Subscriptions, method: str, params: Any, request_id: Any
) -> dict[str, Any]:
    if not isinstance(params, list) or not params:
        return _error(2, "Invalid request: property name must be a string", request_id)
    if not isinstance(params[0], str):
        return _error(2, "Invalid request: property name must be a string", request_id)
    if params[0] != "combined":
        return _error(0, "Unknown property", request_id)
    if method == "GET_PROPERTY":
        if len(params) > 1:
            return _error(2, "Invalid request: too many parameters", request_id)
        return {"result": subs.is_combined, "id": request_id}
    if len(params) > 2:
        return _error(2, "Invalid request: too many parameters", request_id)
    if len(params) < 2 or not isinstance(params[1], bool):
        return _error(1, "Invalid value type: expected Boolean", request_id)
    subs.is_combined = params[1]
    return {"result": None, "id": request_id}
