"""Stream-name parsing, entry-point routing, payload wrapping and the §7.2 control protocol of the
paper exchange's WebSocket side, without sockets."""

from __future__ import annotations

import json

import pytest

from procs.paper_exchange.web.streams import (
    AggTrade,
    BookTicker,
    ContinuousKline,
    Kline,
    MarkPrice,
    MarkPriceAll,
    Subscriptions,
    Unserved,
    apply_control,
    frame,
    is_served_on,
    parse_stream,
    split_stream_names,
    stream_category,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("btcusdt@kline_1m", Kline("BTCUSDT", "1m")),
        ("ethusdt@kline_1M", Kline("ETHUSDT", "1M")),
        ("BTCUSDT@kline_15m", Kline("BTCUSDT", "15m")),
        ("btcusdt_perpetual@continuousKline_1m", ContinuousKline("BTCUSDT", "PERPETUAL", "1m")),
        ("btcusdt@markPrice", MarkPrice("BTCUSDT", 3000)),
        ("btcusdt@markPrice@3s", MarkPrice("BTCUSDT", 3000)),
        ("btcusdt@markPrice@1s", MarkPrice("BTCUSDT", 1000)),
        ("!markPrice@arr", MarkPriceAll(3000)),
        ("!markPrice@arr@1s", MarkPriceAll(1000)),
        ("btcusdt@bookTicker", BookTicker("BTCUSDT")),
        ("btcusdt@aggTrade", AggTrade("BTCUSDT")),
        ("btcusdt@depth", Unserved("public")),
        ("btcusdt@depth20@100ms", Unserved("public")),
        ("!bookTicker", Unserved("public")),
        ("btcusdt@ticker", Unserved("market")),
        ("!miniTicker@arr", Unserved("market")),
        ("btcusdt@kline_7m", Unserved("market")),
        ("btcusdt_current_quarter@continuousKline_1m", Unserved("market")),
        ("0", Unserved(None)),
        ("pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1", Unserved(None)),
    ],
)
def test_parse_stream_recognises_binance_names(name: str, expected: object) -> None:
    assert parse_stream(name) == expected


def test_stream_categories_follow_the_2026_routing_table() -> None:
    assert stream_category(parse_stream("btcusdt@bookTicker")) == "public"
    assert stream_category(parse_stream("btcusdt@kline_1m")) == "market"
    assert stream_category(parse_stream("!markPrice@arr")) == "market"
    assert stream_category(parse_stream("0")) is None


def test_entry_points_serve_only_their_category_and_the_root_serves_all() -> None:
    assert is_served_on("market", "market")
    assert not is_served_on("public", "market")
    assert not is_served_on("market", "private")
    assert is_served_on("root", "market") and is_served_on("root", "private")
    assert not is_served_on("root", None)


def test_split_stream_names_skips_empty_parts() -> None:
    assert split_stream_names("btcusdt@kline_1m//ethusdt@aggTrade/") == [
        "btcusdt@kline_1m",
        "ethusdt@aggTrade",
    ]


def test_frame_wraps_only_combined_connections() -> None:
    assert frame("btcusdt@aggTrade", '{"e":"aggTrade"}', False) == '{"e":"aggTrade"}'
    wrapped = json.loads(frame("btcusdt@aggTrade", '{"e":"aggTrade"}', True))
    assert wrapped == {"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade"}}


def control(subs: Subscriptions, request: object) -> object:
    return apply_control(subs, request if isinstance(request, str) else json.dumps(request))


def test_subscribe_replies_with_the_same_13_digit_id_twice() -> None:
    subs = Subscriptions(is_combined=False)
    first = {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 1795421739525}
    second = {"method": "SUBSCRIBE", "params": ["LK123"], "id": 1795421739525}
    assert control(subs, first) == {"result": None, "id": 1795421739525}
    assert control(subs, second) == {"result": None, "id": 1795421739525}
    assert list(subs.names) == ["btcusdt@kline_1m", "LK123"]


def test_string_ids_are_echoed_as_strings() -> None:
    subs = Subscriptions(is_combined=False)
    reply = control(subs, {"method": "LIST_SUBSCRIPTIONS", "id": "abc-1"})
    assert reply == {"result": [], "id": "abc-1"}


def test_unsubscribe_and_list_subscriptions() -> None:
    subs = Subscriptions(is_combined=False)
    control(subs, {"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "btcusdt@depth"], "id": 1})
    assert control(subs, {"method": "UNSUBSCRIBE", "params": ["btcusdt@depth"], "id": 312}) == {
        "result": None,
        "id": 312,
    }
    assert control(subs, {"method": "LIST_SUBSCRIPTIONS", "id": 3}) == {
        "result": ["btcusdt@aggTrade"],
        "id": 3,
    }


def test_set_and_get_property_combined() -> None:
    subs = Subscriptions(is_combined=False)
    assert control(subs, {"method": "GET_PROPERTY", "params": ["combined"], "id": 2}) == {
        "result": False,
        "id": 2,
    }
    assert control(subs, {"method": "SET_PROPERTY", "params": ["combined", True], "id": 5}) == {
        "result": None,
        "id": 5,
    }
    assert subs.is_combined


@pytest.mark.parametrize(
    ("request_text", "code", "msg_start"),
    [
        ("{not json", 3, "Invalid JSON: expected value at line 1 column 2"),
        ('{"params":[],"id":1}', 2, "Invalid request: missing field `method`"),
        ('{"method":"PING","id":1}', 2, "Invalid request: unknown variant `PING`"),
        ('{"method":"SUBSCRIBE","params":["a"],"id":-1}', 2, "Invalid request: request ID"),
        ('{"method":"SUBSCRIBE","params":"a","id":1}', 2, "Invalid request: params"),
        ('{"method":"SET_PROPERTY","params":["compressed",true],"id":1}', 0, "Unknown property"),
        ('{"method":"SET_PROPERTY","params":["combined","yes"],"id":1}', 1, "Invalid value type"),
        ('{"method":"GET_PROPERTY","params":[1],"id":1}', 2, "Invalid request: property name"),
        ('{"method":"GET_PROPERTY","params":["combined",1],"id":1}', 2, "Invalid request: too"),
    ],
)
def test_invalid_control_messages_get_error_replies(
    request_text: str, code: int, msg_start: str
) -> None:
    reply = apply_control(Subscriptions(is_combined=False), request_text)
    assert isinstance(reply, dict)
    assert reply["error"]["code"] == code
    assert reply["error"]["msg"].startswith(msg_start)
    assert "id" in reply


def test_unknown_method_error_echoes_the_id() -> None:
    reply = apply_control(Subscriptions(is_combined=False), '{"method":"PING","id":7}')
    assert reply["id"] == 7


def test_subscribe_past_the_stream_limit_is_refused_and_changes_nothing() -> None:
    subs = Subscriptions(is_combined=False, max_streams=3)
    control(subs, {"method": "SUBSCRIBE", "params": ["a@aggTrade", "b@aggTrade"], "id": 1})
    reply = control(subs, {"method": "SUBSCRIBE", "params": ["c@aggTrade", "d@aggTrade"], "id": 2})
    assert isinstance(reply, dict) and reply["error"]["code"] == 2
    assert list(subs.names) == ["a@aggTrade", "b@aggTrade"]
    resubscribe = {"method": "SUBSCRIBE", "params": ["a@aggTrade", "c@aggTrade"], "id": 3}
    assert control(subs, resubscribe) == {"result": None, "id": 3}
