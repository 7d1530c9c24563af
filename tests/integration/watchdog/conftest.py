"""A private supervisord for the watchdog tests: a temp dir, a unix socket (0700, username and
password), `supervisord -n -c <conf>` as a subprocess killed at teardown, running stand-in
programs (`beater.py`) under the names the watchdog watches, in a private instance id.
The watchdog itself runs as a subprocess with a config overlay (SLT_CONFIG) shrinking its
intervals, logging to `watchdog.log` in the temp dir."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.shm.heartbeat import Heartbeat, read_heartbeats
from shared.shm.segment import unlink_segments
from shared.stack import instance_id
from shared.supervisor import ProcessInfo, SupervisorClient, SupervisorUnavailableError
from tests.services import eventually, free_port

REPO_ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent

# The watchdog's intervals, shrunk: a hung program is restarted within about 2 s.
WATCHDOG_CONFIG = {
    "check_interval_s": 0.2,
    "stale_after_s": 0.6,
    "progress_stale_after_s": 1.5,
    "startup_grace_s": 2.0,
    "kill_after_s": 1.0,
    "rpc_timeout_s": 1.0,
    "max_restarts": 5,
    "restart_window_s": 30.0,
    "crash_delay_after": 3,
    "crash_delay_s": 2.0,
    "fatal_retry_base_s": 1.0,
    "fatal_retry_cap_s": 8.0,
    "service_check_interval_s": 5.0,
    "alert_interval_s": 0.1,
    "heartbeat_interval_s": 0.2,
}


@dataclass
class Program:
    """One [program:x] running the beater; `options` are beater flags."""

    name: str
    options: tuple[str, ...] = ()
    startsecs: int = 1
    startretries: int = 3


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def beater_command(base: Path, instance: str, name: str, *options: str) -> list[str]:
    """The command running the beater as `name`, recording its starts under base."""
    module = "tests.integration.watchdog.beater"
    starts = str(base / f"starts-{name}.txt")
    return [
        sys.executable,
        "-m",
        module,
        "--name",
        name,
        "--instance",
        instance,
        "--starts-file",
        starts,
        *options,
    ]


@dataclass
class Stack:
    base: Path
    run_dir: Path
    instance: str
    conf: Path
    user: str
    password: str
    supervisord: subprocess.Popen[bytes]
    watchdog: subprocess.Popen[bytes] | None = None
    orphans: list[int] = field(default_factory=list)  # pids to kill at teardown

    @property
    def client(self) -> SupervisorClient:
        sock = self.run_dir / "supervisor" / "supervisor.sock"
        return SupervisorClient(sock, self.user, self.password, 2.0)

    def info(self, name: str) -> ProcessInfo:
        return asyncio.run(self.client.get_process_info(name))

    def ctl(self, *args: str) -> str:
        proc = subprocess.run(
            [str(VENV_BIN / "supervisorctl"), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return proc.stdout + proc.stderr

    def starts(self, name: str) -> list[tuple[int, float]]:
        """(pid, unix time) of every start of program `name` (written by the beater)."""
        path = self.base / f"starts-{name}.txt"
        if not path.exists():
            return []
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        return [(int(pid), float(t)) for pid, t in rows]

    def beats(self) -> dict[str, Heartbeat]:
        return read_heartbeats(self.instance)

    def beater_command(self, name: str, *options: str) -> list[str]:
        return beater_command(self.base, self.instance, name, *options)

    def start_watchdog(self, programs: list[str], redis_port: int = 0, **overrides: object) -> None:
        """Start `python -m procs.watchdog`, appending to watchdog.log; wait for its start.

        Redis (redis_port, default: a closed port), PostgreSQL and the exchange are absent."""
        settings = {**WATCHDOG_CONFIG, **overrides, "programs": programs}
        overlay = self.base / "watchdog.toml"
        overlay.write_text(
            f'[run]\ndir = "{self.run_dir}"\n'
            f"[redis]\nprivate_port = {redis_port or free_port()}\nsocket_timeout_s = 0.5\n"
            f"[postgres]\nprivate_port = {free_port()}\ncommand_timeout_s = 0.5\n"
            f'[exchange]\nrest_url = "http://127.0.0.1:{free_port()}"\n'
            "[guard]\ncall_timeout_s = 0.5\n"  # the guard's drain, below kill_after_s
            "[watchdog]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in settings.items())
        )
        env = {**os.environ, "SLT_CONFIG": str(overlay), "SLT_MODE": "paper"}
        env.pop("PYTHONASYNCIODEBUG", None)
        started = self.watchdog_log().count("watchdog_started")
        with (self.base / "watchdog.log").open("ab") as out:
            self.watchdog = subprocess.Popen(
                [sys.executable, "-m", "procs.watchdog"],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        eventually(lambda: self.watchdog_log().count("watchdog_started") > started, 20, 0.05)

    def stop_watchdog(self) -> int:
        assert self.watchdog is not None
        self.watchdog.send_signal(signal.SIGTERM)
        code = self.watchdog.wait(timeout=15)
        self.watchdog = None
        return code

    def watchdog_log(self) -> str:
        path = self.base / "watchdog.log"
        return path.read_text() if path.exists() else ""

    def lines(self, event: str, **fields: str) -> list[str]:
        """Watchdog log lines of `event` whose fields include `fields` (key=value)."""
        found = []
        for line in self.watchdog_log().splitlines():
            parts = line.split(" ")
            if (
                len(parts) > 3
                and parts[3] == event
                and all(
                    re.search(rf"(^| ){k}={re.escape(v)}( |$)", line) for k, v in fields.items()
                )
            ):
                found.append(line)
        return found

    def last_check_ns(self) -> int:
        beat = self.beats().get("watchdog")
        return 0 if beat is None else beat.progress_ns["check"]

    def checked_for(self, duration_s: float, timeout_s: float) -> None:
        """Wait until the watchdog has completed checks for duration_s from now."""
        until_ns = time.monotonic_ns() + int(duration_s * 1e9)
        eventually(lambda: self.last_check_ns() >= until_ns, timeout_s, 0.05)


def _write_conf(
    stack_dir: Path,
    run_dir: Path,
    user: str,
    password: str,
    programs: list[Program],
    commands: dict[str, list[str]],
) -> Path:
    sock = run_dir / "supervisor" / "supervisor.sock"
    text = (
        f"[unix_http_server]\nfile = {sock}\nchmod = 0700\nusername = {user}\n"
        f"password = {password}\n\n"
        f"[supervisord]\nlogfile = {stack_dir}/supervisord.log\n"
        f"pidfile = {run_dir}/supervisor/supervisord.pid\nchildlogdir = {stack_dir}\n"
        f"directory = {REPO_ROOT}\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        f"[supervisorctl]\nserverurl = unix://{sock}\nusername = {user}\npassword = {password}\n"
    )
    for p in programs:
        text += (
            f"\n[program:{p.name}]\ncommand = {' '.join(commands[p.name])}\n"
            f"directory = {REPO_ROOT}\n"
            f"autostart = true\nautorestart = true\nstartsecs = {p.startsecs}\n"
            f"startretries = {p.startretries}\nstopsignal = TERM\nstopwaitsecs = 2\n"
            f"stopasgroup = true\nkillasgroup = true\n"
            f"stdout_logfile = {stack_dir}/{p.name}.log\nredirect_stderr = true\n"
        )
    conf = stack_dir / "supervisord.conf"
    conf.write_text(text)
    return conf


@pytest.fixture
def start_stack() -> Iterator[Callable[[list[Program]], Stack]]:
    """Return a function that starts a private supervisord running `programs`."""
    stacks: list[Stack] = []

    def start(programs: list[Program]) -> Stack:
        base = Path(tempfile.mkdtemp(prefix="slt-wd-", dir="/tmp"))
        run_dir = base / "run"
        (run_dir / "supervisor").mkdir(parents=True, mode=0o700)
        user, password = "slt-test", secrets.token_hex(12)
        (run_dir / "supervisor" / "credentials").write_text(
            f"SLT_SUPERVISOR_USER={user}\nSLT_SUPERVISOR_PASSWORD={password}\n"
        )
        instance = instance_id(run_dir)
        commands = {p.name: beater_command(base, instance, p.name, *p.options) for p in programs}
        conf = _write_conf(base, run_dir, user, password, programs, commands)
        proc = subprocess.Popen(
            [str(VENV_BIN / "supervisord"), "-n", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        stack = Stack(base, run_dir, instance, conf, user, password, proc)
        stacks.append(stack)
        eventually(lambda: asyncio.run(stack.client.get_all_process_info()), 15, 0.05)
        return stack

    yield start
    for stack in stacks:
        _teardown(stack)


def _teardown(stack: Stack) -> None:
    if stack.watchdog is not None and stack.watchdog.poll() is None:
        stack.watchdog.kill()
        stack.watchdog.wait()
    if stack.supervisord.poll() is None:
        with contextlib.suppress(SupervisorUnavailableError):
            infos = asyncio.run(stack.client.get_all_process_info())
            stack.orphans += [i.pid for i in infos if i.pid]
        stack.supervisord.terminate()
    for pid in stack.orphans:  # killed at once: a graceful shutdown is not what is tested here
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    try:
        stack.supervisord.wait(timeout=15)
    except subprocess.TimeoutExpired:
        stack.supervisord.kill()
        stack.supervisord.wait()
    unlink_segments(stack.instance)
    shutil.rmtree(stack.base, ignore_errors=True)
