"""The guard's stop-keeping settings and its drain: nothing may KILL the guard while it still lets
the exchange call in flight finish after SIGTERM (issue 13, hole 3)."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from shared.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_default_watchdog_kill_delay_exceeds_the_guards_drain() -> None:
    cfg = load_config("paper", env={})
    assert cfg.watchdog.kill_after_s > cfg.guard.call_timeout_s
    live = load_config("live", env={"SLT_API_KEY": "k" * 64, "SLT_API_SECRET": "s" * 64})
    assert live.watchdog.kill_after_s > live.guard.call_timeout_s


def test_a_kill_delay_within_the_guards_drain_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"watchdog\.kill_after_s=5\.0 must exceed"):
        load_config("paper", overlay={"watchdog": {"kill_after_s": 5.0}}, env={})
    with pytest.raises(ConfigError, match=r"guard\.call_timeout_s=20\.0"):
        load_config("paper", overlay={"guard": {"call_timeout_s": 20.0}}, env={})


def test_the_drain_check_applies_only_while_the_watchdog_watches_the_guard() -> None:
    cfg = load_config(
        "paper", overlay={"watchdog": {"kill_after_s": 1.0, "programs": ["feed"]}}, env={}
    )
    assert cfg.watchdog.kill_after_s == 1.0


def test_supervisord_waits_longer_than_the_guards_drain_before_its_kill() -> None:
    conf = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    conf.read(REPO / "supervisord.conf")
    drain_s = load_config("paper", env={}).guard.call_timeout_s
    assert conf.getint("program:guard", "stopwaitsecs") > drain_s
    assert conf.get("program:guard", "stopsignal") == "TERM"


def test_stop_move_rule_settings_are_checked() -> None:
    cfg = load_config("paper", env={})
    assert cfg.guard.stop_move_min_ticks >= 1 and cfg.guard.stop_move_min_interval_s >= 0
    with pytest.raises(ConfigError, match=r"guard\.stop_move_min_ticks=0 must be >= 1"):
        load_config("paper", overlay={"guard": {"stop_move_min_ticks": 0}}, env={})
