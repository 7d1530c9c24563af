"""100,000 fuzzed market frames through the feed's own per-message path: a `StreamConnection`'s
frame check (as the feed's `StreamPool` configures it) -> `Inbox` -> `Feed.on_market`, with a
real shared-memory `KlineWriter` and a real ZeroMQ `Publisher`; no sockets to the exchange.

Valid frames are built from the real Binance payloads in tests/fixtures/binance (kline open and
closed, markPriceUpdate), compact as Binance sends them, some re-encoded with spaces so the
general decode path runs too. Fuzz categories whose frames are invalid by construction must each
be counted bad exactly once; random byte flips and huge decimals may stay valid, so those are
only required to be counted exactly once somewhere. No fuzzed frame may store a bar: the windows
must hold exactly the valid closed klines, in order.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy
import pytest

from shared.bus import Publisher
from shared.config import Config
from shared.shm.rings import KlineColumn, KlineReader, KlineWriter
from tests.integration.feed.conftest import FeedPath, feed_parts

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "binance" / "nautilus-docs-derived"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
FRAMES = 100_000
MINUTE_MS = 60_000
START_MS = 1_638_747_660_000  # the fixtures' candle
WINDOW_BARS = 2_000

# Categories: valid (and recent duplicates) must never be counted bad; "bad" ones always, once;
# "maybe" ones (byte flips, huge decimals) may be either, but once.
VALID, BAD, MAYBE = "valid", "bad", "maybe"
WEIGHTS = {  # category -> share of the frames
    "valid": 0.50,
    "duplicate": 0.05,
    "truncated": 0.08,
    "flipped": 0.10,
    "wrong_type": 0.05,
    "huge_time": 0.03,
    "huge_decimal": 0.03,
    "unknown_stream": 0.05,
    "wrong_shape": 0.05,
    "non_utf8": 0.04,
    "empty": 0.02,
}
VERDICT = {
    "valid": VALID,
    "duplicate": VALID,
    "truncated": BAD,
    "flipped": MAYBE,
    "wrong_type": BAD,
    "huge_time": BAD,
    "huge_decimal": MAYBE,
    "unknown_stream": BAD,
    "wrong_shape": BAD,
    "non_utf8": BAD,
    "empty": BAD,
}


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


KLINE_OPEN = fixture("rs_market_data_json_kline_stream_open.json")
KLINE_CLOSED = fixture("rs_market_data_json_kline_stream_closed.json")
MARK = fixture("rs_market_data_json_mark_price_stream.json")


def frame(stream: Any, data: Any, is_compact: bool = True) -> bytes:
    """A combined-stream frame: compact (as Binance sends it) or with spaces."""
    separators = (",", ":") if is_compact else (", ", ": ")
    return json.dumps({"stream": stream, "data": data}, separators=separators).encode()


def kline(symbol: str, open_ms: int, event_ms: int, is_closed: bool, close: str) -> dict[str, Any]:
    data = copy.deepcopy(KLINE_CLOSED if is_closed else KLINE_OPEN)
    data["E"], data["s"] = event_ms, symbol
    k = data["k"]
    k["s"], k["t"], k["T"], k["x"], k["c"] = (
        symbol,
        open_ms,
        open_ms + MINUTE_MS - 1,
        is_closed,
        close,
    )
    return data


def mark(symbol: str, event_ms: int, price: str) -> dict[str, Any]:
    return {**MARK, "s": symbol, "E": event_ms, "p": price}


@dataclasses.dataclass
class Valid:
    """The stream of valid frames, minute by minute, and the closed bars it carries."""

    rng: numpy.random.Generator
    closed: dict[str, list[tuple[int, float]]]  # symbol -> (open time, close) of closed bars
    recent: list[bytes]  # recent mark and open kline frames, for duplicates and flips
    items: Iterator[tuple[bytes, str]]  # (frame, kind) in arrival order

    @classmethod
    def start(cls, rng: numpy.random.Generator) -> Valid:
        valid = cls(rng, {s: [] for s in SYMBOLS}, [], iter(()))
        valid.items = valid._frames()
        return valid

    def _frames(self) -> Iterator[tuple[bytes, str]]:
        minute = 0
        while True:
            open_ms = START_MS + minute * MINUTE_MS
            for second in range(10):
                for n, symbol in enumerate(SYMBOLS):
                    event_ms = open_ms + second * 6_000 + n
                    price = f"{100 + minute % 50 + second / 10:.2f}"
                    is_compact = bool(self.rng.random() < 0.9)
                    stream = symbol.lower()
                    yield (
                        frame(f"{stream}@markPrice@1s", mark(symbol, event_ms, price), is_compact),
                        "mark",
                    )
                    yield (
                        frame(
                            f"{stream}@kline_1m",
                            kline(symbol, open_ms, event_ms, False, price),
                            is_compact,
                        ),
                        "open",
                    )
            for n, symbol in enumerate(SYMBOLS):
                close = 100 + minute % 50 + n / 100
                data = kline(symbol, open_ms, open_ms + MINUTE_MS + n, True, f"{close:.2f}")
                self.closed[symbol].append((open_ms, close))
                yield frame(f"{symbol.lower()}@kline_1m", data, self.rng.random() < 0.9), "closed"
            minute += 1

    def next(self) -> bytes:
        data, kind = next(self.items)
        if kind != "closed":
            self.recent = [*self.recent[-200:], data]
        return data


def fuzzed(kind: str, valid: Valid, rng: numpy.random.Generator, n: int) -> bytes:
    """Frame `n`, of a fuzz category (`valid` draws the next valid frame). Invalid payloads get
    their own event and open times: a key the deduplicator saw would count as a duplicate."""
    pick = int(rng.integers(0, 1 << 30))
    symbol = SYMBOLS[pick % len(SYMBOLS)]
    event_ms = START_MS + 10**9 + n
    source = valid.recent[pick % len(valid.recent)] if valid.recent else valid.next()
    if kind == "valid":
        return valid.next()
    if kind == "duplicate":
        return source
    if kind == "truncated":  # the outer object never closes: never JSON
        return source[: int(rng.integers(0, len(source) - 1))]
    if kind == "flipped":
        data = bytearray(source)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        return bytes(data)
    open_ms = START_MS - (n + 1) * MINUTE_MS  # closed klines dedup by (stream, open time)
    closed = kline(symbol, open_ms, event_ms, True, "1.0")
    stream, mark_stream = f"{symbol.lower()}@kline_1m", f"{symbol.lower()}@markPrice@1s"
    if kind == "wrong_type":
        variants: list[tuple[Any, Any]] = [
            (stream, {**closed, "k": {**closed["k"], "t": str(open_ms)}}),
            (stream, {**closed, "k": {**closed["k"], "x": "true"}}),
            (stream, {**closed, "E": 1.5}),
            (stream, {**closed, "k": []}),
            (stream, "data"),
            (5, closed),
            (stream, {**closed, "k": {**closed["k"], "o": None}}),
            (mark_stream, {**mark(symbol, event_ms, "1.0"), "p": 101.5, "T": "x"}),
        ]
        return frame(*variants[pick % len(variants)])
    if kind == "huge_time":  # a time no 1m bar has: must not poison the window
        huge = 10 ** int(rng.integers(19, 400)) + n  # unique: dedup keys include the open time
        field = ("t", "T")[pick % 2]
        return frame(stream, {**closed, "k": {**closed["k"], field: huge}})
    if kind == "huge_decimal":
        digits = "9" * int(rng.integers(20, 5000))
        value = (digits, f"1e{digits[:6]}", f"-{digits}.5")[pick % 3]
        return frame(mark_stream, mark(symbol, event_ms, value))
    if kind == "unknown_stream":
        variants = [
            ("btcusdt@depth", {"e": "depthUpdate", "E": event_ms, "s": "BTCUSDT"}),
            ("foousdt@kline_1m", kline("FOOUSDT", open_ms, event_ms, True, "1.0")),
            ("foousdt@markPrice@1s", mark("FOOUSDT", event_ms, "1.0")),
            (f"{symbol.lower()}@kline_5m", {**closed, "k": {**closed["k"], "i": "5m"}}),
            ("!bookTicker", {"e": "bookTicker", "E": event_ms}),
        ]
        return frame(*variants[pick % len(variants)])
    if kind == "wrong_shape":
        shapes = [
            b"null",
            b"[]",
            b"{}",
            b'"text"',
            b"123",
            b'{"stream":"btcusdt@kline_1m"}',
            b'{"stream":"btcusdt@kline_1m","data":[1,2]}',
            b'{"stream":"","data":{}}',
            b'{"stream":"btcusdt@kline_1m","data":[]}',
            b'{"stream":"btcusdt@kline_1m","data":{"e":"kline"}}',
        ]
        return shapes[pick % len(shapes)]
    if kind == "non_utf8":  # inside a string the schemas read: the symbol
        payload = (mark_stream, mark(symbol, event_ms, "1.0")) if pick % 2 else (stream, closed)
        return frame(*payload).replace(f'"s":"{symbol}"'.encode(), b'"s":"B\xff\xfeUSDT"')
    assert kind == "empty"
    return b""


@pytest.fixture
def parts() -> Iterator[tuple[Config, KlineWriter, Publisher, str]]:
    with feed_parts(SYMBOLS, WINDOW_BARS, "fuzz") as made:
        yield made


def test_feed_survives_100k_fuzzed_frames_counts_each_bad_once_and_stores_only_valid_bars(
    parts: tuple[Config, KlineWriter, Publisher, str],
) -> None:
    cfg, writer, publisher, instance = parts
    rng = numpy.random.default_rng(20261123)
    valid = Valid.start(rng)
    kinds = list(WEIGHTS)
    drawn = rng.choice(len(kinds), size=FRAMES, p=list(WEIGHTS.values()))
    frames = [(kinds[k], fuzzed(kinds[k], valid, rng, n)) for n, k in enumerate(drawn)]
    # The feed's own objects; the REST client is never used (disable_rest_fallback).
    path = FeedPath.build(cfg, writer, publisher)
    feed, conn, push = path.feed, path.conn, path.push

    def counters() -> tuple[int, int, int]:  # (bad, handled by the connection, bad in the feed)
        handled = conn.messages + conn.duplicates + conn.open_klines_dropped
        own = feed.counters.bad_messages
        return conn.bad_messages + own, handled + conn.bad_messages, own

    async def run() -> dict[str, int]:
        bad_by_verdict = {VALID: 0, BAD: 0, MAYBE: 0}
        for n, (kind, data) in enumerate(frames):
            bad, handled, _ = counters()
            await push(data)  # nothing a frame contains may raise out of the feed's path
            new_bad, new_handled, _ = counters()
            assert new_handled == handled + 1, (
                f"frame {n} ({kind}) counted {new_handled - handled}x"
            )
            verdict = VERDICT[kind]
            bad_by_verdict[verdict] += new_bad - bad
            if verdict == BAD:
                assert new_bad == bad + 1, f"frame {n} ({kind}) not counted bad: {data[:200]!r}"
            elif verdict == VALID:
                assert new_bad == bad, f"frame {n} ({kind}) counted bad: {data[:200]!r}"
        return bad_by_verdict

    bad_by_verdict = asyncio.run(run())
    expected_bad = sum(1 for kind, _ in frames if VERDICT[kind] == BAD)
    assert bad_by_verdict[BAD] == expected_bad > 10_000
    assert bad_by_verdict[VALID] == 0
    assert 0 < bad_by_verdict[MAYBE] <= sum(1 for kind, _ in frames if VERDICT[kind] == MAYBE)
    assert counters()[0] == expected_bad + bad_by_verdict[MAYBE]
    assert conn.open_klines_dropped > 0 and conn.duplicates > 0 and feed.counters.bad_messages > 0

    reader = KlineReader(instance)
    try:
        for symbol in SYMBOLS:
            window = reader.window(symbol, WINDOW_BARS)
            stored = [
                (int(r[KlineColumn.OPEN_TIME_MS]), float(r[KlineColumn.CLOSE])) for r in window
            ]
            assert stored == valid.closed[symbol] and len(stored) > 100
        # Still usable: the next valid closed bar and mark are stored and published.
        published = publisher.published
        next_ms = valid.closed[SYMBOLS[0]][-1][0] + MINUTE_MS
        closed = kline(SYMBOLS[0], next_ms, next_ms + MINUTE_MS, True, "123.45")
        asyncio.run(push(frame("btcusdt@kline_1m", closed)))
        asyncio.run(push(frame("btcusdt@markPrice@1s", mark(SYMBOLS[0], next_ms + 1, "99.5"))))
        last = reader.window(SYMBOLS[0], 1)
        assert (int(last[0, KlineColumn.OPEN_TIME_MS]), float(last[0, KlineColumn.CLOSE])) == (
            next_ms,
            123.45,
        )
        assert reader.mark(SYMBOLS[0]) is not None
        assert (reader.mark(SYMBOLS[0]).price, publisher.published) == (99.5, published + 2)  # type: ignore[union-attr]
    finally:
        reader.close()
