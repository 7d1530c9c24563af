"""`slt report --date YYYY-MM-DD`: make (or make again) the daily report of a UTC day, store it
like the reporter does (`daily_reports`, `<run.dir>/reports/<day>.html`) and print its text.
`--send` also queues it to the configured Telegram / Discord channels and waits for delivery."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sys
from typing import Any

from procs.reporter.daily import make_report
from procs.reporter.notify import Notifier
from shared import log
from shared.cache import Cache, redis_url
from shared.config import load_config
from shared.exchange.errors import ExchangeError
from shared.exchange.rest import ExchangeClient
from shared.stack import instance_id
from shared.store.db import Database, DatabaseError, postgres_dsn


async def _report(args: argparse.Namespace) -> int:
    cfg = load_config(args.mode)
    logger = log.get("slt")
    async with await Database.connect(postgres_dsn(cfg), cfg.postgres.command_timeout_s) as db:
        await db.apply_migrations()
        url = redis_url(cfg.redis.url, cfg.redis.private_port)
        async with Cache(url, instance_id(cfg.path(cfg.run.dir)), 0.5) as cache:
            async with contextlib.AsyncExitStack() as stack:
                client: ExchangeClient | None = None
                try:
                    client = await stack.enter_async_context(
                        ExchangeClient(cfg.exchange, cache, logger=logger)
                    )
                except ExchangeError:
                    client = None  # the report then says the ledger audit was not checked
                _made, text = await make_report(args.date, cfg, db, cache, client)
    print(text)
    print(f"html: {cfg.path(cfg.run.dir) / 'reports' / (args.date + '.html')}")
    if args.send:
        async with Notifier(cfg.reporter, logger) as notifier:
            notifier.notify("daily_report", text)
            sender = asyncio.create_task(notifier.run())

            def settled() -> bool:
                return all(
                    sum(
                        notifier.stats.get(f"{c}_{what}", 0)
                        for what in ("sent", "failed", "dropped")
                    )
                    >= 1
                    for c in notifier.channels
                )

            deadline = cfg.reporter.notify_timeout_s * cfg.reporter.notify_max_attempts
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline):
                    while not settled():  # noqa: ASYNC110 - the notifier has no event to wait on
                        await asyncio.sleep(0.1)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            print(
                "sent: "
                + " ".join(f"{c}={notifier.stats.get(c + '_sent', 0)}" for c in notifier.channels)
            )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Run `slt report`; return the exit code."""
    try:
        dt.date.fromisoformat(args.date)
    except ValueError:
        print(f"slt: --date {args.date!r} is not YYYY-MM-DD", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_report(args))  # a ConfigError is mapped to exit 2 by `slt` itself
    except DatabaseError as e:
        print(f"slt: report needs PostgreSQL: {e}", file=sys.stderr)
        return 1


def add_subcommands(sub: Any) -> None:
    """Register `report` on the `slt` subparsers."""
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    p = sub.add_parser("report", help="make and print the daily report of a UTC day")
    p.add_argument("--date", default=yesterday, help="UTC day YYYY-MM-DD (default: yesterday)")
    p.add_argument("--send", action="store_true", help="also send it to Telegram / Discord")
    p.set_defaults(func=cmd_report)
