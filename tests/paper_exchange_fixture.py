"""Run the paper exchange as a real subprocess for tests, and talk to it like a Binance client.

`start_paper_exchange(base_dir, ...)` runs `python -m procs.paper_exchange --port <free>
--state <dir>/state.json` with an `SLT_CONFIG` overlay TOML written next to it (tests shrink
limits and intervals there), waits until `GET /fapi/v1/ping` answers, and returns a handle that
stops it (SIGTERM, then SIGKILL) or kills it (`kill -9`). The pytest fixtures `paper_exchange`
and `paper_exchange_factory` wrap it (registered in `tests/integration/paper/conftest.py`).

The signing helpers follow Binance's recipe (BINANCE-API.md §2.3) with `hmac`/`hashlib` directly and
never import the server's `auth.py`, so a misreading on either side is not mirrored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.services import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
API_KEY = "testKey0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789abcd"
API_SECRET = "testSecret0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789"
# Two symbols start in a third of the time of all six (replay loading dominates start-up).
TEST_SYMBOLS = ["BTCUSDT", "ETHUSDT"]
ALL_SYMBOLS = ["BTCUSDT", "ETHUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "LTCUSDT"]
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_overlay(path: Path, overlay: dict[str, dict[str, Any]]) -> None:
    """Write a config overlay ({table: {key: value}}) as TOML."""
    lines: list[str] = []
    for table, values in overlay.items():
        lines.append(f"[{table}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines))


@dataclass
class PaperExchangeProcess:
    """A running `procs.paper_exchange` subprocess."""

    port: int
    state_path: Path
    config_path: Path
    log_path: Path
    args: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    api_key: str = API_KEY
    api_secret: str = API_SECRET
    exit_codes: list[int] = field(default_factory=list)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM, wait, SIGKILL if still alive; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.exit_codes.append(code)
        return code

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """Start again with the same flags, config and state file (after stop or kill)."""
        if self.process.poll() is None:
            raise RuntimeError("paper exchange is still running")
        self.process = _spawn(self.args, self.env, self.log_path)
        wait_until_up(self)


def _spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def ping(port: int, timeout_s: float = 1.0) -> bool:
    """Return whether GET /fapi/v1/ping answers 200."""
    url = f"http://127.0.0.1:{port}/fapi/v1/ping"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return bool(reply.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def wait_until_up(px: PaperExchangeProcess, timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait for /fapi/v1/ping; raise with the log if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if px.process.poll() is not None:
            raise AssertionError(
                f"paper exchange exited with {px.process.returncode}:\n{px.log_text()}"
            )
        if ping(px.port):
            return
        time.sleep(0.05)
    px.kill()
    raise AssertionError(f"paper exchange did not answer within {timeout_s}s:\n{px.log_text()}")


def paper_command(
    port: int, state_path: Path, speed: float | None = None, extra: tuple[str, ...] = ()
) -> list[str]:
    """Return the command line of the paper exchange process."""
    args = [
        sys.executable,
        "-m",
        "procs.paper_exchange",
        "--port",
        str(port),
        "--state",
        str(state_path),
    ]
    if speed is not None:
        args += ["--speed", str(speed)]
    return args + list(extra)


def paper_env(config_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"SLT_CONFIG": str(config_path), "SLT_MODE": "paper", "PYTHONUNBUFFERED": "1"})
    env.pop("PYTHONASYNCIODEBUG", None)  # the server runs as in production
    env.pop("SLT_API_KEY", None)
    env.pop("SLT_API_SECRET", None)
    return env


def start_paper_exchange(
    base_dir: Path,
    overlay: dict[str, Any] | None = None,
    speed: float | None = None,
    state_path: Path | None = None,
    extra_args: tuple[str, ...] = (),
    wait: bool = True,
    port: int | None = None,
) -> PaperExchangeProcess:
    """Start the paper exchange (on a free port unless given) with `[paper_exchange]` overrides
    in `overlay`; with wait=False return at once (a test that expects it to exit)."""
    base_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    state = state_path or base_dir / "state.json"
    config_path = base_dir / f"slt-config-{port}-{time.monotonic_ns()}.toml"
    values = {
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "symbols": TEST_SYMBOLS,
        **(overlay or {}),
    }
    write_overlay(config_path, {"paper_exchange": values})
    args = paper_command(port, state, speed, extra_args)
    env = paper_env(config_path)
    log_path = config_path.with_suffix(".log")
    px = PaperExchangeProcess(
        port, state, config_path, log_path, args, env, _spawn(args, env, log_path)
    )
    if wait:
        wait_until_up(px)
    return px


@pytest.fixture
def paper_exchange_factory(tmp_path: Path) -> Iterator[Callable[..., PaperExchangeProcess]]:
    """Return `start(overlay=None, speed=None, ...)`; every exchange started is stopped after."""
    started: list[PaperExchangeProcess] = []

    def start(**kwargs: Any) -> PaperExchangeProcess:
        px = start_paper_exchange(tmp_path / f"px{len(started)}", **kwargs)
        started.append(px)
        return px

    yield start
    for px in started:
        px.stop()


@pytest.fixture
def paper_exchange(
    paper_exchange_factory: Callable[..., PaperExchangeProcess],
) -> PaperExchangeProcess:
    """A paper exchange with the default configuration and a fresh account."""
    return paper_exchange_factory()


# ---- Binance-style requests (signing written from §2.3, independently of the server) ----------


def hmac_sha256_hex(secret: str, payload: str) -> str:
    """Return Binance's signature: lower-case hex HMAC-SHA256 of the payload under the secret."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def signed_params_string(
    params: dict[str, Any], secret: str, timestamp_ms: int, recv_window_ms: int | None = None
) -> str:
    """Return `k=v&…&timestamp=…&signature=…`, percent-encoded like ccxt sends it."""
    pairs = [(k, str(v)) for k, v in params.items()]
    pairs.append(("timestamp", str(timestamp_ms)))
    if recv_window_ms is not None:
        pairs.append(("recvWindow", str(recv_window_ms)))
    text = urlencode(pairs)
    return text + "&signature=" + hmac_sha256_hex(secret, text)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---- an aiohttp test client -------------------------------------------------------------------


@dataclass
class Reply:
    """One HTTP reply: status, headers (case-insensitive), decoded JSON body and raw text."""

    status: int
    headers: Any  # CIMultiDictProxy[str]
    body: Any
    text: str


class BinanceTestClient:
    """Sends requests the way ccxt, the connector and python-binance do (BINANCE-API.md §2.1)."""

    def __init__(
        self, session: Any, base_url: str, api_key: str = API_KEY, api_secret: str = API_SECRET
    ) -> None:
        self.session = session
        self.base_url = base_url
        self.api_key = api_key
        self.api_secret = api_secret

    async def raw(
        self,
        method: str,
        path: str,
        query: str = "",
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send exactly this query string and body (no re-encoding)."""
        import yarl

        url = yarl.URL(self.base_url + path + ("?" + query if query else ""), encoded=True)
        async with self.session.request(method, url, data=body, headers=headers or {}) as r:
            text = await r.text()
            try:
                decoded = json.loads(text) if text else None
            except ValueError:
                decoded = None
            return Reply(r.status, r.headers, decoded, text)

    async def public(self, path: str, **params: Any) -> Reply:
        return await self.raw("GET", path, urlencode(params))

    async def control(
        self, method: str, path: str, key: str | None = API_KEY, **params: Any
    ) -> Reply:
        headers = {"X-MBX-APIKEY": key} if key is not None else {}
        return await self.raw(method, path, urlencode(params), headers=headers)

    async def signed(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        style: str = "ccxt",
        timestamp_ms: int | None = None,
        recv_window_ms: int | None = None,
        key: str | None = None,
        secret: str | None = None,
    ) -> Reply:
        """Send a signed request in a client's style: "ccxt", "connector" or "python-binance"."""
        params = dict(params or {})
        ts = now_ms() if timestamp_ms is None else timestamp_ms
        headers = {"X-MBX-APIKEY": key or self.api_key}
        secret = secret or self.api_secret
        if style == "ccxt":  # timestamp first; POST/PUT in a form body
            pairs = [("timestamp", str(ts)), *((k, str(v)) for k, v in params.items())]
            if recv_window_ms is not None:
                pairs.append(("recvWindow", str(recv_window_ms)))
            text = urlencode(pairs)
            signed = text + "&signature=" + hmac_sha256_hex(secret, text)
            if method in ("POST", "PUT"):
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                return await self.raw(method, path, "", signed, headers)
            return await self.raw(method, path, signed, None, headers)
        if style == "connector":  # everything in the query, JSON content type, empty body
            signed = signed_params_string(params, secret, ts, recv_window_ms)
            headers["Content-Type"] = "application/json;charset=utf-8"
            return await self.raw(method, path, signed, "" if method != "GET" else None, headers)
        if style == "python-binance":  # sorted keys, signs the unencoded string, body encoded
            params["timestamp"] = ts
            if recv_window_ms is not None:
                params["recvWindow"] = recv_window_ms
            pairs = sorted((k, str(v)) for k, v in params.items())
            unencoded = "&".join(f"{k}={v}" for k, v in pairs)
            pairs.append(("signature", hmac_sha256_hex(secret, unencoded)))
            if method == "GET":
                return await self.raw(method, path, urlencode(pairs), None, headers)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return await self.raw(method, path, "", urlencode(pairs), headers)
        raise ValueError(f"unknown client style {style!r}")


T = TypeVar("T")


def call(
    px: PaperExchangeProcess,
    use: Callable[[BinanceTestClient], Awaitable[T]],
    ip: str | None = None,
) -> T:
    """Run `use` with a fresh client session against `px`; with `ip` (any 127.x.y.z works on
    Linux) the requests come from that address, so a test gets its own per-IP weight counter."""

    async def run() -> T:
        connector = aiohttp.TCPConnector(local_addr=(ip, 0)) if ip else None
        async with aiohttp.ClientSession(connector=connector) as session:
            return await use(BinanceTestClient(session, px.rest_url))

    return asyncio.run(run())
