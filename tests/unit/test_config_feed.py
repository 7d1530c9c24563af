"""The `[feed]` configuration: defaults, the SLT_DISABLE_WEBSOCKET switch and cross-field checks."""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared.config import ConfigError, load_config


def feed_config(env: dict[str, str] | None = None, **feed: Any) -> Any:
    return load_config("paper", overlay={"feed": feed} if feed else None, env=env or {}).feed


def test_feed_defaults_stream_the_paper_exchange_s_six_symbols() -> None:
    feed = feed_config()
    assert feed.symbols == ("BTCUSDT", "ETHUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "LTCUSDT")
    assert (feed.window_bars, feed.backfill_bars) == (500, 500)
    assert not feed.disable_websocket and not feed.disable_rest_fallback


def test_slt_disable_websocket_env_turns_polling_on() -> None:
    assert feed_config(env={"SLT_DISABLE_WEBSOCKET": "1"}).disable_websocket
    assert not feed_config(env={"SLT_DISABLE_WEBSOCKET": "0"}).disable_websocket


def test_disabling_both_websocket_and_rest_is_rejected() -> None:
    with pytest.raises(ConfigError, match="would have no market data"):
        feed_config(disable_websocket=True, disable_rest_fallback=True)


def test_polling_faster_than_the_weight_budget_allows_is_rejected() -> None:
    with pytest.raises(ConfigError, match=re.escape("rest_poll_interval_s=0.1 polls 9600")):
        feed_config(disable_websocket=True, rest_poll_interval_s=0.1)


def test_backfill_beyond_one_klines_request_or_the_window_is_rejected() -> None:
    with pytest.raises(ConfigError, match=re.escape("backfill_bars=1500 is outside 1..1499")):
        feed_config(backfill_bars=1500, window_bars=2000)
    with pytest.raises(ConfigError, match=re.escape("window_bars=100 is below")):
        feed_config(backfill_bars=200, window_bars=100)


def test_repeated_symbol_is_rejected() -> None:
    with pytest.raises(ConfigError, match="names a symbol twice"):
        feed_config(symbols=["BTCUSDT", "BTCUSDT"])
