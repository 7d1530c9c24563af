"""Fixtures of the trader tests: the guard's (a fresh paper exchange per test, `start_guard`
running the real guard against it), for the tests of what the trader may send while the guard
does or does not protect."""

from __future__ import annotations

from tests.integration.guard.conftest import px, start_guard

__all__ = ["px", "start_guard"]
