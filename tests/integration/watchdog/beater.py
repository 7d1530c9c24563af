"""A stand-in program for the watchdog tests: `python -m tests.integration.watchdog.beater`.

Appends "<pid> <unix time>" to --starts-file at each start, then claims the heartbeat slot
--name of --instance and beats every --interval-s (with fresh `kline` and `reconcile` progress),
like a real process's event-loop heartbeat. --exit-now exits 3 at once (FATAL under a short
startretries), --crash-after-s exits 1 after that long, --no-beat never writes a heartbeat,
--progress-for-s stops advancing the progress (not the heartbeat) after that long.
SIGTERM ends it with the default action.
"""

from __future__ import annotations

import argparse
import os
import time

from shared.shm.heartbeat import HeartbeatWriter


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--starts-file", required=True)
    parser.add_argument("--interval-s", type=float, default=0.2)
    parser.add_argument("--crash-after-s", type=float, default=0.0)
    parser.add_argument("--exit-now", action="store_true")
    parser.add_argument("--no-beat", action="store_true")
    parser.add_argument("--progress-for-s", type=float, default=0.0)
    args = parser.parse_args()
    with open(args.starts_file, "a") as f:
        f.write(f"{os.getpid()} {time.time():.3f}\n")
    if args.exit_now:
        return 3
    started_s = time.monotonic()
    progress_ns = time.monotonic_ns()
    writer = None if args.no_beat else HeartbeatWriter(args.instance, args.name)
    while True:
        if writer is not None:
            now_ns = time.monotonic_ns()
            if not args.progress_for_s or time.monotonic() - started_s < args.progress_for_s:
                progress_ns = now_ns
            writer.beat(0.0, {"kline": progress_ns, "reconcile": progress_ns})
        if args.crash_after_s and time.monotonic() - started_s >= args.crash_after_s:
            return 1
        time.sleep(args.interval_s)


if __name__ == "__main__":
    raise SystemExit(main())
