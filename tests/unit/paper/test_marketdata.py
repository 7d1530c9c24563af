"""Wire bodies: every builder's keys, key order and JSON types against the Binance fixtures in
tests/fixtures/binance (real where there is one, docs-derived otherwise), plus exact values.

`st` and `ps` in the docs-derived stream fixtures are optional COIN-M-migration extras
(BINANCE-API.md §0.5: clients ignore them), so they are dropped before comparing; `ap` in
markPriceUpdate (2025+) and `nq` in aggTrade (2025-12-31) are newer than those fixtures (§0).
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from procs.paper_exchange.market import wire as md
from procs.paper_exchange.market.prices import WARMUP, Market
from procs.paper_exchange.market.replay import Replay
from tests.unit.paper.replayed import EPOCH_MS, FIXTURES, MINUTE, SYMBOLS, shipped_replay

NOW_MS = EPOCH_MS + 3 * 86_400_000 + 754_321

# A real GET /fapi/v1/ticker/24hr BTCUSDT reply (2025-01), quoted in the comments of a public
# Mojo port of ccxt (binance fetch_ticker). There is no such fixture in tests/fixtures.
REAL_TICKER_24HR: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "priceChange": "-454.50",
    "priceChangePercent": "-0.472",
    "weightedAvgPrice": "95569.51",
    "lastPrice": "95771.60",
    "lastQty": "0.012",
    "openPrice": "96226.10",
    "highPrice": "97241.30",
    "lowPrice": "92000.00",
    "volume": "5315.893",
    "quoteVolume": "508037300.13",
    "openTime": 1736496420000,
    "closeTime": 1736582843623,
    "firstId": 294643039,
    "lastId": 294680807,
    "count": 37500,
}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def ccxt_response(method: str) -> Any:
    entries = fixture("ccxt-extracted/ccxt_binance_linear_httpResponses.json")["entries"]
    return next(e["httpResponse"] for e in entries if e["ccxt_method"] == method)


def shape(value: Any) -> Any:
    """Keys in order with the JSON type of each value, recursively (lists: every element)."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def decimals(text: str) -> int:
    return len(text.partition(".")[2])


def without(payload: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in keys}


@pytest.fixture(scope="module")
def exchange_info() -> dict[str, Any]:
    info: dict[str, Any] = fixture("nautilus-real/http_futures_market_exchange_info.json")
    return info


@pytest.fixture(scope="module")
def specs(exchange_info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["symbol"]: s for s in exchange_info["symbols"] if s["symbol"] in SYMBOLS}


@pytest.fixture(scope="module")
def replay() -> dict[str, Replay]:
    return shipped_replay()


@pytest.fixture
def market(replay: dict[str, Replay], specs: dict[str, dict[str, Any]]) -> Market:
    return Market(replay, specs, EPOCH_MS)


def test_kline_row_of_the_first_data_row_has_binance_formatting(
    market: Market, specs: dict[str, dict[str, Any]]
) -> None:
    # Data line 2: 1748217600000,108956,109002.6,108901.4,108901.4,139.177,1748217659999
    open_ms = EPOCH_MS - WARMUP * MINUTE
    row = md.kline_row(market.closed_bar("BTCUSDT", open_ms), specs["BTCUSDT"])
    typical = (Decimal("108956") + Decimal("109002.6") + 2 * Decimal("108901.4")) / 4
    quote = (Decimal("139.177") * typical).quantize(Decimal("0.00001"), ROUND_HALF_UP)
    assert row[:7] == [
        open_ms,
        "108956.00",
        "109002.60",
        "108901.40",
        "108901.40",
        "139.177",
        open_ms + 59_999,
    ]
    assert row[7:9] == [f"{quote:f}", 240]
    assert row[11] == "0"


def test_klines_body_matches_the_real_and_docs_fixtures_position_by_position(
    market: Market, specs: dict[str, dict[str, Any]]
) -> None:
    bars = market.klines("BTCUSDT", "1m", None, None, 3, NOW_MS)
    body = md.klines_body(bars, specs["BTCUSDT"])
    real = ccxt_response("fetchOHLCV")  # real BTCUSDT 1m rows (2024-04)
    docs = fixture("nautilus-docs-derived/http_futures_market_klines.json")
    assert [shape(row) for row in body] == [shape(row) for row in real]
    assert shape(body[0]) == shape(docs[0])
    # Same decimals as Binance: prices 2, volumes 3, quote volumes 5 (2 + 3) for BTCUSDT.
    string_positions = (1, 2, 3, 4, 5, 7, 9, 10)
    for ours, theirs in zip(body, real, strict=True):
        assert [decimals(ours[i]) for i in string_positions] == [
            decimals(theirs[i]) for i in string_positions
        ]
        assert ours[6] - ours[0] == theirs[6] - theirs[0] == 59_999


@pytest.mark.parametrize("state", ["closed", "open"])
def test_kline_event_has_the_fixture_keys_order_and_types(
    market: Market, specs: dict[str, dict[str, Any]], state: str
) -> None:
    expected = fixture(f"nautilus-docs-derived/rs_market_data_json_kline_stream_{state}.json")
    open_ms = NOW_MS - NOW_MS % MINUTE - (MINUTE if state == "closed" else 0)
    bar = market.candle("BTCUSDT", "1m", open_ms, NOW_MS)
    event = md.kline_event("BTCUSDT", "1m", bar, specs["BTCUSDT"], NOW_MS)
    assert shape(event) == shape(expected)
    assert event["k"]["x"] is (state == "closed")
    assert event["k"]["T"] - event["k"]["t"] == 59_999
    assert event["k"]["n"] == event["k"]["L"] - event["k"]["f"] + 1


def test_closed_kline_event_carries_the_same_values_as_the_rest_kline(
    market: Market, specs: dict[str, dict[str, Any]]
) -> None:
    open_ms = NOW_MS - NOW_MS % 3_600_000 - 3_600_000
    bar = market.candle("ETHUSDT", "1h", open_ms, NOW_MS)
    k = md.kline_event("ETHUSDT", "1h", bar, specs["ETHUSDT"], NOW_MS)["k"]
    (row,) = md.klines_body(
        market.klines("ETHUSDT", "1h", open_ms, open_ms, 1, NOW_MS), specs["ETHUSDT"]
    )
    assert [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"]] == row[:7]
    assert [k["q"], k["n"], k["V"], k["Q"]] == row[7:11]


def test_continuous_kline_event_has_pair_contract_type_and_no_symbol_in_k(
    market: Market, specs: dict[str, dict[str, Any]]
) -> None:
    kline = fixture("nautilus-docs-derived/rs_market_data_json_kline_stream_open.json")
    bar = market.current_candle("BTCUSDT", "1m", NOW_MS)
    event = md.continuous_kline_event("BTCUSDT", "1m", bar, specs["BTCUSDT"], NOW_MS)
    # BINANCE-API.md §7.3: {"e":"continuous_kline","E":…,"ps":…,"ct":"PERPETUAL","k":{…}} with the
    # kline keys without `s`.
    expected = {
        "e": "continuous_kline",
        "E": kline["E"],
        "ps": "BTCUSDT",
        "ct": "PERPETUAL",
        "k": without(kline["k"], "s"),
    }
    assert shape(event) == shape(expected)
    assert (event["ps"], event["ct"]) == ("BTCUSDT", "PERPETUAL")


def test_exchange_info_has_the_real_top_level_shape_and_passes_symbols_unchanged(
    exchange_info: dict[str, Any],
) -> None:
    symbols = exchange_info["symbols"][:2]
    body = md.exchange_info_body(exchange_info["serverTime"], exchange_info["rateLimits"], symbols)
    assert shape(without(body, "symbols", "assets")) == shape(
        without(exchange_info, "symbols", "assets")
    )
    assert list(body) == list(exchange_info)
    assert shape(body["assets"][0]) == shape(exchange_info["assets"][0])
    assert [a["asset"] for a in body["assets"]] == ["USDT", "BTC", "BNB", "ETH"]
    assert all(ours is theirs for ours, theirs in zip(body["symbols"], symbols, strict=True))
    assert body["rateLimits"] == exchange_info["rateLimits"]


def test_premium_index_has_the_fixture_keys_and_types_with_8_decimals(market: Market) -> None:
    expected = fixture("nautilus-docs-derived/http_futures_market_premium_index.json")
    body = md.premium_index_body(
        "BTCUSDT",
        market.mark_price("BTCUSDT", NOW_MS),
        market.index_price("BTCUSDT", NOW_MS),
        market.funding_rate("BTCUSDT", NOW_MS),
        market.next_funding_ms(NOW_MS),
        NOW_MS,
    )
    assert dict(shape(body)) == dict(shape(expected))
    # Key order of the docs page and of a real dapi reply (interestRate before nextFundingTime);
    # the nautilus fixture, typed in by hand, swaps those two.
    assert list(body) == [
        "symbol",
        "markPrice",
        "indexPrice",
        "estimatedSettlePrice",
        "lastFundingRate",
        "interestRate",
        "nextFundingTime",
        "time",
    ]
    assert {k: decimals(body[k]) for k in ("markPrice", "indexPrice", "lastFundingRate")} == {
        k: decimals(expected[k]) for k in ("markPrice", "indexPrice", "lastFundingRate")
    }
    assert body["interestRate"] == "0.00010000"
    assert Decimal(body["markPrice"]) == market.last_price("BTCUSDT", NOW_MS)


def test_ticker_price_has_the_fixture_shape(market: Market, specs: dict[str, Any]) -> None:
    expected = fixture("nautilus-docs-derived/http_futures_market_ticker_price.json")
    body = md.ticker_price_body(
        "BTCUSDT", market.last_price("BTCUSDT", NOW_MS), specs["BTCUSDT"], NOW_MS
    )
    assert shape(body) == shape(expected)
    assert decimals(body["price"]) == decimals(expected["price"]) == 2


def test_ticker_24hr_has_the_real_reply_shape_and_decimals(
    market: Market, specs: dict[str, Any]
) -> None:
    window = market.rolling_24h("BTCUSDT", NOW_MS)
    body = md.ticker_24hr_body(
        "BTCUSDT", window, market.agg_trade("BTCUSDT", NOW_MS), specs["BTCUSDT"]
    )
    assert shape(body) == shape(REAL_TICKER_24HR)
    strings = [k for k, v in REAL_TICKER_24HR.items() if isinstance(v, str) and k != "symbol"]
    assert {k: decimals(body[k]) for k in strings} == {
        k: decimals(REAL_TICKER_24HR[k]) for k in strings
    }
    assert body["closeTime"] - body["openTime"] < 86_400_000 + MINUTE
    assert body["count"] == body["lastId"] - body["firstId"] + 1


def test_book_ticker_event_and_rest_body_have_the_fixture_shape(
    market: Market, specs: dict[str, Any]
) -> None:
    expected = without(
        fixture("nautilus-docs-derived/rs_market_data_json_book_ticker_stream.json"), "st", "ps"
    )
    book = market.book_ticker("BTCUSDT", NOW_MS)
    event = md.book_ticker_event(
        "BTCUSDT", book, specs["BTCUSDT"], market.update_id(NOW_MS), NOW_MS, NOW_MS
    )
    assert shape(event) == shape(expected)
    assert (decimals(event["b"]), decimals(event["B"])) == (2, 3)
    body = md.book_ticker_body("BTCUSDT", book, specs["BTCUSDT"], NOW_MS)
    # Docs (Symbol Order Book Ticker, USDⓈ-M): symbol, bidPrice, bidQty, askPrice, askQty, time.
    assert shape(body) == [
        ("symbol", "str"),
        ("bidPrice", "str"),
        ("bidQty", "str"),
        ("askPrice", "str"),
        ("askQty", "str"),
        ("time", "int"),
    ]


def test_mark_price_event_has_the_fixture_shape_plus_ap(market: Market) -> None:
    expected = without(
        fixture("nautilus-docs-derived/rs_market_data_json_mark_price_stream.json"), "st"
    )
    event = md.mark_price_event(
        "BTCUSDT",
        market.mark_price("BTCUSDT", NOW_MS),
        market.index_price("BTCUSDT", NOW_MS),
        market.funding_rate("BTCUSDT", NOW_MS),
        market.next_funding_ms(NOW_MS),
        NOW_MS,
    )
    assert list(event)[4] == "ap"
    assert shape(without(event, "ap")) == shape(expected)
    assert all(decimals(event[k]) == 8 for k in ("p", "ap", "i", "P", "r"))


def test_agg_trade_event_has_the_fixture_shape_plus_nq(
    market: Market, specs: dict[str, Any]
) -> None:
    expected = without(
        fixture("nautilus-docs-derived/rs_market_data_json_agg_trade_stream.json"), "st"
    )
    trade = market.agg_trade("BTCUSDT", NOW_MS)
    event = md.agg_trade_event("BTCUSDT", trade, specs["BTCUSDT"], NOW_MS)
    assert list(event)[6] == "nq"
    assert shape(without(event, "nq")) == shape(expected)
    assert event["a"] == event["f"] == event["l"] == NOW_MS // 250
    assert event["T"] == NOW_MS - NOW_MS % 250


def test_depth_has_the_real_shape_and_decimals(market: Market, specs: dict[str, Any]) -> None:
    real = ccxt_response("fetchOrderBook")  # real BTCUSDT limit-5 book (2024-02)
    bids, asks = market.depth("BTCUSDT", NOW_MS, 5)
    body = md.depth_body(bids, asks, specs["BTCUSDT"], market.update_id(NOW_MS), NOW_MS, NOW_MS)
    assert list(body) == list(real)
    # ccxt's harness stringified lastUpdateId, E and T; Binance sends integers (fixture notes).
    assert [type(body[k]) for k in ("lastUpdateId", "E", "T")] == [int, int, int]
    assert shape(body["bids"]) == shape(real["bids"]) and shape(body["asks"]) == shape(real["asks"])
    assert [(decimals(p), decimals(q)) for p, q in body["bids"]] == [
        (decimals(p), decimals(q)) for p, q in real["bids"]
    ]


def test_funding_rate_history_has_the_docs_keys(market: Market) -> None:
    events = market.funding_history("ETHUSDT", None, None, 2, NOW_MS)
    body = md.funding_rate_body("ETHUSDT", events)
    assert [shape(item) for item in body] == [
        [("symbol", "str"), ("fundingRate", "str"), ("fundingTime", "int"), ("markPrice", "str")]
    ] * 2
    assert body[0]["fundingRate"] == f"{events[0].rate:.8f}"
    assert decimals(body[0]["markPrice"]) == 8


def test_leverage_bracket_is_a_list_or_one_object_for_one_symbol() -> None:
    brackets = {
        "BTCUSDT": [
            {
                "bracket": 1,
                "initialLeverage": 125,
                "notionalCap": 50000,
                "notionalFloor": 0,
                "maintMarginRatio": 0.004,
                "cum": 0.0,
            }
        ],
        "ETHUSDT": [],
    }
    everything = md.leverage_bracket_body(brackets)
    assert isinstance(everything, list)
    assert [item["symbol"] for item in everything] == ["BTCUSDT", "ETHUSDT"]
    one = md.leverage_bracket_body(brackets, "BTCUSDT")
    assert one == {"symbol": "BTCUSDT", "brackets": brackets["BTCUSDT"]}
    assert shape(one) == [
        ("symbol", "str"),
        (
            "brackets",
            [
                [
                    ("bracket", "int"),
                    ("initialLeverage", "int"),
                    ("notionalCap", "int"),
                    ("notionalFloor", "int"),
                    ("maintMarginRatio", "float"),
                    ("cum", "float"),
                ]
            ],
        ),
    ]


def test_a_value_rounding_to_zero_is_never_sent_as_negative_zero() -> None:
    body = md.premium_index_body(
        "BTCUSDT", Decimal("1"), Decimal("1"), Decimal("-0.000000004"), 0, 0
    )
    assert body["lastFundingRate"] == "0.00000000"
    event = md.mark_price_event(
        "BTCUSDT", Decimal("1"), Decimal("1"), Decimal("-0.000000005"), 0, 0
    )
    assert event["r"] == "-0.00000001"  # half up, away from zero
