"""Private instances of the real services for tests: Redis and PostgreSQL, each on a free port in a
temp dir, started from the system's server binaries and stopped after. Never a user's databases.

PostgreSQL refuses to run as root; when the tests run as root, the server runs as the `postgres`
system user (created by Debian's postgresql package), which owns the temp data directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shared.stack import database_user, find_server_binary


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def eventually(
    predicate: Callable[[], object], timeout_s: float, interval_s: float = 0.02
) -> object:
    """Poll `predicate` until it returns a truthy value; raise AssertionError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the condition may raise until it holds (connection refused…)
            last_error = e
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s (last error: {last_error!r})")


def _port_open(port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class RedisServer:
    port: int
    dir: Path
    process: subprocess.Popen[bytes]
    command: list[str] = field(default_factory=list)  # how it was started, for restart()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        """Start the stopped server again on the same port and directory (its AOF reloads)."""
        assert self.process.poll() is not None, "redis-server is still running"
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        proc = self.process
        eventually(lambda: proc.poll() is None and _port_open(self.port), 15)


@contextlib.contextmanager
def redis_server(base_dir: Path) -> Iterator[RedisServer]:
    """Run a private redis-server (append-only, as production) on a free port under base_dir."""
    port = free_port()
    data = base_dir / f"redis-{port}"
    data.mkdir(parents=True)
    cmd = [
        find_server_binary("redis-server"),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
        "--logfile",
        str(data / "redis.log"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = RedisServer(port, data, proc, cmd)
    try:
        eventually(lambda: proc.poll() is None and _port_open(port), 15)
        yield server
    finally:
        server.stop()


@dataclass
class PostgresServer:
    port: int
    dir: Path
    process: subprocess.Popen[bytes]
    user: str
    database: str = "slt_test"
    command: list[str] = field(default_factory=list)  # how it was started, for restart()
    log_path: Path | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM = smart shutdown
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop_fast(self) -> None:
        """Stop now: SIGINT (fast shutdown) straight to the postmaster, which ends open sessions
        (SIGTERM through runuser would wait for them); wait until the process is gone."""
        if self.process.poll() is not None:
            return
        pid_file = self.dir / "db" / "postmaster.pid"
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """Start the stopped server again on the same data directory and port."""
        assert self.process.poll() is not None, "postgres is still running"
        assert self.log_path is not None
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        proc = self.process
        eventually(lambda: proc.poll() is None and _port_open(self.port), 30)


def _as_user(user: str | None) -> list[str]:
    if user is None:
        return []
    return [shutil.which("runuser") or "/sbin/runuser", "-u", user, "--"]


@contextlib.contextmanager
def postgres_server(base_dir: Path) -> Iterator[PostgresServer]:
    """Run a private PostgreSQL (initdb + postgres) on a free port, its socket under base_dir."""
    port = free_port()
    data = base_dir / f"pg-{port}"
    data.mkdir(parents=True)
    run_as = database_user() if os.geteuid() == 0 else None
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        for p in (base_dir, data):
            os.chown(p, entry.pw_uid, entry.pw_gid)
    db_user = run_as or pwd.getpwuid(os.geteuid()).pw_name
    subprocess.run(
        [
            *_as_user(run_as),
            find_server_binary("initdb"),
            "-D",
            str(data / "db"),
            "-U",
            db_user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    cmd = [
        *_as_user(run_as),
        find_server_binary("postgres"),
        "-D",
        str(data / "db"),
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
        "-k",
        str(data),
        "-c",
        "fsync=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "synchronous_commit=off",
    ]
    log = (data / "postgres.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    server = PostgresServer(port, data, proc, db_user, command=cmd, log_path=data / "postgres.log")
    try:
        eventually(lambda: proc.poll() is None and _port_open(port), 30)
        createdb = [
            *_as_user(run_as),
            find_server_binary("createdb"),
            "-h",
            str(data),
            "-p",
            str(port),
            "-U",
            db_user,
            server.database,
        ]
        eventually(lambda: subprocess.run(createdb, capture_output=True).returncode == 0, 30, 0.2)
        yield server
    finally:
        server.stop()
        log.close()
