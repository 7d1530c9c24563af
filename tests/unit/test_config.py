"""Configuration decoding: typed, frozen, strict about unknown keys and types, secrets kept out."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from shared.config import ConfigError, load_config


def test_paper_mode_loads_with_the_paper_exchange_urls_and_documented_credentials() -> None:
    cfg = load_config("paper", env={})
    assert cfg.mode == "paper"
    assert cfg.exchange.rest_url == "http://127.0.0.1:8700"
    assert cfg.exchange.api_key == cfg.paper_exchange.api_key != ""
    assert cfg.paper_exchange.symbols[:2] == ("BTCUSDT", "ETHUSDT")
    assert isinstance(cfg.paper_exchange.speed, float)


def test_config_is_frozen() -> None:
    cfg = load_config("paper", env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mode = "live"  # type: ignore[misc]


def test_unknown_key_is_rejected_with_its_dotted_path() -> None:
    with pytest.raises(ConfigError, match=r"^config: unknown key paper_exchange\.spede$"):
        load_config("paper", overlay={"paper_exchange": {"spede": 2}}, env={})


def test_wrong_type_names_key_and_value() -> None:
    with pytest.raises(ConfigError, match=r"paper_exchange\.port must be an integer, got '8700'"):
        load_config("paper", overlay={"paper_exchange": {"port": "8700"}}, env={})


def test_cross_field_check_rejects_out_of_range_speed() -> None:
    with pytest.raises(ConfigError, match=r"paper_exchange\.speed=0\.0 is outside"):
        load_config("paper", overlay={"paper_exchange": {"speed": 0.0}}, env={})


def test_live_mode_refuses_a_secret_written_in_a_config_file() -> None:
    with pytest.raises(ConfigError, match="must not be set in a config file in live mode"):
        load_config("live", overlay={"exchange": {"api_secret": "abc"}}, env={})


def test_live_mode_takes_credentials_from_the_environment_and_hides_them_in_repr() -> None:
    cfg = load_config("live", env={"SLT_API_KEY": "LIVEKEY123456", "SLT_API_SECRET": "S3CRETVALUE"})
    assert cfg.exchange.api_key == "LIVEKEY123456"
    assert cfg.exchange.api_secret == "S3CRETVALUE"
    text = repr(cfg)
    assert "S3CRETVALUE" not in text
    assert "LIVEKEY123456" not in text
    assert "LIVE…" in text


def test_live_secret_file_is_read_and_a_missing_one_is_a_one_line_error(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("FROMFILE\n")
    user = tmp_path / "user.toml"
    user.write_text(f'[exchange]\napi_secret_file = "{secret}"\n')
    cfg = load_config("live", env={"SLT_CONFIG": str(user), "SLT_API_KEY": "K"})
    assert cfg.exchange.api_secret == "FROMFILE"
    secret.unlink()
    with pytest.raises(ConfigError, match=r"api_secret_file=.* cannot be read"):
        load_config("live", env={"SLT_CONFIG": str(user), "SLT_API_KEY": "K"})


def test_broken_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    user = tmp_path / "broken.toml"
    user.write_text("[paper_exchange\nport = 1\n")
    with pytest.raises(ConfigError, match=r"broken\.toml is not valid TOML"):
        load_config("paper", env={"SLT_CONFIG": str(user)})


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ConfigError, match="mode='demo' is not one of paper, live"):
        load_config("demo", env={})


def test_paper_state_file_lives_under_the_run_directory(tmp_path: Path) -> None:
    user = tmp_path / "user.toml"
    user.write_text(f'[run]\ndir = "{tmp_path}/run"\n')
    cfg = load_config("paper", env={"SLT_CONFIG": str(user)})
    assert cfg.run.dir == f"{tmp_path}/run"
    assert cfg.paper_exchange.state_path == f"{tmp_path}/run/paper-exchange/state.json"


def test_trader_position_cap_above_the_total_cap_is_rejected() -> None:
    overlay = {"trader": {"max_position_fraction": 0.6, "max_total_fraction": 0.5}}
    with pytest.raises(ConfigError, match=r"max_position_fraction=0\.6 exceeds"):
        load_config("paper", overlay=overlay, env={})


def test_trader_leverage_above_binance_maximum_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"trader.max_leverage=126 is outside 1..125"):
        load_config("paper", overlay={"trader": {"max_leverage": 126}}, env={})


def test_seed_flags_turn_on_relaxed_mode_and_turn_off_training() -> None:
    env = {"SLT_RELAXED_SIGNAL_MODE": "1", "SLT_DISABLE_MODEL_TRAINING": "true"}
    cfg = load_config("paper", env=env)
    assert (cfg.trader.relaxed_signal_mode, cfg.trader.disable_model_training) == (True, True)
    plain = load_config("paper", env={})
    assert (plain.trader.relaxed_signal_mode, plain.trader.disable_model_training) == (False, False)


def test_reporter_tokens_come_from_the_environment_and_stay_out_of_repr() -> None:
    env = {"SLT_TELEGRAM_BOT_TOKEN": "123456:secret-token", "SLT_STATUS_TOKEN": "s3cret"}
    cfg = load_config("paper", env=env)
    assert cfg.reporter.telegram_bot_token == "123456:secret-token"
    assert "secret" not in repr(cfg.reporter) and "s3cret" not in repr(cfg)


def test_reporter_token_in_a_config_file_is_rejected() -> None:
    with pytest.raises(ConfigError, match="reporter tokens must not be set in a config file"):
        load_config("paper", overlay={"reporter": {"status_token": "x"}}, env={})


def test_status_page_off_loopback_needs_a_token() -> None:
    with pytest.raises(ConfigError, match=r"reporter.host=0\.0\.0\.0 is not loopback"):
        load_config("paper", overlay={"reporter": {"host": "0.0.0.0"}}, env={})
    cfg = load_config(
        "paper", overlay={"reporter": {"host": "0.0.0.0"}}, env={"SLT_STATUS_TOKEN": "t0ken"}
    )
    assert cfg.reporter.host == "0.0.0.0"


def test_guard_lease_ttl_defaults_to_three_reconcile_intervals() -> None:
    cfg = load_config("paper", env={})
    assert cfg.guard.lease_ttl_s == 3 * cfg.guard.reconcile_interval_s == 30.0


def test_guard_lease_ttl_not_above_the_reconcile_interval_is_rejected() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^config: guard\.lease_ttl_s=10\.0 must exceed guard\.reconcile_interval_s=10\.0",
    ):
        load_config("paper", overlay={"guard": {"lease_ttl_s": 10.0}}, env={})
