"""The `[streams]` configuration: production defaults and its cross-field checks."""

from __future__ import annotations

import re

import pytest

from shared.config import ConfigError, load_config


def test_stream_defaults_are_the_production_values() -> None:
    streams = load_config("paper", env={}).streams
    assert streams.max_streams_per_connection == 200
    assert (streams.ping_interval_s, streams.pong_timeout_s) == (20.0, 20.0)
    assert (streams.reconnect_base_s, streams.reconnect_cap_s) == (5.0, 300.0)
    assert streams.max_connection_age_s < 24 * 3600
    assert streams.listen_key_keepalive_s == 1800.0


def test_listen_key_keepalive_of_an_hour_is_rejected() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("listen_key_keepalive_s=3600.0 must be < 3600")
    ):
        load_config("paper", overlay={"streams": {"listen_key_keepalive_s": 3600.0}}, env={})


def test_more_than_1024_streams_per_connection_is_rejected() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("max_streams_per_connection=1025 is outside 1..1024")
    ):
        load_config("paper", overlay={"streams": {"max_streams_per_connection": 1025}}, env={})


def test_zero_pong_timeout_is_rejected() -> None:
    with pytest.raises(ConfigError, match=re.escape("streams.pong_timeout_s=0.0 must be > 0")):
        load_config("paper", overlay={"streams": {"pong_timeout_s": 0.0}}, env={})


def test_connection_age_of_24_hours_is_rejected() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("max_connection_age_s=86400.0 must be < 86400")
    ):
        load_config("paper", overlay={"streams": {"max_connection_age_s": 86400.0}}, env={})
