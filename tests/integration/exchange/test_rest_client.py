"""The exchange client against the real paper exchange: market data, orders, algo stops,
positions, rejections surfaced with their codes, reconciliation by client id, listenKeys."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from decimal import ROUND_DOWN, Decimal
from typing import TypeVar

import pytest

from shared.core.ids import client_order_id
from shared.exchange.errors import RejectedError, UnknownListenKeyError, UnknownOrderError
from shared.exchange.rest import ExchangeClient
from tests.integration.exchange.conftest import client_config, client_logger
from tests.paper_exchange_fixture import PaperExchangeProcess

T = TypeVar("T")
BTC = "BTCUSDT"
TICK = Decimal("0.10")


def run(px: PaperExchangeProcess, scenario: Callable[[ExchangeClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with ExchangeClient(client_config(px), logger=client_logger()) as client:
            return await scenario(client)

    return asyncio.run(main())


def price_at(mark: Decimal, factor: str) -> Decimal:
    return (mark * Decimal(factor) / TICK).to_integral_value(rounding=ROUND_DOWN) * TICK


async def mark_of(client: ExchangeClient, symbol: str = BTC) -> Decimal:
    (mark,) = await client.mark_prices(symbol)
    return mark.mark_price


def test_exchange_info_klines_and_mark_prices(paper: PaperExchangeProcess) -> None:
    async def scenario(c: ExchangeClient) -> None:
        info = await c.exchange_info()
        assert info.request_weight_limit_1m == 2400
        btc = next(s for s in info.symbols if s.symbol == BTC)
        assert (btc.tick_size, btc.step_size, btc.min_notional_usdt) == (
            TICK,
            Decimal("0.001"),
            Decimal("5"),
        )
        klines = await c.klines(BTC, "1m", limit=5)
        assert len(klines) == 5 and [k.is_closed for k in klines] == [True] * 4 + [False]
        steps = {b.open_time_ms - a.open_time_ms for a, b in itertools.pairwise(klines)}
        assert steps == {60_000}
        window = await c.klines(
            BTC, "1m", start_ms=klines[0].open_time_ms, end_ms=klines[2].open_time_ms
        )
        assert [k.open_time_ms for k in window] == [k.open_time_ms for k in klines[:3]]
        assert window[0].close == klines[0].close
        marks = await c.mark_prices()
        assert {m.symbol for m in marks} == {"BTCUSDT", "ETHUSDT"}
        assert all(m.mark_price > 0 for m in marks)

    run(paper, scenario)


def test_limit_order_is_placed_listed_and_cancelled_by_client_id(
    paper: PaperExchangeProcess,
) -> None:
    cid = client_order_id("limit1", "entry", 0)

    async def scenario(c: ExchangeClient) -> None:
        price = price_at(await mark_of(c), "0.97")
        order = await c.new_order(BTC, "BUY", "LIMIT", Decimal("0.002"), cid, price=price)
        assert (order.client_order_id, order.status, order.price) == (cid, "NEW", price)
        assert [o.client_order_id for o in await c.open_orders(BTC)] == [cid]
        cancelled = await c.cancel_order(BTC, cid)
        assert (cancelled.order_id, cancelled.status) == (order.order_id, "CANCELED")
        assert await c.open_orders() == []
        with pytest.raises(UnknownOrderError) as err:
            await c.cancel_order(BTC, cid)
        assert err.value.code == -2011
        found = await c.fetch_order_by_client_id(BTC, cid)
        assert found is not None and found.status == "CANCELED"
        assert await c.fetch_order_by_client_id(BTC, "slt-never-entry-0") is None

    run(paper, scenario)


def test_entry_fills_then_close_position_stop_protects_it_then_flatten(
    paper: PaperExchangeProcess,
) -> None:
    entry = client_order_id("flow1", "entry", 0)
    stop = client_order_id("flow1", "stop", 0)
    flat = client_order_id("flow1", "flat", 0)

    async def scenario(c: ExchangeClient) -> None:
        assert (await c.set_leverage(BTC, 5)).leverage == 5
        tiers = (await c.leverage_brackets(BTC)).brackets
        assert (tiers[0].max_leverage, tiers[0].notional_cap_usdt) == (125, Decimal(50000))
        assert tiers[1].maint_margin_rate == Decimal("0.005")
        assert await c.set_margin_type(BTC, "CROSSED") is False  # already cross: -4046 is fine
        filled = await c.new_order(BTC, "BUY", "MARKET", Decimal("0.003"), entry)
        assert (filled.status, filled.executed_qty) == ("FILLED", Decimal("0.003"))
        assert filled.avg_price > 0
        (position,) = await c.position_risk(BTC)
        assert (position.amount, position.entry_price) == (Decimal("0.003"), filled.avg_price)
        trigger = price_at(await mark_of(c), "0.95")
        algo = await c.new_algo_order(
            BTC, "SELL", "STOP_MARKET", trigger, stop, is_close_position=True
        )
        assert (algo.client_algo_id, algo.status, algo.order_type) == (stop, "NEW", "STOP_MARKET")
        assert (algo.trigger_price, algo.working_type) == (trigger, "MARK_PRICE")
        assert algo.is_close_position
        assert [a.client_algo_id for a in await c.open_algo_orders(BTC)] == [stop]
        again = await c.fetch_algo_order_by_client_id(stop)
        assert again is not None and again.algo_id == algo.algo_id
        account = await c.account()
        assert [(p.symbol, p.amount) for p in account.positions] == [(BTC, Decimal("0.003"))]
        closed = await c.new_order(
            BTC, "SELL", "MARKET", Decimal("0.003"), flat, is_reduce_only=True
        )
        assert closed.status == "FILLED"
        assert [p.amount for p in await c.position_risk(BTC)] in ([], [Decimal(0)])
        await c.cancel_all_algo_orders(BTC)
        assert await c.open_algo_orders(BTC) == []
        trades = await c.user_trades(BTC)
        assert {t.order_id for t in trades} >= {filled.order_id, closed.order_id}
        income = await c.income(symbol=BTC, income_type="COMMISSION")
        assert income and all(i.amount < 0 and i.asset == "USDT" for i in income)

    run(paper, scenario)


def test_algo_stop_cancelled_by_client_id(paper: PaperExchangeProcess) -> None:
    stop = client_order_id("algo2", "stop", 0)

    async def scenario(c: ExchangeClient) -> None:
        trigger = price_at(await mark_of(c), "1.05")
        algo = await c.new_algo_order(
            BTC, "BUY", "STOP_MARKET", trigger, stop, quantity=Decimal("0.002")
        )
        cancelled = await c.cancel_algo_order(stop)
        assert (cancelled.algo_id, cancelled.client_algo_id) == (algo.algo_id, stop)
        found = await c.fetch_algo_order_by_client_id(stop)
        assert found is not None and found.status == "CANCELED"
        with pytest.raises(UnknownOrderError):
            await c.cancel_algo_order(stop)
        assert await c.fetch_algo_order_by_client_id("slt-never-stop-0") is None

    run(paper, scenario)


def test_reduce_only_that_would_open_a_position_is_rejected_with_2022(
    paper: PaperExchangeProcess,
) -> None:
    async def scenario(c: ExchangeClient) -> RejectedError:
        with pytest.raises(RejectedError) as err:
            await c.new_order(
                BTC,
                "SELL",
                "MARKET",
                Decimal("0.002"),
                client_order_id("ro1", "flat", 0),
                is_reduce_only=True,
            )
        return err.value

    error = run(paper, scenario)
    assert (error.code, error.http_status, error.msg) == (
        -2022,
        400,
        "ReduceOnly Order is rejected.",
    )
    assert (error.method, error.path) == ("POST", "/fapi/v1/order")


def test_order_below_min_notional_is_rejected_with_4164(paper: PaperExchangeProcess) -> None:
    async def scenario(c: ExchangeClient) -> RejectedError:
        with pytest.raises(RejectedError) as err:  # 0.001 ETH is about 2.5 USDT < 5
            await c.new_order(
                "ETHUSDT", "BUY", "MARKET", Decimal("0.001"), client_order_id("mn1", "entry", 0)
            )
        return err.value

    error = run(paper, scenario)
    assert (error.code, error.http_status) == (-4164, 400)
    assert "notional" in error.msg


def test_stop_that_would_trigger_at_once_is_rejected_with_2021(
    paper: PaperExchangeProcess,
) -> None:
    async def scenario(c: ExchangeClient) -> RejectedError:
        trigger = price_at(await mark_of(c), "1.02")  # a SELL stop above the mark
        with pytest.raises(RejectedError) as err:
            await c.new_algo_order(
                BTC,
                "SELL",
                "STOP_MARKET",
                trigger,
                client_order_id("im1", "stop", 0),
                quantity=Decimal("0.002"),
                is_reduce_only=True,
            )
        return err.value

    assert run(paper, scenario).code == -2021


def test_same_intent_after_a_restart_cannot_double_an_open_order(
    paper: PaperExchangeProcess,
) -> None:
    cid = client_order_id("restart1", "entry", 0)

    async def scenario(c: ExchangeClient) -> RejectedError:
        price = price_at(await mark_of(c), "0.97")
        await c.new_order(BTC, "BUY", "LIMIT", Decimal("0.002"), cid, price=price)
        try:
            with pytest.raises(RejectedError) as err:  # a restarted trader recomputes the id
                await c.new_order(BTC, "BUY", "LIMIT", Decimal("0.002"), cid, price=price)
            return err.value
        finally:
            await c.cancel_all_open_orders(BTC)

    assert run(paper, scenario).code == -4116


def test_hashed_client_id_of_a_long_signal_id_is_accepted_and_found(
    paper: PaperExchangeProcess,
) -> None:
    cid = client_order_id("BTCUSDT_1795400000000_breakout_long_v2", "entry", 0)

    async def scenario(c: ExchangeClient) -> None:
        price = price_at(await mark_of(c), "0.97")
        await c.new_order(BTC, "BUY", "LIMIT", Decimal("0.002"), cid, price=price)
        found = await c.fetch_order_by_client_id(BTC, cid)
        assert found is not None and found.client_order_id == cid and len(cid) == 36
        await c.cancel_all_open_orders(BTC)
        assert await c.open_orders(BTC) == []

    run(paper, scenario)


def test_countdown_cancel_all_arms_and_disarms(paper: PaperExchangeProcess) -> None:
    async def scenario(c: ExchangeClient) -> None:
        armed = await c.countdown_cancel_all(BTC, 120_000)
        assert (armed.symbol, armed.countdown_ms) == (BTC, 120_000)
        assert (await c.countdown_cancel_all(BTC, 0)).countdown_ms == 0

    run(paper, scenario)


def test_listen_key_create_keepalive_close(paper: PaperExchangeProcess) -> None:
    async def scenario(c: ExchangeClient) -> None:
        key = await c.listen_key_create()
        assert len(key) == 64
        assert await c.listen_key_create() == key  # one active key per account (§6.1)
        await c.listen_key_keepalive(key)
        await c.listen_key_close(key)
        with pytest.raises(UnknownListenKeyError) as err:
            await c.listen_key_keepalive(key)
        assert err.value.code == -1125

    run(paper, scenario)


def test_a_restarted_process_reconciles_an_order_whose_reply_it_never_recorded(
    paper: PaperExchangeProcess,
) -> None:
    cid = client_order_id("crash1", "entry", 0)

    async def before_crash(c: ExchangeClient) -> int:
        price = price_at(await mark_of(c), "0.97")
        return (await c.new_order(BTC, "BUY", "LIMIT", Decimal("0.002"), cid, price=price)).order_id

    async def after_restart(c: ExchangeClient) -> None:
        found = await c.fetch_order_by_client_id(BTC, client_order_id("crash1", "entry", 0))
        assert found is not None and (found.order_id, found.status) == (order_id, "NEW")
        await c.cancel_order(BTC, cid)

    order_id = run(paper, before_crash)  # a fresh client: nothing carried over but the intent
    run(paper, after_restart)


def test_margin_type_change_reports_whether_it_changed(paper: PaperExchangeProcess) -> None:
    async def scenario(c: ExchangeClient) -> list[bool]:
        return [
            await c.set_margin_type("ETHUSDT", kind)
            for kind in ("ISOLATED", "ISOLATED", "CROSSED", "CROSSED")
        ]

    assert run(paper, scenario) == [True, False, True, False]  # -4046 means "already so"
