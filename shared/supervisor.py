"""supervisord's XML-RPC interface over its unix socket, with HTTP basic auth and a deadline on
every call (DESIGN-RULES 9, 11): the stdlib transport sets no timeout, so a wedged supervisord
would block the caller forever.

Errors:

    SupervisorError                  base class; the message is one sentence
    ├── SupervisorUnavailableError   the channel failed: socket missing or refused, deadline
    │                                passed, authentication refused, malformed reply. The caller
    │                                must not act on it (rule 7: never restart because the
    │                                supervision channel itself failed).
    └── SupervisorRefusedError       supervisord answered with a fault (NOT_RUNNING,
                                     ALREADY_STARTED, BAD_NAME, ...); `fault` holds its name.

Credentials (`supervisor_credentials`: the environment, else $run_dir/supervisor/credentials) are
held privately and never appear in `repr` or in an error message.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import socket
import xmlrpc.client
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError

from shared.config import ConfigError

# supervisor.xmlrpc.Faults, by code (the names the caller sees in SupervisorRefusedError.fault).
FAULT_NAMES = {
    1: "UNKNOWN_METHOD",
    2: "INCORRECT_PARAMETERS",
    3: "BAD_ARGUMENTS",
    4: "SIGNATURE_UNSUPPORTED",
    6: "SHUTDOWN_STATE",
    10: "BAD_NAME",
    11: "BAD_SIGNAL",
    20: "NO_FILE",
    21: "NOT_EXECUTABLE",
    30: "FAILED",
    40: "ABNORMAL_TERMINATION",
    50: "SPAWN_ERROR",
    60: "ALREADY_STARTED",
    70: "NOT_RUNNING",
    80: "SUCCESS",
    90: "ALREADY_ADDED",
    91: "STILL_RUNNING",
    100: "CANT_REREAD",
}


class SupervisorError(Exception):
    """A supervisord call failed; see the subclasses."""


class SupervisorUnavailableError(SupervisorError):
    """supervisord could not be reached or did not answer within the deadline."""


class SupervisorRefusedError(SupervisorError):
    """supervisord answered with a fault."""

    def __init__(self, message: str, fault: str) -> None:
        super().__init__(message)
        self.fault = fault


@dataclass(frozen=True)
class ProcessInfo:
    """One program as supervisord reports it (getProcessInfo)."""

    name: str
    group: str
    state: str  # RUNNING, STARTING, BACKOFF, STOPPED, EXITED, FATAL, STOPPING, UNKNOWN
    pid: int  # 0 when not running
    start_ms: int  # UTC ms of the last start (0 = never started)
    stop_ms: int  # UTC ms of the last stop (0 = never stopped)
    exit_status: int  # exit status of the last exit
    spawn_error: str  # why the last spawn failed ("" = none)
    description: str


def _info(raw: dict[str, Any]) -> ProcessInfo:
    return ProcessInfo(
        name=str(raw["name"]),
        group=str(raw["group"]),
        state=str(raw["statename"]),
        pid=int(raw["pid"]),
        start_ms=int(raw["start"]) * 1000,
        stop_ms=int(raw["stop"]) * 1000,
        exit_status=int(raw["exitstatus"]),
        spawn_error=str(raw["spawnerr"]),
        description=str(raw["description"]),
    )


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._path = path
        self._timeout_s = timeout_s

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._timeout_s)  # every recv/send below has this deadline
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, authorization: str, timeout_s: float) -> None:
        super().__init__()
        self._path = path
        self._authorization = authorization
        self._timeout_s = timeout_s
        self._unix_connection: _UnixConnection | None = None

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self._unix_connection is None:
            self._unix_connection = _UnixConnection(self._path, self._timeout_s)
        return self._unix_connection

    def close(self) -> None:
        super().close()
        if self._unix_connection is not None:
            self._unix_connection.close()
            self._unix_connection = None

    def send_headers(self, connection: http.client.HTTPConnection, headers: Any) -> None:
        super().send_headers(connection, [*headers, ("Authorization", self._authorization)])


class SupervisorClient:
    """Calls supervisord over `socket_path`; every call is bounded by `timeout_s`.

    Each call opens its own connection (from a worker thread), so concurrent calls never share
    a socket. Methods raise SupervisorUnavailableError or SupervisorRefusedError.
    """

    def __init__(self, socket_path: Path, username: str, password: str, timeout_s: float) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self.__authorization = f"Basic {token}"

    def __repr__(self) -> str:
        return (
            f"SupervisorClient(socket_path={str(self.socket_path)!r}, timeout_s={self.timeout_s})"
        )

    def _call_sync(self, method: str, *args: object) -> Any:
        transport = _UnixTransport(str(self.socket_path), self.__authorization, self.timeout_s)
        proxy = xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=transport)
        what = f"supervisor: {method} via {self.socket_path}"
        try:
            return getattr(proxy, method)(*args)
        except xmlrpc.client.Fault as e:
            name = FAULT_NAMES.get(e.faultCode, str(e.faultCode))
            text = str(e.faultString).replace("\n", " ")[:200]
            raise SupervisorRefusedError(f"{what} was refused with {text}", name) from None
        except xmlrpc.client.ProtocolError as e:  # 401 (credentials), 500, ...
            raise SupervisorUnavailableError(
                f"{what} failed with HTTP {e.errcode} {e.errmsg}"
            ) from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ResponseError, ExpatError) as e:
            raise SupervisorUnavailableError(
                f"{what} failed ({type(e).__name__}: {e}) within {self.timeout_s} s"
            ) from e
        finally:
            transport.close()

    async def call(self, method: str, *args: object) -> Any:
        """Call `method` (e.g. "supervisor.getState") with the deadline.

        On timeout the worker thread ends by itself: its socket has the same deadline.
        Cancellation leaves the call to finish in its thread; its result is dropped.
        """
        try:
            async with asyncio.timeout(self.timeout_s + 0.5):
                return await asyncio.to_thread(self._call_sync, method, *args)
        except TimeoutError:
            raise SupervisorUnavailableError(
                f"supervisor: {method} via {self.socket_path} did not answer within "
                f"{self.timeout_s} s"
            ) from None

    async def get_all_process_info(self) -> list[ProcessInfo]:
        """Return every program's state."""
        raw = await self.call("supervisor.getAllProcessInfo")
        return [_info(item) for item in self._list(raw)]

    async def get_process_info(self, name: str) -> ProcessInfo:
        """Return one program's state; SupervisorRefusedError(BAD_NAME) when unknown."""
        raw = await self.call("supervisor.getProcessInfo", name)
        if not isinstance(raw, dict):
            raise SupervisorUnavailableError(f"supervisor: getProcessInfo({name}) is not a struct")
        return _info(raw)

    async def signal_process(self, name: str, signal: str) -> None:
        """Send `signal` ("TERM", "KILL", ...) to the program's current process."""
        await self.call("supervisor.signalProcess", name, signal)

    async def start_process(self, name: str, wait: bool = False) -> None:
        """Start a program; with wait=False return once supervisord has spawned it."""
        await self.call("supervisor.startProcess", name, wait)

    async def stop_process(self, name: str, wait: bool = False) -> None:
        """Stop a program (its stopsignal, then KILL after stopwaitsecs)."""
        await self.call("supervisor.stopProcess", name, wait)

    @staticmethod
    def _list(raw: object) -> list[dict[str, Any]]:
        if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
            raise SupervisorUnavailableError("supervisor: getAllProcessInfo is not a list")
        return raw


def supervisor_credentials(run_dir: Path, env: Mapping[str, str]) -> tuple[str, str]:
    """Return (user, password) from the environment or $run_dir/supervisor/credentials."""
    user, password = env.get("SLT_SUPERVISOR_USER", ""), env.get("SLT_SUPERVISOR_PASSWORD", "")
    path = run_dir / "supervisor" / "credentials"
    if not (user and password) and path.is_file():
        pairs = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        user = pairs.get("SLT_SUPERVISOR_USER", "").strip()
        password = pairs.get("SLT_SUPERVISOR_PASSWORD", "").strip()
    if not (user and password):
        raise ConfigError(
            f"config: no supervisord credentials: SLT_SUPERVISOR_USER/PASSWORD are unset and "
            f"{path} does not name both"
        )
    return user, password


def stack_supervisor(run_dir: Path, env: Mapping[str, str], timeout_s: float) -> SupervisorClient:
    """Return a client of the stack's supervisord ($run_dir/supervisor/supervisor.sock, the
    credentials of supervisor_credentials). Raises ConfigError when they are unknown."""
    user, password = supervisor_credentials(run_dir, env)
    return SupervisorClient(run_dir / "supervisor" / "supervisor.sock", user, password, timeout_s)
