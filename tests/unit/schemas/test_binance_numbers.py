"""Issue 13, hole 10: numbers are validated where they are decoded. Real payloads of
tests/fixtures/binance/ with one number changed to 0, "NaN", "-1" or "Infinity" are refused
with a ValidationError naming the field, so the callers' `bad_message` paths handle them."""

from __future__ import annotations

import json

import msgspec
import pytest

from shared.schemas import binance as b
from tests.unit.schemas.fixtures import raw

DOCS = "nautilus-docs-derived/"
KLINE_WS = DOCS + "rs_market_data_json_kline_stream_closed.json"
BAD = ("0", "NaN", "-1", "Infinity")


def _with(payload: bytes, path: list[object], value: object) -> bytes:
    doc = json.loads(payload)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("field", ["o", "h", "l", "c"])
def test_a_ws_kline_price_not_finite_and_positive_is_refused_naming_it(field, value):
    assert isinstance(b.decode_event(raw(KLINE_WS)), b.KlineUpdate)  # the real one decodes
    bad = _with(raw(KLINE_WS), ["k", field], value)
    with pytest.raises(msgspec.ValidationError, match=rf"at `\$\.k\.{field}`"):
        b.decode_event(bad)
    frame = b'{"stream":"btcusdt@kline_1m","data":' + bad + b"}"
    compact = json.dumps(json.loads(frame), separators=(",", ":")).encode()
    assert b.decode_market_frame(compact) is None  # the feed's fast path: general path reports


@pytest.mark.parametrize("value", ["NaN", "-1", "Infinity"])
def test_a_ws_kline_volume_not_finite_or_negative_is_refused(value):
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.k\.v`"):
        b.decode_event(_with(raw(KLINE_WS), ["k", "v"], value))


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize(("column", "name"), [(1, "open"), (4, "close")])
def test_a_rest_kline_price_not_finite_and_positive_is_refused_naming_it(column, name, value):
    rows = raw(DOCS + "http_futures_market_klines.json")
    assert b.decode_kline_rows(rows)
    with pytest.raises(msgspec.ValidationError, match=rf"at `\$\[0\]\[{column}\]"):
        b.decode_kline_rows(_with(rows, [0, column], value))


@pytest.mark.parametrize("value", ["NaN", "-1", "Infinity"])
@pytest.mark.parametrize("field", ["entryPrice", "markPrice", "liquidationPrice"])
def test_a_position_price_not_finite_or_negative_is_refused_naming_it(field, value):
    rows = raw(DOCS + "rs_http_json_position_risk.json")
    assert b.decode_positions(rows)[0].entry_price > 0
    with pytest.raises(msgspec.ValidationError, match=rf"at `\$\[0\]\.{field}`"):
        b.decode_positions(_with(rows, [0, field], value))


def test_a_flat_position_decodes_with_prices_of_zero():
    rows = raw(DOCS + "rs_http_json_position_risk.json")
    for field in ("positionAmt", "entryPrice", "markPrice", "liquidationPrice", "breakEvenPrice"):
        rows = _with(rows, [0, field], "0")
    (p,) = b.decode_positions(rows)
    assert p.amount == 0 and p.entry_price == 0 and p.liquidation_price == 0


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_a_position_amount_that_is_not_finite_is_refused(value):
    rows = raw(DOCS + "rs_http_json_position_risk.json")
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\[0\]\.positionAmt`"):
        b.decode_positions(_with(rows, [0, "positionAmt"], value))


@pytest.mark.parametrize("value", ["NaN", "-1", "Infinity"])
def test_an_account_update_entry_price_not_finite_or_negative_is_refused(value):
    payload = raw(DOCS + "rs_user_data_json_account_update.json")
    assert isinstance(b.decode_event(payload), b.AccountUpdate)
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.a\.P\[1\]\.ep`"):
        b.decode_event(_with(payload, ["a", "P", 1, "ep"], value))


@pytest.mark.parametrize("value", BAD)
def test_a_rest_mark_price_not_finite_and_positive_is_refused(value):
    payload = raw(DOCS + "http_futures_market_premium_index.json")
    b.decode_mark_prices(payload) if payload.lstrip().startswith(b"[") else b.decode_mark_price(
        payload
    )
    if payload.lstrip().startswith(b"["):
        with pytest.raises(msgspec.ValidationError, match=r"at `\$\[0\]\.markPrice`"):
            b.decode_mark_prices(_with(payload, [0, "markPrice"], value))
    else:
        with pytest.raises(msgspec.ValidationError, match=r"at `\$\.markPrice`"):
            b.decode_mark_price(_with(payload, ["markPrice"], value))


@pytest.mark.parametrize("value", ["NaN", "-1", "Infinity"])
def test_an_order_trade_update_fill_price_not_finite_or_negative_is_refused(value):
    payload = raw(DOCS + "rs_user_data_json_order_update_trade.json")
    assert isinstance(b.decode_event(payload), b.OrderUpdate)
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.o\.L`"):
        b.decode_event(_with(payload, ["o", "L"], value))
