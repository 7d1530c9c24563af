"""Every real WebSocket fixture that matches a schema decodes into the expected readable event."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from shared.schemas.binance import (
    AccountUpdate,
    AlgoUpdate,
    BookTicker,
    KlineUpdate,
    ListenKeyExpired,
    MarkPrice,
    OrderUpdate,
    TradeLite,
    UnknownEvent,
    decode_event,
    event_type,
    unwrap,
)
from tests.unit.schemas.fixtures import raw

D = Decimal
REAL = "nautilus-real/"
DOCS = "nautilus-docs-derived/"


def test_algo_update_triggering_real_capture_in_a_combined_wrapper() -> None:
    message = raw(REAL + "ws_futures_algo_update_triggering.json")
    assert unwrap(message)[:2] == ("test", "ALGO_UPDATE")
    event = decode_event(message)
    assert isinstance(event, AlgoUpdate)
    assert (event.client_algo_id, event.algo_id) == (
        "O-20251211-053131-TEST-000-1",
        1000000033225453,
    )
    assert (event.symbol, event.side, event.order_type, event.status) == (
        "DOGEUSDT",
        "BUY",
        "STOP_MARKET",
        "TRIGGERING",
    )
    assert (event.quantity, event.trigger_price, event.working_type) == (
        D("38"),
        D("0.13855"),
        "CONTRACT_PRICE",
    )
    assert (event.child_order_id, event.avg_fill_price, event.filled_qty) == (None, None, None)
    assert (event.event_time_ms, event.transaction_time_ms, event.trigger_time_ms) == (
        1765431097020,
        1765431097019,
        1765431097019,
    )


@pytest.mark.parametrize(
    ("fixture", "status", "avg", "filled", "child"),
    [
        ("ws_futures_algo_update_triggered.json", "TRIGGERED", "0", "0", 88937381063),
        ("ws_futures_algo_update_finished.json", "FINISHED", "0.13856", "38", 88937381063),
        ("ws_futures_algo_update_finished_canceled.json", "FINISHED", "0", "0", 88937381064),
    ],
)
def test_algo_update_lifecycle_real_captures(
    fixture: str, status: str, avg: str, filled: str, child: int
) -> None:
    event = decode_event(raw(REAL + fixture))
    assert isinstance(event, AlgoUpdate)
    assert (event.status, event.avg_fill_price, event.filled_qty) == (status, D(avg), D(filled))
    assert event.child_order_id == child
    assert not event.is_close_position and not event.is_reduce_only


def test_trade_lite_real_capture_keeps_a_64_bit_order_id() -> None:
    event = decode_event(raw(REAL + "ws_futures_trade_lite.json"))
    assert isinstance(event, TradeLite)
    assert event.order_id == 8389765739703625592
    assert (event.symbol, event.side) == ("ETHUSDT", "BUY")
    assert event.client_order_id == "O-20240930-081155-001-000-29"
    assert (event.last_filled_qty, event.last_filled_price, event.trade_id) == (
        D("0.037"),
        D("2631.90"),
        4467432841,
    )
    assert not event.is_maker


@pytest.mark.parametrize(
    ("fixture", "is_closed", "low"),
    [
        ("rs_market_data_json_kline_stream_open.json", False, "0.0015"),
        ("rs_market_data_json_kline_stream_closed.json", True, "0.0010"),
    ],
)
def test_kline_events_docs_examples(fixture: str, is_closed: bool, low: str) -> None:
    event = decode_event(raw(DOCS + fixture))
    assert isinstance(event, KlineUpdate)
    k = event.kline
    assert (k.symbol, k.interval, k.open_time_ms, k.close_time_ms) == (
        "BTCUSDT",
        "1m",
        1638747660000,
        1638747719999,
    )
    assert (k.open, k.close, k.high, k.low) == (D("0.0010"), D("0.0020"), D("0.0025"), D(low))
    assert (k.volume, k.quote_volume, k.trades, k.is_closed) == (
        D("1000"),
        D("1.0000"),
        100,
        is_closed,
    )
    assert (k.taker_buy_volume, k.taker_buy_quote_volume) == (D("500"), D("0.500"))


def test_mark_price_update_docs_example() -> None:
    event = decode_event(raw(DOCS + "rs_market_data_json_mark_price_stream.json"))
    assert event == MarkPrice(
        symbol="BTCUSDT",
        mark_price=D("11794.15000000"),
        index_price=D("11784.62659091"),
        estimated_settle_price=D("11784.25641265"),
        funding_rate=D("0.00038167"),
        next_funding_time_ms=1562306400000,
        time_ms=1562305380000,
    )


def test_book_ticker_docs_example() -> None:
    event = decode_event(raw(DOCS + "rs_market_data_json_book_ticker_stream.json"))
    assert event == BookTicker(
        symbol="BNBUSDT",
        update_id=400900217,
        bid_price=D("25.35190000"),
        bid_qty=D("31.21000000"),
        ask_price=D("25.36520000"),
        ask_qty=D("40.66000000"),
        event_time_ms=1568014460893,
        transaction_time_ms=1568014460891,
    )


def test_agg_trade_is_an_unknown_event_the_caller_skips() -> None:
    message = raw(DOCS + "rs_market_data_json_agg_trade_stream.json")
    assert event_type(message) == "aggTrade"
    assert decode_event(message) == UnknownEvent(event_type="aggTrade", stream=None)


def test_account_update_docs_example() -> None:
    event = decode_event(raw(DOCS + "rs_user_data_json_account_update.json"))
    assert isinstance(event, AccountUpdate)
    assert (event.reason, event.event_time_ms) == ("ORDER", 1564745798939)
    (balance,) = event.balances
    assert (balance.asset, balance.wallet_balance, balance.cross_wallet_balance) == (
        "USDT",
        D("122624.12345678"),
        D("100.12345678"),
    )
    both, long, short = event.positions
    assert (both.position_side, both.amount, both.accumulated_realized) == (
        "BOTH",
        D("0"),
        D("200"),
    )
    assert (long.amount, long.entry_price, long.break_even_price) == (
        D("20"),
        D("6563.6"),
        D("6563.559"),
    )
    assert (short.amount, short.unrealized_pnl, short.margin_type) == (
        D("-10"),
        D("-1423.15600"),
        "isolated",
    )


@pytest.mark.parametrize(
    ("fixture", "execution", "status", "filled", "commission", "realized"),
    [
        ("rs_user_data_json_order_update_new.json", "NEW", "NEW", "0", "0", "0"),
        (
            "rs_user_data_json_order_update_trade.json",
            "TRADE",
            "PARTIALLY_FILLED",
            "0.001",
            "0.01000000",
            "12.34",
        ),
        (
            "rs_user_data_json_order_update_trade_partial.json",
            "TRADE",
            "PARTIALLY_FILLED",
            "0.001",
            "0.01000000",
            "12.34",
        ),
        (
            "rs_user_data_json_order_update_calculated.json",
            "CALCULATED",
            "FILLED",
            "0.014",
            "0.06937084",
            "-5.67",
        ),
    ],
)
def test_order_trade_update_docs_examples(
    fixture: str, execution: str, status: str, filled: str, commission: str, realized: str
) -> None:
    event = decode_event(raw(DOCS + fixture))
    assert isinstance(event, OrderUpdate)
    assert (event.execution_type, event.status, event.cum_filled_qty) == (
        execution,
        status,
        D(filled),
    )
    assert (event.commission, event.commission_asset) == (D(commission), "USDT")
    assert event.realized_pnl == D(realized)


def test_liquidation_order_update_keeps_binance_s_autoclose_client_id() -> None:
    event = decode_event(raw(DOCS + "rs_user_data_json_order_update_calculated.json"))
    assert isinstance(event, OrderUpdate)
    assert (event.client_order_id, event.order_id, event.is_reduce_only) == (
        "autoclose-1234567890",
        8886999,
        True,
    )
    assert (event.avg_price, event.last_filled_price, event.trade_id) == (
        D("9910.12"),
        D("9910.12"),
        12345999,
    )


def test_order_update_without_commission_fields_reads_zero() -> None:
    # §6.5: N and n are omitted when there is no commission; drop them from a real example.
    text = raw(DOCS + "rs_user_data_json_order_update_new.json").decode()
    text = text.replace('"N": "USDT",', "").replace('"n": "0",', "")
    event = decode_event(text)
    assert isinstance(event, OrderUpdate)
    assert (event.commission, event.commission_asset) == (D(0), "")


@pytest.mark.parametrize(
    ("fixture", "status"),
    [
        ("rs_user_data_json_algo_update_new.json", "NEW"),
        ("rs_user_data_json_algo_update_canceled.json", "CANCELED"),
    ],
)
def test_algo_update_docs_examples(fixture: str, status: str) -> None:
    event = decode_event(raw(DOCS + fixture))
    assert isinstance(event, AlgoUpdate)
    assert (event.status, event.order_type, event.price, event.reason) == (
        status,
        "TAKE_PROFIT",
        D("750"),
        "Reduce Only reject",
    )


# The real payload quoted in go-binance issue #510 (BINANCE-API.md §6.3): `E` is a string.
LISTEN_KEY_EXPIRED_REAL = b'{"e": "listenKeyExpired","E": "1693427319838","listenKey": "KEY"}'


def test_listen_key_expired_with_string_time_as_binance_sends_it() -> None:
    event = decode_event(LISTEN_KEY_EXPIRED_REAL)
    assert event == ListenKeyExpired(event_time_ms=1693427319838, listen_key="KEY")


def test_listen_key_expired_with_integer_time_as_the_sdk_models_it() -> None:
    message = LISTEN_KEY_EXPIRED_REAL.replace(b'"1693427319838"', b"1693427319838")
    assert decode_event(message) == ListenKeyExpired(event_time_ms=1693427319838, listen_key="KEY")


def test_listen_key_expired_with_a_non_numeric_time_names_the_field() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.E`"):
        decode_event(LISTEN_KEY_EXPIRED_REAL.replace(b'"1693427319838"', b'"soon"'))


def test_a_wrong_type_deep_in_an_event_reports_the_field_path() -> None:
    text = raw(REAL + "ws_futures_algo_update_finished.json").decode()
    with pytest.raises(
        msgspec.ValidationError, match=r"Expected `int`, got `str` - at `\$\.o\.aid`"
    ):
        decode_event(text.replace('"aid":1000000033225453', '"aid":"1000000033225453"'))


def test_combined_wrapper_around_an_unknown_event_keeps_the_stream_name() -> None:
    message = (
        b'{"stream":"btcusdt@aggTrade","data":'
        + raw(DOCS + "rs_market_data_json_agg_trade_stream.json")
        + b"}"
    )
    assert decode_event(message) == UnknownEvent(event_type="aggTrade", stream="btcusdt@aggTrade")


def test_malformed_json_is_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_event(b'{"e":"kline",')


# MARGIN_CALL and ACCOUNT_CONFIG_UPDATE: Binance's documented examples (BINANCE-API.md §6.8, field
# list confirmed by the SDK models), and what the paper exchange emits
# (procs/paper_exchange/engine/events.py).
MARGIN_CALL = (
    b'{"e":"MARGIN_CALL","E":1587727187525,"cw":"3.16812045","p":[{"s":"ETHUSDT","ps":"LONG",'
    b'"pa":"1.327","mt":"CROSSED","iw":"0","mp":"187.17127","up":"-1.166074","mm":"1.614445"}]}'
)
LEVERAGE_CONFIG = (
    b'{"e":"ACCOUNT_CONFIG_UPDATE","E":1611646737479,"T":1611646737476,"ac":{"s":"BTCUSDT","l":25}}'
)
MULTI_ASSETS_CONFIG = (
    b'{"e":"ACCOUNT_CONFIG_UPDATE","E":1611646737479,"T":1611646737476,"ai":{"j":true}}'
)


def test_margin_call_decodes_with_every_position_and_the_cross_wallet() -> None:
    from shared.schemas.binance import MarginCall, MarginCallPosition

    event = decode_event(MARGIN_CALL)
    assert event == MarginCall(
        event_time_ms=1587727187525,
        cross_wallet_balance=D("3.16812045"),
        positions=(
            MarginCallPosition(
                symbol="ETHUSDT",
                position_side="LONG",
                amount=D("1.327"),
                margin_type="CROSSED",
                isolated_wallet=D("0"),
                mark_price=D("187.17127"),
                unrealized_pnl=D("-1.166074"),
                maintenance_margin=D("1.614445"),
            ),
        ),
    )
    isolated = MARGIN_CALL.replace(b'"cw":"3.16812045",', b"")  # no `cw` for an isolated call
    assert decode_event(isolated).cross_wallet_balance is None  # type: ignore[union-attr]
    with pytest.raises(msgspec.ValidationError, match=r"\$\.p\[0\]\.pa"):
        decode_event(MARGIN_CALL.replace(b'"pa":"1.327"', b'"pa":"x"'))


def test_account_config_update_decodes_leverage_or_multi_assets_and_rejects_neither() -> None:
    from procs.paper_exchange.engine.events import leverage_update
    from shared.schemas.binance import AccountConfigUpdate

    assert decode_event(LEVERAGE_CONFIG) == AccountConfigUpdate(
        event_time_ms=1611646737479,
        transaction_time_ms=1611646737476,
        symbol="BTCUSDT",
        leverage=25,
        is_multi_assets=None,
    )
    multi = decode_event(MULTI_ASSETS_CONFIG)
    assert isinstance(multi, AccountConfigUpdate) and multi.is_multi_assets is True
    assert multi.symbol is None and multi.leverage is None
    paper = msgspec.json.encode(leverage_update("ETHUSDT", 20, 1_700_000_000_000))
    assert decode_event(paper).leverage == 20  # type: ignore[union-attr]
    with pytest.raises(msgspec.ValidationError, match="neither"):
        decode_event(b'{"e":"ACCOUNT_CONFIG_UPDATE","E":1,"T":1}')
