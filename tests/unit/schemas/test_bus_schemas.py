"""Bus topics and payloads: topic builders, msgpack round trips, version and type checks."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from shared.schemas.bus import (
    SCHEMA_VERSION,
    BusHeartbeat,
    Kline,
    MarkPrice,
    OrderState,
    Payload,
    Position,
    decode,
    encode,
    heartbeat_topic,
    kline_topic,
    mark_topic,
    order_topic,
    payload_type,
    position_topic,
)

KLINE = Kline(
    ts_ms=1_748_217_660_000,
    source="feed",
    seq=7,
    symbol="BTCUSDT",
    interval="1m",
    open_time_ms=1_748_217_600_000,
    close_time_ms=1_748_217_659_999,
    open=108_950.1,
    high=109_010.0,
    low=108_900.5,
    close=108_990.2,
    volume=152.338,
    quote_volume=16_600_112.5,
    trades=4211,
    taker_buy_volume=80.1,
    taker_buy_quote_volume=8_728_001.2,
    is_closed=True,
)
PAYLOADS: list[tuple[str, Payload]] = [
    (kline_topic("1m", "BTCUSDT"), KLINE),
    (
        mark_topic("ETHUSDT"),
        MarkPrice(
            ts_ms=1,
            symbol="ETHUSDT",
            price=2543.11,
            index_price=2542.9,
            funding_rate=0.0001,
            next_funding_time_ms=1_748_246_400_000,
        ),
    ),
    (
        position_topic("BTCUSDT"),
        Position(
            ts_ms=2,
            symbol="BTCUSDT",
            quantity=Decimal("-0.004"),
            entry_price=Decimal("108950.1"),
            has_stop=True,
            updated_ms=2,
        ),
    ),
    (
        order_topic("BTCUSDT"),
        OrderState(
            ts_ms=3,
            symbol="BTCUSDT",
            client_order_id="slt-8812-entry-0",
            side="BUY",
            order_type="LIMIT",
            status="PARTIALLY_FILLED",
            quantity=Decimal("0.010"),
            filled_quantity=Decimal("0.004"),
            price=Decimal("108900.0"),
            updated_ms=3,
        ),
    ),
    (heartbeat_topic("feed"), BusHeartbeat(ts_ms=4, pid=1234, published=99)),
]


def test_topic_builders_produce_dotted_topics() -> None:
    assert kline_topic("1m", "BTCUSDT") == "kline.1m.BTCUSDT"
    assert mark_topic("BTCUSDT") == "mark.BTCUSDT"
    assert position_topic("BTCUSDT") == "position.BTCUSDT"
    assert order_topic("BTCUSDT") == "order.BTCUSDT"
    assert heartbeat_topic("feed") == "heartbeat.feed"


@pytest.mark.parametrize("symbol", ["", "BTC.USDT", "BTC USDT", "BTC€"])
def test_topic_builders_reject_words_that_would_break_prefix_filtering(symbol: str) -> None:
    with pytest.raises(ValueError):
        mark_topic(symbol)


@pytest.mark.parametrize(("topic", "payload"), PAYLOADS, ids=lambda x: str(x)[:20])
def test_every_payload_round_trips_through_msgpack(topic: str, payload: Payload) -> None:
    assert payload_type(topic) is type(payload)
    decoded = decode(topic, encode(payload))
    assert decoded == payload
    assert decoded.v == SCHEMA_VERSION


def test_decimal_fields_keep_their_exact_digits() -> None:
    topic, payload = PAYLOADS[2]
    decoded = decode(topic, encode(payload))
    assert isinstance(decoded, Position)
    assert decoded.quantity == Decimal("-0.004") and str(decoded.entry_price) == "108950.1"


def test_payloads_are_frozen() -> None:
    with pytest.raises(AttributeError):
        KLINE.seq = 8  # type: ignore[misc]


def test_decode_rejects_another_schema_version() -> None:
    frame = encode(msgspec.structs.replace(KLINE, v=SCHEMA_VERSION + 1))
    with pytest.raises(ValueError, match=r"v=2 on kline\.1m\.BTCUSDT, expected 1"):
        decode("kline.1m.BTCUSDT", frame)


def test_decode_reports_the_field_path_of_a_wrong_type() -> None:
    frame = msgspec.msgpack.encode({**msgspec.structs.asdict(KLINE), "close": "high"})
    with pytest.raises(msgspec.ValidationError, match=r"\$\.close"):
        decode("kline.1m.BTCUSDT", frame)


def test_decode_rejects_an_unknown_topic() -> None:
    with pytest.raises(ValueError, match="no payload type"):
        decode("trade.BTCUSDT", encode(KLINE))
