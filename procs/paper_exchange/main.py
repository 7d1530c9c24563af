"""The paper exchange process: a local protocol twin of Binance USDT-M futures (supervisord
program `paper-exchange`, `python -m procs.paper_exchange`).

Subscribes to nothing and publishes nothing on the bus: clients reach it the way they reach
Binance, over REST and WebSocket on one port (`procs/paper_exchange/server.py`). It owns the paper
account
and persists it to the `--state` file, so orders and positions survive a restart or `kill -9`.

    python -m procs.paper_exchange [--port N] [--host H] [--data DIR] [--speed X] [--state FILE]
                                   [--mode paper]

Flags override `[paper_exchange]` of the config (default.toml, the mode's overlay, `SLT_CONFIG`).
Exit codes: 0 after SIGTERM/SIGINT (state saved); 2 for a configuration error (one line on
stderr), unusable market data or a corrupt state file (one CRITICAL log line; the state file is
left untouched); 1 for anything else fatal, including a port in use or a state file held by
another paper exchange.
Logs: `paper_exchange_started`, `paper_exchange_stats` every `stats_interval_s`, connection and
fault events; never a line per request.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import uvloop

from procs.paper_exchange.market.replay import DataError
from procs.paper_exchange.server import InstanceError, StateError, run_paper_exchange
from shared import log
from shared.config import MODES, ConfigError, PaperExchangeConfig, load_config

PROCESS = "paper_exchange"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m procs.paper_exchange",
        description="Local paper exchange speaking Binance USDT-M futures REST and WebSocket.",
    )
    parser.add_argument("--port", type=int, help="TCP port for REST and WebSocket")
    parser.add_argument("--host", help="interface to bind, e.g. 127.0.0.1")
    parser.add_argument("--data", help="directory with exchange_info.json, klines/ and funding/")
    parser.add_argument("--speed", type=float, help="simulated seconds per real second")
    parser.add_argument("--state", help="JSON state file of the paper account")
    parser.add_argument(
        "--mode", choices=MODES, default="paper", help="config mode (default paper)"
    )
    return parser.parse_args(argv)


def flag_overlay(args: argparse.Namespace) -> dict[str, Any]:
    """Return the config overlay the command-line flags make."""
    flags = {
        "port": args.port,
        "host": args.host,
        "data_dir": args.data,
        "speed": args.speed,
        "state_path": args.state,
    }
    return {"paper_exchange": {k: v for k, v in flags.items() if v is not None}}


async def run(cfg: PaperExchangeConfig) -> None:
    """Serve until SIGTERM or SIGINT; the server saves the state before returning."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_paper_exchange(cfg, stop)


def main(argv: list[str] | None = None) -> int:
    """Run the paper exchange; return the exit code (0 clean stop, 2 config/state, 1 fatal)."""
    args = parse_args(argv)
    try:
        cfg = load_config(args.mode, overlay=flag_overlay(args))
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    logger = log.setup(PROCESS, cfg.run.log_level)
    try:
        uvloop.run(run(cfg.paper_exchange))
    except (StateError, DataError) as e:
        # One line, and the state file stays as it is: starting fresh would silently lose the
        # user's paper positions.
        logger.critical("paper_exchange_refused_to_start", reason=str(e))
        return 2
    except InstanceError as e:
        logger.critical("paper_exchange_refused_to_start", reason=str(e))
        return 1
    except Exception as e:
        logger.exception("paper_exchange_failed", error=repr(e))
        return 1
    logger.info("paper_exchange_stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
