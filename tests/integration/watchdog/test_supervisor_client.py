"""shared.supervisor against a real supervisord: typed results, faults as SupervisorRefusedError,
a wrong password or a silent socket as SupervisorUnavailableError within the deadline, and
credentials never shown."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.supervisor import SupervisorClient, SupervisorRefusedError, SupervisorUnavailableError
from tests.integration.watchdog.conftest import Program, Stack
from tests.services import eventually

StartStack = Callable[[list[Program]], Stack]


def test_client_reads_signals_stops_and_starts_a_program(start_stack: StartStack) -> None:
    stack = start_stack([Program("feed")])
    client = stack.client
    info = eventually(lambda: (i := stack.info("feed")).state == "RUNNING" and i, 10)
    assert info.name == "feed" and info.pid > 0  # type: ignore[attr-defined]
    assert abs(info.start_ms / 1000 - time.time()) < 30  # type: ignore[attr-defined]
    assert [i.name for i in asyncio.run(client.get_all_process_info())] == ["feed"]
    with pytest.raises(SupervisorRefusedError) as refused:
        asyncio.run(client.start_process("feed"))
    assert refused.value.fault == "ALREADY_STARTED"
    with pytest.raises(SupervisorRefusedError) as unknown:
        asyncio.run(client.get_process_info("nosuch"))
    assert unknown.value.fault == "BAD_NAME"
    asyncio.run(client.stop_process("feed", wait=True))
    assert stack.info("feed").state == "STOPPED"
    with pytest.raises(SupervisorRefusedError) as not_running:
        asyncio.run(client.signal_process("feed", "TERM"))
    assert not_running.value.fault == "NOT_RUNNING"
    asyncio.run(client.start_process("feed", wait=True))
    assert stack.info("feed").state == "RUNNING"
    assert stack.password not in repr(client)


def test_wrong_password_is_unavailable_without_showing_it(start_stack: StartStack) -> None:
    stack = start_stack([Program("feed")])
    client = SupervisorClient(stack.client.socket_path, stack.user, "wrong-secret-pw", 1.0)
    with pytest.raises(SupervisorUnavailableError) as failed:
        asyncio.run(client.get_all_process_info())
    assert "HTTP 401" in str(failed.value)
    assert "wrong-secret-pw" not in str(failed.value) + repr(client)


def test_silent_socket_fails_within_the_deadline() -> None:
    with tempfile.TemporaryDirectory(prefix="slt-sv-") as d:
        path = Path(d) / "silent.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(path))
            server.listen(8)  # accepts connections into the backlog, never answers
            client = SupervisorClient(path, "user", "password", 0.3)
            began = time.monotonic()
            with pytest.raises(SupervisorUnavailableError):
                asyncio.run(client.get_all_process_info())
            assert time.monotonic() - began < 1.5


def test_missing_socket_is_unavailable() -> None:
    client = SupervisorClient(Path("/nonexistent/supervisor.sock"), "user", "password", 0.3)
    with pytest.raises(SupervisorUnavailableError, match="nonexistent"):
        asyncio.run(client.get_all_process_info())
