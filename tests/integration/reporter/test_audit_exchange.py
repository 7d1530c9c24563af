"""The reporter's ledger audit against the paper exchange's own fills and income history: a
round trip traded over REST, recorded as the exchange's income says, audits clean against both
sources (so fetch_fills picks the trade's fills and the sign conventions hold), and a record
with a wrong fee is flagged by both."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from procs.reporter.daily import fetch_fills, fetch_income
from shared.exchange.rest import ExchangeClient
from shared.report.daily import ledger_audit
from shared.schemas.records import TradeRecord
from tests.integration.exchange.conftest import client_config, client_logger
from tests.paper_exchange_fixture import PaperExchangeProcess, start_paper_exchange

BTC = "BTCUSDT"


@pytest.fixture
def paper(tmp_path: Path) -> Iterator[PaperExchangeProcess]:
    process = start_paper_exchange(tmp_path / "paper")  # a fresh account
    yield process
    process.stop()


def test_a_traded_round_trip_audits_clean_against_fills_and_income(
    paper: PaperExchangeProcess,
) -> None:
    async def scenario() -> None:
        async with ExchangeClient(client_config(paper), logger=client_logger()) as c:
            opened = await c.new_order(BTC, "BUY", "MARKET", Decimal("0.004"), "audit-in")
            partly = await c.new_order(
                BTC, "SELL", "MARKET", Decimal("0.001"), "audit-out-1", is_reduce_only=True
            )
            closed = await c.new_order(
                BTC, "SELL", "MARKET", Decimal("0.003"), "audit-out-2", is_reduce_only=True
            )
            entry_ms, exit_ms = opened.update_time_ms, closed.update_time_ms
            assert entry_ms <= partly.update_time_ms <= exit_ms
            income = await fetch_income(c, entry_ms, exit_ms + 1)
            realized = sum(
                (i.amount for i in income if i.income_type == "REALIZED_PNL"), Decimal(0)
            )
            fees = -sum((i.amount for i in income if i.income_type == "COMMISSION"), Decimal(0))
            assert fees > 0 and realized != 0
            record = TradeRecord(
                trade_id="audit",
                is_virtual=False,
                symbol=BTC,
                side="BUY",
                quantity=Decimal("0.004"),
                entry_price=opened.avg_price,
                entry_ms=entry_ms,
                exit_price=closed.avg_price,
                exit_ms=exit_ms,
                exit_reason="test",
                gross_pnl_usdt=realized,
                fees_usdt=fees,
                funding_usdt=Decimal(0),
                net_pnl_usdt=realized - fees,
                is_win=realized > fees,
                confidence=0.6,
                model_version=1,
                feature_schema="x",
                features=(),
            )
            fills = await fetch_fills(c, [record])
            assert {f.order_id for f in fills} >= {
                opened.order_id,
                partly.order_id,
                closed.order_id,
            }
            audit = ledger_audit([record], income, fills)
            assert audit.differences == (), audit.differences
            assert {a.source for a in audit.lines} == {"income", "user_trades"}
            wrong = msgspec.structs.replace(record, fees_usdt=fees + Decimal("0.5"))
            flagged = ledger_audit([wrong], income, fills).differences
            assert {(a.symbol, a.field, a.source) for a in flagged} == {
                (BTC, "commission", "income"),
                (BTC, "commission", "user_trades"),
            }

    asyncio.run(scenario())
