"""`slt`: the operator's command line.

    slt env        print the SLT_* variables supervisord.conf expands (used by scripts/run-paper)

Exit codes: 0 success, 2 configuration error, 1 any other failure.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from shared.config import ConfigError, load_config
from shared.stack import supervisor_environment


def _cmd_env(args: argparse.Namespace) -> int:
    cfg = load_config(args.mode)
    for key, value in supervisor_environment(cfg).items():
        print(f"export {key}={shlex.quote(value)}")
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
