"""Keep a second paper exchange off the same account and the same port.

A second process that names the same state file finds its lock held (`flock`, released by the
kernel when the holder dies, even by `kill -9`); one that names the same port finds it bound.
The port is bound before the slow start-up (replay data), so a clash is reported at once.

Error classes:
    InstanceError(Exception)   the state file or the port is taken; the process exits with 1
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path


class InstanceError(Exception):
    """Another paper exchange holds the state file or the port; the process exits with code 1."""


@contextlib.contextmanager
def state_lock(state_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `<state>.lock`; raise InstanceError if another process has it."""
    lock_path = state_path.with_name(state_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InstanceError(
                f"paper_exchange: another paper exchange uses {state_path} (lock {lock_path} held)"
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def listening_socket(host: str, port: int) -> Iterator[socket.socket]:
    """Bind and listen on host:port before the slow start-up; raise InstanceError if taken."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=128)
    except OSError as e:
        raise InstanceError(
            f"paper_exchange: cannot listen on {host}:{port} ({e.strerror})"
        ) from None
    with sock:
        yield sock
