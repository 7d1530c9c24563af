"""Facts about the local stack that scripts and supervisord need: server binaries, the instance id,
and the environment variables `supervisord.conf` expands (`slt env` prints them)."""

from __future__ import annotations

import getpass
import glob
import hashlib
import os
import shutil
import sys
from pathlib import Path

from shared.config import Config


def find_server_binary(name: str) -> str:
    """Locate a server binary on PATH or in Debian's /usr/lib/postgresql/<version>/bin.

    Raises FileNotFoundError with the install hint when it is nowhere.
    """
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    raise FileNotFoundError(f"{name} not found; run scripts/install (it installs server packages)")


def instance_id(run_dir: Path) -> str:
    """Return a short id derived from the run directory, so two stacks on one machine never share
    ipc paths, shared-memory names or supervisord identifiers."""
    return hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:10]


def database_user() -> str:
    """Return the OS user the private PostgreSQL runs as: it refuses to run as root."""
    return "postgres" if os.geteuid() == 0 else getpass.getuser()


def supervisor_environment(cfg: Config) -> dict[str, str]:
    """Return the SLT_* variables that supervisord.conf expands, derived from the config."""
    run_dir = cfg.path(cfg.run.dir)
    private_redis = cfg.redis.url == ""
    private_pg = cfg.postgres.dsn == ""
    env = {
        "SLT_MODE": cfg.mode,
        "SLT_RUN_DIR": str(run_dir),
        "SLT_INSTANCE": instance_id(run_dir),
        "SLT_PAPER": "true" if cfg.mode == "paper" else "false",
        "SLT_PRIVATE_REDIS": "true" if private_redis else "false",
        "SLT_PRIVATE_POSTGRES": "true" if private_pg else "false",
        "SLT_REDIS_PORT": str(cfg.redis.private_port),
        "SLT_PG_PORT": str(cfg.postgres.private_port),
        "SLT_PG_USER": database_user(),
        "SLT_PG_DATABASE": cfg.postgres.database,
        "SLT_REDIS_BIN": "/bin/false",
        "SLT_PG_BIN": "/bin",
        # The interpreter of the virtualenv that runs `slt env` runs the programs too.
        "SLT_PYTHON": sys.executable,
    }
    if private_redis:
        env["SLT_REDIS_BIN"] = find_server_binary("redis-server")
    if private_pg:
        env["SLT_PG_BIN"] = str(Path(find_server_binary("postgres")).resolve().parent)
    return env
