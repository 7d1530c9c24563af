"""The feed's pure logic: closed REST klines, holes, bus payloads, account state, Redis mirror."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from procs.feed.logic.state import (
    INTERVAL_MS,
    AccountState,
    CacheMirror,
    backfill_start_ms,
    bus_kline,
    bus_mark,
    closed_new_klines,
    has_hole,
)
from shared.schemas import binance as b
from shared.schemas import bus
from tests.unit.schemas.fixtures import raw

DOCS = "nautilus-docs-derived/"
T0 = 1_700_000_040_000  # a minute boundary


def rest_kline() -> b.Kline:
    """The docs-derived REST kline row, decoded as the client does."""
    rows = b.decode_kline_rows(raw(DOCS + "http_futures_market_klines.json"))
    (kline,) = b.to_klines(rows, "BTCUSDT", "1m", now_ms=2**62)
    return kline


def bars(*opens_ms: int, last_closed: bool) -> list[b.Kline]:
    base = rest_kline()
    out = [
        msgspec.structs.replace(
            base, open_time_ms=t, close_time_ms=t + INTERVAL_MS - 1, is_closed=True
        )
        for t in opens_ms
    ]
    out[-1] = msgspec.structs.replace(out[-1], is_closed=last_closed)
    return out


def event(name: str) -> b.StreamEvent:
    return b.decode_event(raw(DOCS + name))


def test_closed_new_klines_skips_the_open_candle_and_bars_already_stored() -> None:
    rows = bars(T0, T0 + INTERVAL_MS, T0 + 2 * INTERVAL_MS, last_closed=False)
    assert [k.open_time_ms for k in closed_new_klines(rows, T0)] == [T0 + INTERVAL_MS]
    assert [k.open_time_ms for k in closed_new_klines(rows, None)] == [T0, T0 + INTERVAL_MS]


def test_closed_new_klines_trusts_every_row_with_a_successor_whatever_the_server_clock() -> None:
    # The server-time estimate lags a fast paper clock: rows look open although a newer one exists.
    fresh = bars(T0, T0 + INTERVAL_MS, last_closed=False)
    rows = [msgspec.structs.replace(k, is_closed=False) for k in fresh]
    assert [(k.open_time_ms, k.is_closed) for k in closed_new_klines(rows, None)] == [(T0, True)]
    closed = bars(T0, T0 + INTERVAL_MS, last_closed=True)
    assert [k.open_time_ms for k in closed_new_klines(closed, None)] == [T0, T0 + INTERVAL_MS]
    assert closed_new_klines([], T0) == []


def test_has_hole_only_when_bars_are_missing_after_the_last_stored_one() -> None:
    assert not has_hole(None, T0)
    assert not has_hole(T0, T0 + INTERVAL_MS)
    assert not has_hole(T0, T0)  # a repeat is not a hole (the writer ignores it)
    assert has_hole(T0, T0 + 2 * INTERVAL_MS)
    assert backfill_start_ms(T0) == T0 + INTERVAL_MS


def test_bus_kline_and_mark_carry_the_exchange_values_as_floats() -> None:
    k = bus_kline(rest_kline())
    assert (k.open_time_ms, k.close_time_ms, k.ts_ms) == (
        1499040000000,
        1499644799999,
        1499644799999,
    )
    assert (k.open, k.high, k.low, k.close, k.trades) == (0.0163479, 0.8, 0.015758, 0.015771, 308)
    update = event("rs_market_data_json_kline_stream_closed.json")
    assert isinstance(update, b.KlineUpdate) and bus_kline(update.kline).is_closed
    mark = event("rs_market_data_json_mark_price_stream.json")
    assert isinstance(mark, b.MarkPrice)
    m = bus_mark(mark)
    assert (m.symbol, m.price, m.ts_ms) == (mark.symbol, float(mark.mark_price), mark.time_ms)


def test_account_update_sets_positions_and_hedge_legs_are_netted() -> None:
    update = event("rs_user_data_json_account_update.json")
    assert isinstance(update, b.AccountUpdate)
    messages = AccountState().apply_account_update(update)
    assert [t for t, _ in messages] == ["position.BTCUSDT"]
    p = messages[0][1]
    assert isinstance(p, bus.Position)
    assert p.quantity == Decimal("10") and p.entry_price == Decimal("6563.6")  # 20 long, -10 short
    assert p.updated_ms == update.transaction_time_ms and not p.has_stop


def test_account_update_older_than_the_snapshot_is_ignored() -> None:
    update = event("rs_user_data_json_account_update.json")
    assert isinstance(update, b.AccountUpdate)
    (position,) = b.decode_positions(raw(DOCS + "rs_http_json_position_risk.json"))
    state = AccountState()
    state.replace(
        [
            msgspec.structs.replace(
                position, position_side="LONG", update_time_ms=update.transaction_time_ms + 1
            )
        ],
        [],
        [],
    )
    ((_, p),) = state.apply_account_update(update)  # BOTH and SHORT are newer, LONG is not
    assert state.legs[("BTCUSDT", "LONG")].amount == Decimal("0.001")
    assert isinstance(p, bus.Position) and p.quantity == Decimal("-9.999")


def test_order_updates_keep_open_orders_and_final_ones_leave_and_stay_closed() -> None:
    new = event("rs_user_data_json_order_update_new.json")
    trade = event("rs_user_data_json_order_update_trade.json")
    assert isinstance(new, b.OrderUpdate) and isinstance(trade, b.OrderUpdate)
    state = AccountState()
    ((topic, order),) = state.apply_order_update(new)
    assert topic == "order.BTCUSDT" and isinstance(order, bus.OrderState)
    assert order.status == "NEW" and "TEST" in state.orders
    filled = msgspec.structs.replace(
        trade, status="FILLED", transaction_time_ms=trade.transaction_time_ms + 1
    )
    ((_, final),) = state.apply_order_update(filled)
    assert isinstance(final, bus.OrderState) and final.status == "FILLED"
    assert state.orders == {}
    assert state.apply_order_update(new) == []  # a late NEW cannot reopen a final order


def test_a_protective_algo_stop_marks_the_position_and_its_cancel_unmarks_it() -> None:
    algo = event("rs_user_data_json_algo_update_new.json")
    canceled = event("rs_user_data_json_algo_update_canceled.json")
    assert isinstance(algo, b.AlgoUpdate) and isinstance(canceled, b.AlgoUpdate)
    stop = msgspec.structs.replace(algo, order_type="STOP_MARKET", is_close_position=True)
    state = AccountState()
    messages = state.apply_algo_update(stop)
    assert [t for t, _ in messages] == ["order.BNBUSDT", "position.BNBUSDT"]
    assert state.has_stop("BNBUSDT")
    gone = state.apply_algo_update(msgspec.structs.replace(canceled, order_type="STOP_MARKET"))
    assert [t for t, _ in gone] == ["order.BNBUSDT", "position.BNBUSDT"]
    position = gone[1][1]
    assert isinstance(position, bus.Position) and not position.has_stop


def test_replace_takes_the_rest_snapshot_and_zeroes_vanished_positions() -> None:
    update = event("rs_user_data_json_account_update.json")
    assert isinstance(update, b.AccountUpdate)
    positions = b.decode_positions(raw(DOCS + "rs_http_json_position_risk.json"))
    orders = b.decode_orders(raw(DOCS + "http_futures_account_orders.json"))
    algos = b.decode_algo_orders(raw(DOCS + "rs_http_json_open_algo_orders.json"))
    state = AccountState()
    eth = msgspec.structs.replace(positions[0], symbol="ETHUSDT")
    state.replace([eth], [], [])
    messages = state.replace(positions, orders, algos)
    topics = [t for t, _ in messages]
    assert topics == ["position.BTCUSDT", "position.ETHUSDT", "order.BTCUSDT", "order.BTCUSDT"]
    eth_position = messages[1][1]
    assert isinstance(eth_position, bus.Position) and eth_position.quantity == 0
    assert set(state.orders) == {"abc", "test-algo-order-1"}
    assert not state.has_stop("BTCUSDT")  # that algo STOP_MARKET is neither reduce-only nor close


def test_mirror_sends_everything_first_then_only_changes_and_everything_after_a_failure() -> None:
    mirror = CacheMirror()
    mirror.set_latest("mark.BTCUSDT", b"m1", 1)
    mirror.set_order("a", b"open")
    first = mirror.take()
    assert (
        first.is_full and first.latest == {"mark.BTCUSDT": b"m1"} and first.orders == {"a": b"open"}
    )
    assert mirror.take().is_empty
    mirror.set_latest("kline.1m.BTCUSDT", b"k1", 7)
    mirror.set_order("a", None)
    batch = mirror.take()
    assert not batch.is_full and batch.latest == {"kline.1m.BTCUSDT": b"k1"}
    assert batch.seqs == {"kline.1m.BTCUSDT": 7} and batch.removed_orders == ["a"]
    mirror.failed()
    again = mirror.take()
    assert again.is_full and again.seqs == {"mark.BTCUSDT": 1, "kline.1m.BTCUSDT": 7}
    assert again.orders == {}


def test_mirror_replace_orders_removes_the_ones_not_reset() -> None:
    mirror = CacheMirror()
    mirror.set_order("a", b"1")
    mirror.set_order("b", b"2")
    mirror.take()
    mirror.replace_orders({})
    mirror.set_order("b", b"3")
    batch = mirror.take()
    assert batch.orders == {"b": b"3"} and batch.removed_orders == ["a"]
