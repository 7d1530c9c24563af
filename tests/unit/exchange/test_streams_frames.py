"""Frame validation and the reader's accept path, fed real payloads (tests/fixtures/binance) and
10^5 fuzzed frames; no sockets."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy
import pytest

from shared.config import load_config
from shared.exchange.frames import USER_DATA_STREAM, FrameError, parse_frame
from shared.exchange.inbox import Inbox
from shared.exchange.streams import StreamConnection

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "binance"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / "nautilus-docs-derived" / name).read_text())


KLINE_CLOSED = fixture("rs_market_data_json_kline_stream_closed.json")
MARK_PRICE = fixture("rs_market_data_json_mark_price_stream.json")
ORDER_TRADE = fixture("rs_user_data_json_order_update_trade.json")


def combined(stream: Any, data: Any) -> bytes:
    return json.dumps({"stream": stream, "data": data}).encode()


def with_kline(open_ms: int, event_ms: int, is_closed: bool) -> dict[str, Any]:
    payload = json.loads(json.dumps(KLINE_CLOSED))
    payload["E"], payload["k"]["t"], payload["k"]["x"] = event_ms, open_ms, is_closed
    return payload


async def _never() -> str:
    raise AssertionError("no socket in a unit test")


def connection(is_combined: bool = True) -> StreamConnection:
    settings = load_config("paper", env={}).streams
    return StreamConnection(
        "market-0",
        _never,
        ("btcusdt@kline_1m",),
        settings,
        Inbox(10, "drop_oldest"),
        is_combined=is_combined,
        is_user_data=not is_combined,
    )


def test_real_closed_kline_in_a_combined_frame_yields_its_dedup_fields() -> None:
    message = parse_frame(combined("btcusdt@kline_1m", KLINE_CLOSED), is_combined=True)
    assert message.stream == "btcusdt@kline_1m"
    assert (message.event_type, message.event_time_ms) == ("kline", 1638747660000)
    assert (message.kline_open_ms, message.is_closed) == (1638747660000, True)
    assert json.loads(message.data) == KLINE_CLOSED


def test_real_user_event_in_a_raw_frame_is_labelled_user_data() -> None:
    message = parse_frame(json.dumps(ORDER_TRADE), is_combined=False)
    assert (message.stream, message.event_type) == (USER_DATA_STREAM, "ORDER_TRADE_UPDATE")
    assert message.event_time_ms == 1568879465651 and message.kline_open_ms is None


def test_listen_key_expired_with_string_event_time_is_accepted() -> None:
    frame = '{"e":"listenKeyExpired","E":"1736996475556","listenKey":"WsCM"}'
    assert parse_frame(frame, is_combined=False).event_time_ms == 1736996475556


def test_all_market_mark_price_array_takes_the_first_event_time() -> None:
    message = parse_frame(combined("!markPrice@arr", [MARK_PRICE, MARK_PRICE]), True)
    assert (message.event_type, message.event_time_ms) == ("", 1562305380000)


@pytest.mark.parametrize(
    ("frame", "is_combined", "reason"),
    [
        (b"not json", True, "not JSON"),
        (b'{"stream":"a@kline_1m","data":{"e":"kline"', True, "not JSON"),
        (b'{"result":null,"id":1}', True, "wrong shape"),
        (b'{"data":{"e":"kline","E":1}}', True, "wrong shape"),
        (b'{"stream":"a@kline_1m"}', True, "wrong shape"),
        (b'{"stream":7,"data":{"e":"kline","E":1}}', True, "wrong shape"),
        (b'{"stream":"","data":{"e":"kline","E":1}}', True, "stream name is empty"),
        (b'{"stream":"a@kline_1m","data":"text"}', True, "wrong shape"),
        (b'{"stream":"a@kline_1m","data":{"e":"kline","E":1.5}}', True, "wrong shape"),
        (b'{"stream":"a@kline_1m","data":{"e":"kline","E":"soon"}}', True, "not an integer"),
        (
            b'{"stream":"a@kline_1m","data":{"e":"kline","E":1,"k":{"t":"0","x":true}}}',
            True,
            "wrong shape",
        ),
        (b'{"stream":"a@kline_1m","data":{"e":"kline","E":1,"k":{"t":0}}}', True, "wrong shape"),
        (b'{"stream":"a@kline_1m","data":{"e":"kline","E":true}}', True, "wrong shape"),
        (b"[1,2,3]", False, "wrong shape"),
        (b'{"E":1}', False, "event type e is missing"),
        (b"\xff\xfe{}", False, "not UTF-8"),
        (b'{"e":"\xc3\x28","E":1}', False, "not UTF-8"),
        (b'{"stream":"a@kline_1m","data":{"e":"k\xc3\x28","E":1}}', True, "not UTF-8"),
        (b'{"e":"kline","E":1,', False, "not JSON"),
        (b"[" * 100_000, True, "wrong shape|not JSON|nested"),
    ],
)
def test_malformed_frames_raise_frame_error_with_the_reason(
    frame: bytes, is_combined: bool, reason: str
) -> None:
    with pytest.raises(FrameError, match=reason):
        parse_frame(frame, is_combined)


def test_accept_frame_counts_and_logs_a_bad_frame_with_its_first_200_bytes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="slt.exchange")
    conn = connection()
    frame = b'{"stream":' + b"x" * 500
    assert conn.accept_frame(frame) is None and conn.accept_frame(frame) is None
    lines = [r.getMessage() for r in caplog.records if " bad_message " in r.getMessage()]
    assert len(lines) == 1  # the second warning is held back by the throttle
    assert "x" * 190 in lines[0] and "x" * 201 not in lines[0]
    assert conn.bad_messages == 2


def _fuzz_frames(rng: numpy.random.Generator, count: int) -> tuple[list[bytes], dict[str, int]]:
    """Return frames and how many of them are valid-new, duplicate and certainly bad; the rest
    are random mutations of valid frames whose validity only the totals check."""
    frames: list[bytes] = []
    expected = {"valid": 0, "duplicate": 0, "bad": 0, "mutated": 0}
    valid: list[bytes] = []
    junk = [b"", b"null", b"{}", b"[]", b'"s"', b"1e999", b"{" * 5000, b"\x00\x01", b"\xc3\x28"]
    for i in range(count):
        kind = rng.integers(0, 6)
        if kind <= 1 or not valid:
            frame = combined(f"s{i % 7}usdt@kline_1m", with_kline(i * 60_000, i, bool(kind)))
            valid.append(frame)
            expected["valid"] += 1
        elif kind == 2:  # a recent one: the deduplicator's memory is bounded (8192 keys)
            frame = valid[-int(rng.integers(1, min(len(valid), 1000) + 1))]
            expected["duplicate"] += 1
        elif kind == 3:
            frame = junk[int(rng.integers(0, len(junk)))] + rng.bytes(int(rng.integers(0, 40)))
            expected["bad"] += 1
        elif kind == 4:
            source = valid[int(rng.integers(0, len(valid)))]
            frame = source[: int(rng.integers(0, len(source) - 1))]  # truncated: never JSON
            expected["bad"] += 1
        else:
            data = bytearray(valid[int(rng.integers(0, len(valid)))])
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
            frame = bytes(data)
            expected["mutated"] += 1
        frames.append(frame)
    return frames, expected


def test_accept_frame_survives_100k_fuzzed_frames_and_counts_each_exactly_once() -> None:
    frames, expected = _fuzz_frames(numpy.random.default_rng(20261123), 100_000)
    conn = connection()
    accepted = sum(conn.accept_frame(frame) is not None for frame in frames)
    assert accepted == conn.messages
    assert conn.messages + conn.duplicates + conn.bad_messages == len(frames)
    # Mutations may stay valid (a changed digit) or become bad; everything else is exact.
    assert expected["bad"] <= conn.bad_messages <= expected["bad"] + expected["mutated"]
    assert expected["valid"] <= conn.messages <= expected["valid"] + expected["mutated"]
    assert conn.duplicates >= expected["duplicate"]


def test_raw_accept_path_survives_fuzzed_user_frames() -> None:
    rng = numpy.random.default_rng(5)
    conn = connection(is_combined=False)
    base = json.dumps(ORDER_TRADE).encode()
    for _ in range(20_000):
        data = bytearray(base)
        data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        conn.accept_frame(bytes(data))
    assert conn.messages + conn.duplicates + conn.bad_messages == 20_000
    assert conn.bad_messages > 0
