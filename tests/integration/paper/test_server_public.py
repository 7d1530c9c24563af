"""Public REST endpoints of the paper exchange over real sockets, compared field by field with real
Binance payloads in tests/fixtures/binance/ (same keys, same order, same JSON types)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.paper_exchange_fixture import (
    ALL_SYMBOLS,
    PaperExchangeProcess,
    Reply,
    call,
    start_paper_exchange,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "binance"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def ccxt_entry(endpoint: str) -> Any:
    doc = fixture("ccxt-extracted/ccxt_binance_linear_httpResponses.json")
    return next(e["httpResponse"] for e in doc["entries"] if e["endpoint_inferred"] == endpoint)


def json_type(value: Any) -> str:
    return (
        "number"
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else type(value).__name__
    )


def assert_same_shape(
    ours: dict[str, Any], real: dict[str, Any], stringified: tuple[str, ...] = ()
) -> None:
    """Same keys in the same order with the same JSON types (`stringified`: ints the ccxt
    harness turned into strings, numbers on the real wire)."""
    assert list(ours) == list(real)
    for key, value in real.items():
        expected = "number" if key in stringified else json_type(value)
        assert json_type(ours[key]) == expected, key


@pytest.fixture(scope="module")
def px(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaperExchangeProcess]:
    process = start_paper_exchange(
        tmp_path_factory.mktemp("public"), overlay={"symbols": ALL_SYMBOLS}
    )
    yield process
    process.stop()


def get(px: PaperExchangeProcess, path: str, **params: Any) -> Reply:
    return call(px, lambda c: c.public(path, **params))


def test_ping_is_an_empty_object_with_json_content_type_and_weight(
    px: PaperExchangeProcess,
) -> None:
    reply = get(px, "/fapi/v1/ping")
    assert (reply.status, reply.body) == (200, {})
    assert reply.headers["Content-Type"].startswith("application/json")
    assert int(reply.headers["X-MBX-USED-WEIGHT-1M"]) >= 1


def test_time_is_server_time_in_ms(px: PaperExchangeProcess) -> None:
    reply = get(px, "/fapi/v1/time")
    assert list(reply.body) == ["serverTime"] and isinstance(reply.body["serverTime"], int)
    assert get(px, "/api/v3/time").body["serverTime"] >= reply.body["serverTime"]
    assert get(px, "/api/v3/ping").body == {}


def test_exchange_info_matches_the_real_payload_shape(px: PaperExchangeProcess) -> None:
    ours = get(px, "/fapi/v1/exchangeInfo").body
    real = fixture("nautilus-real/http_futures_market_exchange_info.json")
    assert_same_shape(ours, real)
    assert [r["rateLimitType"] for r in ours["rateLimits"]] == [
        "REQUEST_WEIGHT",
        "ORDERS",
        "ORDERS",
    ]
    for ours_limit in ours["rateLimits"]:
        assert_same_shape(ours_limit, real["rateLimits"][0])
    btc = next(s for s in ours["symbols"] if s["symbol"] == "BTCUSDT")
    real_btc = real["symbols"][0]
    # Binance added keys since 2022 (maxMoveOrderLimit); every real key is there, in order.
    assert [k for k in btc if k in real_btc] == list(real_btc)
    for key, value in real_btc.items():
        assert json_type(btc[key]) == json_type(value), key
    assert [s["symbol"] for s in ours["symbols"]] == ALL_SYMBOLS


def test_klines_rows_match_the_real_ccxt_capture(px: PaperExchangeProcess) -> None:
    real_row = ccxt_entry("GET /fapi/v1/klines")[0]
    rows = get(px, "/fapi/v1/klines", symbol="BTCUSDT", interval="1m", limit=3).body
    assert len(rows) == 3
    for row in rows:
        assert [json_type(v) for v in row] == [json_type(v) for v in real_row]
        assert row[6] == row[0] + 59_999
        assert len(row[1].split(".")[1]) == len(real_row[1].split(".")[1])  # 2 decimals on BTC
    assert [r[0] for r in rows] == [rows[0][0] + i * 60_000 for i in range(3)]


def test_klines_honour_start_time_and_limit(px: PaperExchangeProcess) -> None:
    latest = get(px, "/fapi/v1/klines", symbol="ETHUSDT", interval="5m", limit=10).body
    start = latest[2][0]
    rows = get(
        px, "/fapi/v1/klines", symbol="ETHUSDT", interval="5m", startTime=start, limit=4
    ).body
    assert [r[0] for r in rows] == [start + i * 300_000 for i in range(4)]
    assert rows[:3] == latest[2:5]


def test_kline_siblings_have_the_kline_shape(px: PaperExchangeProcess) -> None:
    real_row = ccxt_entry("GET /fapi/v1/klines")[0]
    for path, params in (
        ("/fapi/v1/continuousKlines", {"pair": "BTCUSDT", "contractType": "PERPETUAL"}),
        ("/fapi/v1/markPriceKlines", {"symbol": "BTCUSDT"}),
        ("/fapi/v1/indexPriceKlines", {"pair": "BTCUSDT"}),
    ):
        rows = get(px, path, interval="1m", limit=2, **params).body
        assert len(rows) == 2, path
        assert [json_type(v) for v in rows[0]] == [json_type(v) for v in real_row], path


def test_ticker_price_v1_and_v2_match_the_docs_shape(px: PaperExchangeProcess) -> None:
    real = fixture("nautilus-docs-derived/http_futures_market_ticker_price.json")
    for path in ("/fapi/v1/ticker/price", "/fapi/v2/ticker/price"):
        assert_same_shape(get(px, path, symbol="BTCUSDT").body, real)
        every = get(px, path).body
        assert len(every) == 6
        assert_same_shape(every[0], real)


def test_premium_index_has_the_docs_keys_and_types(px: PaperExchangeProcess) -> None:
    real = fixture("nautilus-docs-derived/http_futures_market_premium_index.json")
    ours = get(px, "/fapi/v1/premiumIndex", symbol="BTCUSDT").body
    # The docs-derived file lists nextFundingTime before interestRate; Binance's docs (and the
    # digest §5.5) put interestRate first. Key set and types must match; order follows the docs.
    assert sorted(ours) == sorted(real)
    assert list(ours) == [
        "symbol",
        "markPrice",
        "indexPrice",
        "estimatedSettlePrice",
        "lastFundingRate",
        "interestRate",
        "nextFundingTime",
        "time",
    ]
    for key, value in real.items():
        assert json_type(ours[key]) == json_type(value), key
    assert ours["nextFundingTime"] % (8 * 3600 * 1000) == 0


def test_depth_matches_the_real_ccxt_capture(px: PaperExchangeProcess) -> None:
    real = ccxt_entry("GET /fapi/v1/depth")
    ours = get(px, "/fapi/v1/depth", symbol="BTCUSDT", limit=5).body
    assert_same_shape(ours, real, stringified=("lastUpdateId", "E", "T"))
    assert len(ours["bids"]) == len(ours["asks"]) == 5
    assert [json_type(v) for v in ours["bids"][0]] == ["str", "str"]
    assert float(ours["bids"][0][0]) < float(ours["asks"][0][0])


def test_ticker_24hr_and_book_ticker_have_binance_keys(px: PaperExchangeProcess) -> None:
    ticker = get(px, "/fapi/v1/ticker/24hr", symbol="BTCUSDT").body
    assert list(ticker) == [
        "symbol",
        "priceChange",
        "priceChangePercent",
        "weightedAvgPrice",
        "lastPrice",
        "lastQty",
        "openPrice",
        "highPrice",
        "lowPrice",
        "volume",
        "quoteVolume",
        "openTime",
        "closeTime",
        "firstId",
        "lastId",
        "count",
    ]
    assert all(
        isinstance(ticker[k], int) for k in ("openTime", "closeTime", "firstId", "lastId", "count")
    )
    book = get(px, "/fapi/v1/ticker/bookTicker", symbol="BTCUSDT").body
    assert list(book) == ["symbol", "bidPrice", "bidQty", "askPrice", "askQty", "time"]


def test_funding_rate_history_rows(px: PaperExchangeProcess) -> None:
    rows = get(px, "/fapi/v1/fundingRate", symbol="BTCUSDT", limit=3).body
    assert len(rows) == 3
    assert list(rows[0]) == ["symbol", "fundingRate", "fundingTime", "markPrice"]
    assert [r["fundingTime"] for r in rows] == sorted(r["fundingTime"] for r in rows)


def test_sapi_currencies_is_an_empty_list(px: PaperExchangeProcess) -> None:
    assert get(px, "/sapi/v1/capital/config/getall").body == []


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/fapi/v1/klines", {"symbol": "NOPEUSDT", "interval": "1m"}, -1121),
        ("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "7m"}, -1120),
        ("/fapi/v1/klines", {"interval": "1m"}, -1102),
        ("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1501}, -1130),
        ("/fapi/v1/ticker/price", {"symbol": "NOPEUSDT"}, -1121),
    ],
)
def test_bad_public_parameters_get_binance_codes_with_400(
    px: PaperExchangeProcess, path: str, params: dict[str, Any], code: int
) -> None:
    reply = get(px, path, **params)
    assert reply.status == 400
    assert list(reply.body) == ["code", "msg"] and reply.body["code"] == code


def test_unknown_path_is_404_with_a_json_body(px: PaperExchangeProcess) -> None:
    reply = get(px, "/fapi/v1/doesNotExist")
    assert reply.status == 404
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.body["code"] == -1000
    assert "X-MBX-USED-WEIGHT-1M" in reply.headers
