"""The stack's status at one instant: programs, positions and their stops, orders, equity, feed,
model and halt flag, gathered from every source at once. The snapshot's types live in
`shared.schemas.status`, its renderings (page, Prometheus metrics, `slt status` text) in
`procs.reporter.status.render`; both are re-exported here.

Rules:
- Every source is optional and read concurrently, each within `reporter.call_timeout_s`; a source
  that is missing, fails or times out adds one sentence to `errors` and the rest is still filled.
  `collect_status` never raises (cancellation excepted).
- A position is protected when a STOP_MARKET algo order of its symbol on the closing side is
  resting with closePosition or reduceOnly (what the guard places). When the stops could not be
  read, every position shows unprotected (fail safe) and `errors` says why.
- Secrets never appear: error sentences come from the clients, which never include credentials.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from procs.reporter.status.render import render_metrics, render_status_html, render_status_text
from shared.cache import Cache
from shared.config import Config
from shared.exchange.rest import ExchangeClient
from shared.schemas import binance as b
from shared.schemas.status import (
    OrderStatus,
    PositionStatus,
    ProgramStatus,
    StatusSnapshot,
    StopOrder,
)
from shared.shm.heartbeat import Heartbeat, read_heartbeats
from shared.stack import instance_id
from shared.store.db import Database
from shared.store.halt import halt_path, load_halt
from shared.supervisor import ProcessInfo, SupervisorClient

__all__ = [
    "OrderStatus",
    "PositionStatus",
    "ProgramStatus",
    "StatusSnapshot",
    "StopOrder",
    "collect_status",
    "liquidation_distance_pct",
    "render_metrics",
    "render_status_html",
    "render_status_text",
]

T = TypeVar("T")
STOP_TYPE = "STOP_MARKET"
ERROR_CHARS = 300  # an error sentence is cut here


def _sentence(source: str, e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return f"{source}: no answer within the deadline."
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{source}: {text}"[:ERROR_CHARS]


async def _bounded(
    source: str, call: Awaitable[T] | None, timeout_s: float, errors: list[str]
) -> T | None:
    if call is None:  # the source is not connected (already said once in errors)
        return None
    try:
        async with asyncio.timeout(timeout_s):
            return await call
    except Exception as e:  # a status page shows what failed and carries on
        errors.append(_sentence(source, e))
        return None


def _is_stop_of(order: b.AlgoOrder, position: b.Position) -> bool:
    closing_side = "SELL" if position.amount > 0 else "BUY"
    return (
        order.symbol == position.symbol
        and order.order_type == STOP_TYPE
        and order.side == closing_side
        and (order.is_close_position or order.is_reduce_only)
    )


def liquidation_distance_pct(mark: Decimal, liquidation: Decimal) -> float | None:
    """Return |mark - liquidation| / mark in percent, None without a liquidation price."""
    if liquidation <= 0 or mark <= 0:
        return None
    return float(abs(mark - liquidation) / mark * 100)


def _positions(
    positions: list[b.Position], algos: list[b.AlgoOrder] | None
) -> list[PositionStatus]:
    out = []
    for p in sorted(positions, key=lambda p: p.symbol):
        if p.amount == 0:
            continue
        stops = [
            StopOrder(client_id=a.client_algo_id, trigger_price=a.trigger_price)
            for a in algos or []
            if _is_stop_of(a, p)
        ]
        out.append(
            PositionStatus(
                symbol=p.symbol,
                amount=p.amount,
                entry_price=p.entry_price,
                mark_price=p.mark_price,
                unrealized_pnl_usdt=p.unrealized_pnl_usdt,
                liquidation_price=p.liquidation_price,
                liquidation_distance_pct=liquidation_distance_pct(
                    p.mark_price, p.liquidation_price
                ),
                stops=stops,
                is_protected=bool(stops),
            )
        )
    return out


def _orders(orders: list[b.Order] | None, algos: list[b.AlgoOrder] | None) -> list[OrderStatus]:
    out = [
        OrderStatus(
            symbol=o.symbol,
            client_id=o.client_order_id,
            side=o.side,
            type=o.order_type,
            price=o.price,
            quantity=o.quantity,
        )
        for o in orders or []
    ] + [
        OrderStatus(
            symbol=a.symbol,
            client_id=a.client_algo_id,
            side=a.side,
            type=a.order_type,
            price=a.trigger_price,
            quantity=a.quantity,
        )
        for a in algos or []
    ]
    return sorted(out, key=lambda o: (o.symbol, o.client_id))


def _programs(
    infos: list[ProcessInfo] | None, beats: dict[str, Heartbeat], now_ms: int, now_ns: int
) -> list[ProgramStatus]:
    def program(name: str, state: str, pid: int, uptime_s: float) -> ProgramStatus:
        beat = beats.get(name)
        return ProgramStatus(
            name=name,
            state=state,
            pid=pid,
            uptime_s=uptime_s,
            heartbeat_age_s=None if beat is None else max(0.0, beat.age_s(now_ns)),
            loop_lag_ms=None if beat is None else beat.loop_lag_ms,
            restarts=None if beat is None else max(0, beat.incarnation - 1),
        )

    if infos is None:  # supervisord unknown: show what the heartbeat table knows
        return [program(n, "UNKNOWN", beats[n].pid, 0.0) for n in sorted(beats)]
    return [
        program(
            i.name,
            i.state,
            i.pid,
            max(0.0, (now_ms - i.start_ms) / 1000) if i.state == "RUNNING" and i.start_ms else 0.0,
        )
        for i in sorted(infos, key=lambda i: i.name)
    ]


def _feed_stats(
    beats: dict[str, Heartbeat], now_ns: int, topics: int | None
) -> dict[str, float | int]:
    stats: dict[str, float | int] = {}
    beat = beats.get("feed")
    if beat is not None:
        for name in ("kline", "mark", "user_data"):
            age = beat.progress_age_s(name, now_ns)
            if age is not None:
                stats[f"{name}_age_s"] = round(max(0.0, age), 3)
    if topics is not None:
        stats["topics"] = topics
    return stats


async def _feed_topics(cache: Cache) -> int:
    return len((await cache.load_feed_snapshot()).latest)


async def collect_status(
    cfg: Config,
    supervisor: SupervisorClient | None,
    client: ExchangeClient | None,
    db: Database | None,
    cache: Cache | None,
) -> StatusSnapshot:
    """Read every source concurrently, each within cfg.reporter.call_timeout_s; never raise.

    A missing or failing source adds one sentence to `errors`. Cancellation propagates.
    """
    timeout_s = cfg.reporter.call_timeout_s
    run_dir = Path(cfg.run.dir)
    instance = instance_id(run_dir)
    errors: list[str] = []

    def bounded(source: str, call: Awaitable[T] | None) -> Coroutine[Any, Any, T | None]:
        return _bounded(source, call, timeout_s, errors)

    async def model() -> tuple[int, float] | None:
        assert db is not None
        champion = await db.champion()
        return None if champion is None else (champion[0].version, champion[0].auc)

    for source, given in (("supervisord", supervisor), ("exchange", client), ("postgres", db)):
        if given is None:
            errors.append(f"{source}: not connected, so its part of the status is missing.")
    async with asyncio.TaskGroup() as group:  # _bounded never raises: no sibling is cancelled
        spawn = group.create_task
        infos = spawn(
            bounded("supervisord", supervisor.get_all_process_info() if supervisor else None)
        )
        positions = spawn(bounded("exchange positions", client.position_risk() if client else None))
        algos = spawn(
            bounded("exchange stop orders", client.open_algo_orders() if client else None)
        )
        orders = spawn(bounded("exchange open orders", client.open_orders() if client else None))
        account_task = spawn(bounded("exchange account", client.account() if client else None))
        champion_task = spawn(bounded("postgres model", model() if db else None))
        topics = spawn(bounded("redis feed", _feed_topics(cache) if cache else None))
    account, champion = account_task.result(), champion_task.result()
    try:
        beats = read_heartbeats(instance)
    except Exception as e:  # a torn or foreign table: show the rest
        errors.append(_sentence("heartbeat table", e))
        beats = {}
    halt = load_halt(halt_path(run_dir))
    now_ms, now_ns = time.time_ns() // 1_000_000, time.monotonic_ns()
    return StatusSnapshot(
        ts_ms=now_ms,
        mode=cfg.mode,
        instance=instance,
        programs=_programs(infos.result(), beats, now_ms, now_ns),
        positions=_positions(positions.result() or [], algos.result()),
        open_orders=_orders(orders.result(), algos.result()),
        equity_usdt=None if account is None else account.margin_balance_usdt,
        wallet_usdt=None if account is None else account.wallet_balance_usdt,
        feed=_feed_stats(beats, now_ns, topics.result()),
        model_version=None if champion is None else champion[0],
        model_auc=None if champion is None else champion[1],
        halted=halt.is_halted,
        halt_reason=halt.reason,
        errors=errors,
    )
