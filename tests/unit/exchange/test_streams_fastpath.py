"""The feed's hot-path shortcuts on real payloads (tests/fixtures/binance), compact as Binance
sends them: one-pass decoding of kline and mark frames, and open klines dropped undecoded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from shared.config import load_config
from shared.exchange.frames import parse_frame
from shared.exchange.inbox import Inbox
from shared.exchange.streams import StreamConnection
from shared.schemas import binance as b

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "binance" / "nautilus-docs-derived"


def payload(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def compact(stream: str, data: Any) -> bytes:
    return json.dumps({"stream": stream, "data": data}, separators=(",", ":")).encode()


OPEN = compact("btcusdt@kline_1m", payload("rs_market_data_json_kline_stream_open.json"))
CLOSED = compact("btcusdt@kline_1m", payload("rs_market_data_json_kline_stream_closed.json"))
MARK = compact("btcusdt@markPrice@1s", payload("rs_market_data_json_mark_price_stream.json"))


async def _never() -> str:
    raise AssertionError("no socket in a unit test")


def test_one_pass_decode_of_a_closed_kline_equals_the_general_decode() -> None:
    fast = b.decode_market_frame(CLOSED)
    assert fast is not None
    stream, data, event = fast
    assert (stream, event) == ("btcusdt@kline_1m", b.decode_event(CLOSED))
    assert json.loads(data) == payload("rs_market_data_json_kline_stream_closed.json")


def test_one_pass_decode_of_a_mark_gives_floats_of_the_same_values() -> None:
    fast = b.decode_market_frame(MARK)
    assert fast is not None
    general = b.decode_event(MARK)
    assert isinstance(general, b.MarkPrice) and isinstance(fast[2], b.MarkTick)
    tick = fast[2]
    assert (tick.symbol, tick.time_ms, tick.next_funding_time_ms) == (
        general.symbol,
        general.time_ms,
        general.next_funding_time_ms,
    )
    prices = (general.mark_price, general.index_price, general.funding_rate)
    assert (tick.mark_price, tick.index_price, tick.funding_rate) == tuple(map(float, prices))


def test_frames_the_one_pass_decode_does_not_take_go_to_the_general_path() -> None:
    bad_price = MARK.replace(b'"p":"11794.15000000"', b'"p":"11794.x"')
    spaced = json.dumps(json.loads(MARK)).encode()
    extra_key = MARK[:-1] + b',"more":1}'
    for frame in (bad_price, spaced, extra_key, MARK[:-3], b'{"stream":"x@depth","data":{}}'):
        assert b.decode_market_frame(frame) is None
    message = parse_frame(bad_price, is_combined=True)
    assert message.event is None and message.event_type == "markPriceUpdate"


def test_is_open_kline_frame_accepts_only_a_whole_valid_open_kline() -> None:
    assert b.is_open_kline_frame(OPEN)
    wrong_type = OPEN.replace(b'"n":100', b'"n":"100"')
    for frame in (CLOSED, MARK, OPEN[:-1], wrong_type, OPEN.replace(b"BTCUSDT", b"BT\xffUSDT")):
        assert not b.is_open_kline_frame(frame)


def test_accept_frame_drops_open_klines_but_counts_them_as_valid_messages() -> None:
    settings = load_config("paper", env={}).streams
    conn = StreamConnection(
        "market-0",
        _never,
        ("btcusdt@kline_1m",),
        settings,
        Inbox(10, "drop_oldest"),
        drops_open_klines=True,
    )
    assert conn.accept_frame(OPEN) is None
    closed = conn.accept_frame(CLOSED)
    assert closed is not None and isinstance(closed.event, b.KlineUpdate)
    assert conn.accept_frame(OPEN[:-1]) is None
    stats = conn.stats()
    assert (stats.open_klines_dropped, stats.messages, stats.bad_messages) == (1, 1, 1)
    assert stats.last_message_age_s is not None


def mark_array(symbols: list[str]) -> tuple[bytes, list[dict[str, Any]]]:
    """A `!markPrice@arr@1s` frame: Binance's array of the same mark objects, one per symbol."""
    base = payload("rs_market_data_json_mark_price_stream.json")
    items = [{**base, "s": s, "p": f"{100 + i}.25000000"} for i, s in enumerate(symbols)]
    return compact("!markPrice@arr@1s", items), items


def test_one_pass_decode_of_a_mark_array_gives_each_symbol_as_its_own_frame_would() -> None:
    frame, items = mark_array(["BTCUSDT", "ETHUSDT", "FOOUSDT"])
    fast = b.decode_market_frame(frame)
    assert fast is not None
    stream, data, event = fast
    assert stream == "!markPrice@arr@1s" and json.loads(data) == items
    assert isinstance(event, b.MarkTicks)
    assert event.time_ms == items[0]["E"] == 1562305380000
    assert [t.mark_price for t in event.ticks] == [100.25, 101.25, 102.25]
    for tick, item in zip(event.ticks, items, strict=True):
        single = b.decode_market_frame(compact(f"{item['s'].lower()}@markPrice@1s", item))
        assert single is not None and tick == single[2]
    message = parse_frame(frame, is_combined=True)
    assert message.event == event and message.event_time_ms == event.time_ms
    assert message.event_type == "" and message.kline_open_ms is None


def test_a_mark_array_the_one_pass_decode_cannot_take_goes_to_the_general_path() -> None:
    frame, items = mark_array(["BTCUSDT", "ETHUSDT"])
    foreign = compact("!markPrice@arr@1s", [items[0], {**items[1], "e": "kline"}])
    empty = compact("!markPrice@arr@1s", [])
    for bad in (foreign, empty, frame[:-2]):
        assert b.decode_market_frame(bad) is None
    bad_price = b.decode_market_frame(frame.replace(b'"p":"101.25000000"', b'"p":"1o1"'))
    assert bad_price is not None and isinstance(bad_price[2], b.MarkTicks)  # that one left out
    assert ([t.symbol for t in bad_price[2].ticks], len(bad_price[2].rejected)) == (["BTCUSDT"], 1)
    message = parse_frame(foreign, is_combined=True)  # still a valid frame: the feed decides
    assert message.event is None and message.stream == "!markPrice@arr@1s"


def test_a_repeated_mark_array_is_deduplicated() -> None:
    settings = load_config("paper", env={}).streams
    conn = StreamConnection(
        "market-0",
        _never,
        ("!markPrice@arr@1s",),
        settings,
        Inbox(10, "drop_oldest"),
        drops_open_klines=True,
    )
    frame, _ = mark_array(["BTCUSDT", "ETHUSDT"])
    later, _ = mark_array(["BTCUSDT", "ETHUSDT"])
    later = later.replace(b'"E":1562305380000', b'"E":1562305381000')
    assert conn.accept_frame(frame) is not None
    assert conn.accept_frame(frame) is None  # the overlap of a proactive reconnect
    assert conn.accept_frame(later) is not None
    assert (conn.stats().messages, conn.duplicates) == (2, 1)


def test_a_mark_price_that_is_not_finite_and_positive_is_never_a_mark() -> None:
    for price in ("nan", "inf", "-inf", "0", "-5", "1e400"):
        bad = MARK.replace(b'"p":"11794.15000000"', b'"p":"' + price.encode() + b'"')
        assert b.decode_market_frame(bad) is None, price
        message = parse_frame(bad, is_combined=True)  # a valid frame: the feed counts it bad
        assert message.event is None
        with pytest.raises(msgspec.ValidationError, match=r"is not finite.* - at `\$\.p`"):
            b.decode_event(bad)
    frame, _ = mark_array(["BTCUSDT", "ETHUSDT", "XRPUSDT"])
    frame = frame.replace(b'"p":"101.25000000"', b'"p":"NaN"')  # ETHUSDT's
    fast = b.decode_market_frame(frame)
    assert fast is not None and isinstance(fast[2], b.MarkTicks)
    assert [t.symbol for t in fast[2].ticks] == ["BTCUSDT", "XRPUSDT"]  # the others still count
    (reason,) = fast[2].rejected
    assert "'NaN'" in reason and "ETHUSDT" in reason
    assert fast[2].time_ms == 1562305380000
