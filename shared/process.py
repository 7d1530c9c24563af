"""The frame every supervised process shares: `main()` maps outcomes to exit codes in one place,
`run()` takes the instance lock and serves until SIGTERM/SIGINT.

    def main(argv=None) -> int:
        return process_main("feed", "The market feed.", serve, argv)

`wait_tasks` and `cancel_tasks` run a process's concurrent tasks. `serve(cfg, instance, logger,
stop)` runs the process; `stop` is set on SIGTERM/SIGINT. With
`is_graceful=False` the serve task is cancelled at once on a signal; with `is_graceful=True` (the
guard: the exchange call in flight must finish) serve itself watches `stop` and returns.
Exit codes: 0 after a clean stop, 2 configuration error, 1 anything else (e.g. another instance
holds the lock); the failing reason is one CRITICAL line, an unexpected error also a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import uvloop

from shared import log
from shared.bus import InstanceLockedError, bind_instance_lock
from shared.config import MODES, Config, ConfigError, load_config
from shared.stack import instance_id

Serve = Callable[[Config, str, log.EventLogger, asyncio.Event], Coroutine[Any, Any, None]]


async def run_until_signalled(
    cfg: Config, process: str, serve: Serve, logger: log.EventLogger, is_graceful: bool = False
) -> None:
    """Take the instance lock and run `serve` until it ends or SIGTERM/SIGINT arrives."""
    instance = instance_id(Path(cfg.run.dir))
    with bind_instance_lock(instance, process):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        served = loop.create_task(serve(cfg, instance, logger, stop))
        if is_graceful:
            await served
            return
        stopped = loop.create_task(stop.wait())
        await asyncio.wait({served, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not served.done():
            served.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await served


async def wait_tasks(
    tasks: Sequence[asyncio.Task[None]], stop: asyncio.Event | None = None
) -> None:
    """Wait until `stop` is set (never, without one) or a task fails; raise that task's error.

    A task that returns has finished its part (e.g. an optional source that is not there) and is
    no longer waited for; the others go on.
    """
    stopped = asyncio.ensure_future(stop.wait()) if stop is not None else None
    pending: set[asyncio.Future[Any]] = set(tasks)
    if stopped is not None:
        pending.add(stopped)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if stopped is not None and stopped in done:
                return
            for task in done:
                task.result()  # raises the task's error
    finally:
        if stopped is not None:
            stopped.cancel()


async def cancel_tasks(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait until every one has ended (their errors are dropped)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def process_main(
    process: str,
    description: str,
    serve: Serve,
    argv: list[str] | None = None,
    is_graceful: bool = False,
) -> int:
    """Parse `--mode`, load the config, run the process; return its exit code (0, 1 or 2)."""
    parser = argparse.ArgumentParser(prog=f"python -m procs.{process}", description=description)
    parser.add_argument("--mode", choices=MODES, default=None, help="default: SLT_MODE or paper")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.mode)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    logger = log.setup(process, cfg.run.log_level)
    try:
        uvloop.run(run_until_signalled(cfg, process, serve, logger, is_graceful))
    except (ConfigError, InstanceLockedError) as e:  # one line: a person must act
        logger.critical(f"{process}_refused_to_start", reason=str(e))
        return 2 if isinstance(e, ConfigError) else 1
    except Exception as e:
        logger.exception(f"{process}_failed", error=repr(e)[:300])
        return 1
    logger.info(f"{process}_stopped")
    return 0
