"""Every real REST fixture that matches a schema decodes, and converts to the expected values."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from shared.schemas.binance import (
    decode_account,
    decode_algo_orders,
    decode_exchange_info,
    decode_kline_rows,
    decode_mark_price,
    decode_order,
    decode_orders,
    decode_positions,
    decode_user_trades,
    to_klines,
)
from tests.unit.schemas.fixtures import as_bytes, ccxt_entry, raw, restore_ccxt_integers

D = Decimal


def test_exchange_info_real_2022_capture() -> None:
    info = decode_exchange_info(raw("nautilus-real/http_futures_market_exchange_info.json"))
    assert info.server_time_ms == 1645233611962
    assert info.request_weight_limit_1m == 6000
    assert [s.symbol for s in info.symbols] == ["BTCUSDT", "ETHUSDT", "BTCUSDT_220325"]
    btc = info.symbols[0]
    assert (btc.contract_type, btc.status, btc.margin_asset) == ("PERPETUAL", "TRADING", "USDT")
    assert (btc.tick_size, btc.min_price, btc.max_price) == (D("0.10"), D("402"), D("1246396.60"))
    assert (btc.step_size, btc.min_qty, btc.max_qty) == (D("0.001"), D("0.001"), D("1000"))
    assert (btc.market_step_size, btc.market_max_qty) == (D("0.001"), D("1000"))
    assert btc.min_notional_usdt == D("10")
    assert btc.max_open_orders == 200
    assert (btc.percent_price_up, btc.percent_price_down) == (D("1.1000"), D("0.5454"))
    assert (btc.price_precision, btc.quantity_precision) == (2, 3)
    eth = info.symbols[1]
    assert (eth.tick_size, eth.max_qty, eth.percent_price_down) == (
        D("0.01"),
        D("10000"),
        D("0.9000"),
    )


def test_exchange_info_without_price_filter_names_the_path() -> None:
    text = raw("nautilus-real/http_futures_market_exchange_info.json").decode()
    broken = text.replace('"filterType": "PRICE_FILTER"', '"filterType": "PRICE_FILTER_X"', 1)
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.symbols\[0\]\.filters`"):
        decode_exchange_info(broken)


def test_user_trades_real_capture() -> None:
    trades = decode_user_trades(raw("nautilus-real/http_futures_account_trades.json"))
    first, second = trades
    assert (first.trade_id, first.order_id, first.symbol, first.side) == (
        82357626,
        831238666,
        "ETHUSDT",
        "SELL",
    )
    assert (first.price, first.quantity, first.quote_qty) == (
        D("2778.35"),
        D("0.005"),
        D("13.89175"),
    )
    assert (first.commission, first.commission_asset) == (D("0.00555670"), "USDT")
    assert (first.time_ms, first.is_buyer, first.is_maker) == (1645930322371, False, False)
    assert (second.realized_pnl, second.price, second.is_buyer) == (
        D("-0.00325000"),
        D("2779"),
        True,
    )


def test_user_trades_ccxt_capture_after_restoring_integers() -> None:
    body = ccxt_entry("fetchMyTrades", "GET /fapi/v1/userTrades")
    (trade,) = decode_user_trades(as_bytes(restore_ccxt_integers(body)))
    assert (trade.trade_id, trade.order_id, trade.time_ms) == (272536245, 3524852987, 1699972836419)
    assert (trade.price, trade.quantity, trade.commission) == (
        D("36567.10"),
        D("0.010"),
        D("0.14626840"),
    )


def test_ccxt_stringified_ids_are_refused_with_the_field_path() -> None:
    body = ccxt_entry("fetchOpenOrder", "GET /fapi/v1/openOrder")
    with pytest.raises(
        msgspec.ValidationError, match=r"Expected `int`, got `str` - at `\$\.orderId`"
    ):
        decode_order(as_bytes(body))


def test_open_order_ccxt_capture() -> None:
    body = restore_ccxt_integers(ccxt_entry("fetchOpenOrder", "GET /fapi/v1/openOrder"))
    order = decode_order(as_bytes(body))
    assert (order.order_id, order.symbol, order.status) == (664082074, "LTCUSDT", "NEW")
    assert order.client_order_id == "x-xcKtGhcu68f8383451844295b3e8b9"
    assert (order.order_type, order.time_in_force, order.side) == ("LIMIT", "GTX", "BUY")
    assert (order.price, order.quantity, order.executed_qty) == (D("50.00"), D("0.200"), D("0.000"))
    assert (order.create_time_ms, order.update_time_ms) == (1707907323983, 1707907323991)
    assert not order.is_reduce_only and not order.is_close_position


@pytest.mark.parametrize(
    ("method", "endpoint", "price", "quantity", "update_ms"),
    [
        ("createOrders", "POST /fapi/v1/batchOrders", "110001.00", "0.200", 1739781831932),
        ("editOrders", "PUT /fapi/v1/batchOrders", "666666.00", "0.100", 1739782577805),
    ],
)
def test_batch_order_replies_ccxt_capture(
    method: str, endpoint: str, price: str, quantity: str, update_ms: int
) -> None:
    (order,) = decode_orders(as_bytes(ccxt_entry(method, endpoint)))  # real ints, no restoring
    assert (order.order_id, order.side, order.position_side) == (4087922044, "SELL", "BOTH")
    assert (order.price, order.quantity, order.update_time_ms) == (D(price), D(quantity), update_ms)
    assert order.create_time_ms is None  # only GET replies carry `time`


def test_order_docs_example() -> None:
    order = decode_order(raw("nautilus-docs-derived/rs_http_json_order_response.json"))
    assert (order.order_id, order.client_order_id, order.price) == (
        12345678,
        "testOrder123",
        D("50000.00"),
    )
    assert (order.stop_price, order.create_time_ms) == (D("0.00"), 1625474304765)


def test_legacy_trailing_stop_order_docs_example() -> None:
    (order,) = decode_orders(raw("nautilus-docs-derived/http_futures_account_orders.json"))
    assert (order.order_type, order.position_side, order.stop_price) == (
        "TRAILING_STOP_MARKET",
        "SHORT",
        D("9300"),
    )
    assert order.avg_price == D("0.00000")


def test_position_risk_v3_ccxt_capture() -> None:
    body = ccxt_entry("fetchPositions", "GET /fapi/v3/positionRisk")
    (pos,) = decode_positions(as_bytes(restore_ccxt_integers(body)))
    assert (pos.symbol, pos.position_side, pos.amount) == ("BTCUSDT", "BOTH", D("0.009"))
    assert (pos.entry_price, pos.break_even_price) == (D("67445.9"), D("67479.62295"))
    assert (pos.mark_price, pos.unrealized_pnl_usdt) == (D("67502.68519858"), D("0.51106678"))
    assert (pos.liquidation_price, pos.notional_usdt) == (D("64846.98753790"), D("607.52416678"))
    assert pos.update_time_ms == 1722161166529


@pytest.mark.parametrize(
    ("fixture", "amounts"),
    [
        ("nautilus-docs-derived/http_futures_account_positions_one_way.json", ["0.000"]),
        ("nautilus-docs-derived/http_futures_account_positions_hedge.json", ["20.000", "-10.000"]),
        ("nautilus-docs-derived/rs_http_json_position_risk.json", ["0.001"]),
    ],
)
def test_position_risk_v2_docs_examples_decode_with_the_shared_fields(
    fixture: str, amounts: list[str]
) -> None:
    positions = decode_positions(raw(fixture))
    assert [p.amount for p in positions] == [D(a) for a in amounts]
    assert all(p.notional_usdt is None or p.notional_usdt == D("51.0") for p in positions)


def test_account_v3_ccxt_capture() -> None:
    body = ccxt_entry("fetchPositions", "GET /fapi/v3/account")
    account = decode_account(as_bytes(restore_ccxt_integers(body)))
    assert account.wallet_balance_usdt == D("25.72610060")
    assert account.unrealized_pnl_usdt == D("0.54230362")
    assert account.available_balance_usdt == D("18.65949928")
    assert len(account.assets) == 6 and account.assets[0].asset == "FDUSD"
    (pos,) = account.positions
    assert (pos.symbol, pos.amount, pos.notional_usdt) == ("BTCUSDT", D("0.009"), D("607.55548506"))
    assert (pos.initial_margin_usdt, pos.update_time_ms) == (D("7.59444356"), 1722161166529)


def test_account_v2_ccxt_capture_and_docs_example() -> None:
    body = restore_ccxt_integers(ccxt_entry("fetchBalance", "GET /fapi/v2/account"))
    ccxt_account = decode_account(as_bytes(body))
    assert ccxt_account.wallet_balance_usdt == D("31.02261200") and ccxt_account.positions == ()
    assert ccxt_account.assets[0].update_time_ms == 1701270042059
    docs = decode_account(raw("nautilus-docs-derived/rs_http_json_account_info_v2.json"))
    assert docs.margin_balance_usdt == D("23.72469206")
    assert docs.positions[0].notional_usdt is None  # v2 rows have no notional


def test_open_algo_orders_docs_example_with_the_older_type_key() -> None:
    (algo,) = decode_algo_orders(raw("nautilus-docs-derived/rs_http_json_open_algo_orders.json"))
    assert (algo.algo_id, algo.client_algo_id, algo.order_type) == (
        123456789,
        "test-algo-order-1",
        "STOP_MARKET",
    )
    assert (algo.status, algo.trigger_price, algo.working_type) == (
        "NEW",
        D("45000.00"),
        "MARK_PRICE",
    )
    assert (algo.quantity, algo.price, algo.child_order_id) == (D("0.001"), None, None)
    assert not algo.is_close_position


def test_klines_docs_example_and_ccxt_capture() -> None:
    rows = decode_kline_rows(raw("nautilus-docs-derived/http_futures_market_klines.json"))
    (kline,) = to_klines(rows, "BTCUSDT", "1w", now_ms=1499644800000)
    assert (kline.open_time_ms, kline.close_time_ms) == (1499040000000, 1499644799999)
    assert kline.trades == 308
    assert (kline.open, kline.high, kline.low, kline.close) == (
        D("0.01634790"),
        D("0.80000000"),
        D("0.01575800"),
        D("0.01577100"),
    )
    assert kline.is_closed
    ccxt_rows = decode_kline_rows(as_bytes(ccxt_entry("fetchOHLCV", "GET /fapi/v1/klines")))
    klines = to_klines(ccxt_rows, "BTCUSDT", "1m", now_ms=1712738600000)
    assert [k.close for k in klines] == [D("71481.90"), D("70459.40"), D("70459.40")]
    assert [k.is_closed for k in klines] == [True, True, False]  # the last one is still open
    assert (klines[1].volume, klines[1].taker_buy_volume, klines[1].trades) == (
        D("0.120"),
        D("0.061"),
        9,
    )


def test_premium_index_docs_example() -> None:
    mark = decode_mark_price(raw("nautilus-docs-derived/http_futures_market_premium_index.json"))
    assert (mark.symbol, mark.mark_price, mark.index_price) == (
        "BTCUSDT",
        D("11793.63104562"),
        D("11781.80495970"),
    )
    assert (mark.funding_rate, mark.next_funding_time_ms, mark.time_ms) == (
        D("0.00038246"),
        1597392000000,
        1597370495002,
    )
