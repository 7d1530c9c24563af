"""`slt`: the operator's command line.

    slt env        print the SLT_* variables supervisord.conf expands (used by scripts/run-paper)
    slt flatten    halt new entries and close every position now (asks for confirmation; --yes)
    slt rearm      clear the halt flag after a kill-switch trip, dead-man's switch or flatten;
                   after a kill-switch trip the guard restarts its equity peak from the equity
    slt halt       show the halt flag
    slt status     show programs, positions, equity, model, halt and errors (--json)
    slt train | evaluate | model list|promote N|rollback   the entry model (procs/cli/model.py)
    slt report [--date YYYY-MM-DD] [--send]   make and print a daily report (procs/cli/report.py)

Exit codes: 0 success, 2 configuration error, 1 any other failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import sys
import time
from pathlib import Path

import msgspec

from procs.cli import model as cli_model
from procs.cli import report as cli_report
from procs.guard import protect
from procs.reporter.status.collect import collect_status, render_status_text
from shared import log
from shared.cache import Cache, redis_url
from shared.config import ConfigError, load_config
from shared.exchange.errors import ExchangeError
from shared.exchange.rest import ExchangeClient
from shared.stack import instance_id, supervisor_environment
from shared.store import halt as haltfile
from shared.store.db import Database, DatabaseError, postgres_dsn
from shared.supervisor import stack_supervisor


def _cmd_env(args: argparse.Namespace) -> int:
    cfg = load_config(args.mode)
    for key, value in supervisor_environment(cfg).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


async def _flatten(args: argparse.Namespace) -> bool:
    cfg = load_config(args.mode)
    logger = log.setup("slt", cfg.run.log_level)
    now_ms = time.time_ns() // 1_000_000
    haltfile.save_halt(haltfile.halt_path(cfg.run.dir), haltfile.halted("operator_flatten", now_ms))
    async with ExchangeClient(cfg.exchange, is_guard=True, logger=logger) as client:
        info = await client.exchange_info()
        specs = {s.symbol: s for s in info.symbols}
        return await protect.flatten(
            client,
            specs,
            f"F{now_ms}",
            cfg.guard.flatten_round_s,
            cfg.guard.flatten_max_rounds,
            logger,
        )


def _cmd_flatten(args: argparse.Namespace) -> int:
    if not args.yes:
        answer = input(
            f"Close EVERY position at market on the {args.mode or 'configured'} "
            "account and halt new entries? Type 'flatten' to confirm: "
        )
        if answer.strip() != "flatten":
            print("slt: not confirmed; nothing done", file=sys.stderr)
            return 1
    is_flat = asyncio.run(_flatten(args))
    if is_flat:
        print("flat; new entries halted until `slt rearm`")
    else:
        print("NOT flat after every round; the protective stops stay; see the log above")
    return 0 if is_flat else 1


def _cmd_rearm(args: argparse.Namespace) -> int:
    cfg = load_config(args.mode)
    logger = log.setup("slt", cfg.run.log_level)
    path = haltfile.halt_path(cfg.run.dir)
    before = haltfile.load_halt(path)
    after = haltfile.rearmed(before, time.time_ns() // 1_000_000)
    haltfile.save_halt(path, after)
    logger.warning(
        "halt_cleared",
        reason=before.reason or None,
        by="operator",
        equity_reset_ms=after.equity_reset_ms or None,
        flatten_dropped=before.flatten_episode or None,
    )
    print(f"re-armed (was: {before.reason or 'not halted'})")
    if after.equity_reset_ms and after.equity_reset_ms != before.equity_reset_ms:
        print(
            "the guard restarts its equity watch (peak and day start) from the current equity "
            "at its next check (log event equity_watch_reset)"
        )
    if before.flatten_episode:
        print(f"the unfinished flatten {before.flatten_episode} is not resumed")
    return 0


def _cmd_halt(args: argparse.Namespace) -> int:
    cfg = load_config(args.mode)
    state = haltfile.load_halt(haltfile.halt_path(cfg.run.dir))
    print(
        f"halted reason={state.reason} since_ms={state.since_ms}"
        if state.is_halted
        else "not halted"
    )
    return 0


async def _status(args: argparse.Namespace) -> str:
    cfg = load_config(args.mode)
    run_dir, timeout_s = Path(cfg.run.dir), cfg.reporter.call_timeout_s
    reasons: dict[str, str] = {}  # source -> why it is not connected
    logger = log.get("slt")  # no log.setup: warnings go to stderr, stdout stays the status
    async with contextlib.AsyncExitStack() as stack:
        supervisor = db = client = None
        try:
            supervisor = stack_supervisor(run_dir, os.environ, timeout_s)
        except ConfigError as e:
            reasons["supervisord"] = str(e)
        try:
            client = await stack.enter_async_context(ExchangeClient(cfg.exchange, logger=logger))
        except ExchangeError as e:
            reasons["exchange"] = str(e)
        try:
            async with asyncio.timeout(timeout_s):
                db = await Database.connect(postgres_dsn(cfg), timeout_s)
            stack.push_async_callback(db.close)
        except (DatabaseError, TimeoutError, OSError) as e:
            reasons["postgres"] = str(e)
        url = redis_url(cfg.redis.url, cfg.redis.private_port)
        cache = await stack.enter_async_context(Cache(url, instance_id(run_dir), timeout_s))
        s = await collect_status(cfg, supervisor, client, db, cache)
    errors = [f"{k}: not connected ({v})." for k, v in reasons.items()]
    errors += [e for e in s.errors if e.split(":")[0] not in reasons]
    s = msgspec.structs.replace(s, errors=errors)
    return msgspec.json.encode(s).decode() + "\n" if args.json else render_status_text(s)


def _cmd_status(args: argparse.Namespace) -> int:
    print(asyncio.run(_status(args)), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slt", description="SelfLearningTrader operator commands")
    parser.add_argument(
        "--mode", choices=("paper", "live"), default=None, help="default: SLT_MODE or paper"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("env", help="print the variables supervisord.conf expands").set_defaults(
        func=_cmd_env
    )
    flatten = sub.add_parser("flatten", help="halt entries and close every position now")
    flatten.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    flatten.set_defaults(func=_cmd_flatten)
    sub.add_parser("rearm", help="clear the halt flag").set_defaults(func=_cmd_rearm)
    sub.add_parser("halt", help="show the halt flag").set_defaults(func=_cmd_halt)
    status = sub.add_parser("status", help="show programs, positions, equity, model and halt")
    status.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    status.set_defaults(func=_cmd_status)
    cli_model.add_subcommands(sub)
    cli_report.add_subcommands(sub)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"slt: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
