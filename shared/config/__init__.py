"""Configuration: `config/default.toml`, overlaid by `config/<mode>.toml`, then by the file named
in `SLT_CONFIG` (a user's local overrides, kept outside the repo), decoded into one frozen, typed
object.

Code receives `Config`, never a dict. Decoding rejects unknown keys and wrong types; cross-field
checks are small functions that each raise `ConfigError` with one sentence. Secrets never live in
the repo's config: in live mode the API key and secret come from the environment
(`SLT_API_KEY`, `SLT_API_SECRET`) or from a file outside the repo (`exchange.api_secret_file`);
the paper exchange's documented, non-secret credentials live in `config/paper.toml`.

Error classes:
    ConfigError(Exception)   broken configuration; processes exit with code 2
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.config.ops import (
    DmsConfig,
    ExitsConfig,
    GuardConfig,
    KillSwitchConfig,
    WatchdogConfig,
    check_exits,
    check_guard,
    check_guard_drain,
    check_watchdog,
)
from shared.config.reporter import ReporterConfig, check_reporter
from shared.config.trader import ModelConfig, TraderConfig, check_trader

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "config"
MODES = ("paper", "live")


class ConfigError(Exception):
    """The configuration is broken; the message is one sentence naming key, value and limit."""


@dataclass(frozen=True)
class ExchangeConfig:
    rest_url: str  # base URL of the REST API, e.g. https://fapi.binance.com
    ws_url: str  # base URL of the market/user WebSocket streams, e.g. wss://fstream.binance.com
    api_key: str = field(default="", repr=False)  # paper mode only; live keys come from the env
    api_secret: str = field(default="", repr=False)  # paper mode only; live secret from env/file
    api_secret_file: str = ""  # live: path of a file outside the repo holding the secret
    recv_window_ms: int = 5000  # recvWindow sent with signed requests, milliseconds
    request_timeout_s: float = 10.0  # total deadline of one REST request (connect to last byte)
    retry_max_attempts: int = 5  # attempts of an idempotent request on transient errors
    retry_base_s: float = 0.25  # first back-off ceiling; doubles per attempt (full jitter)
    retry_cap_s: float = 5.0  # back-off ceiling never exceeds this
    breaker_failures: int = 5  # consecutive exchange failures that open the circuit breaker
    breaker_cooldown_s: float = 60.0  # open breaker lets one probe through after this long
    weight_limit_1m: int = 2400  # REQUEST_WEIGHT per minute per IP (exchangeInfo rateLimits)
    guard_reserved_share: float = 0.2  # share of the weight only the position-guard may spend
    expected_processes: int = 4  # processes sharing the weight; sizes the budget without Redis
    rate_limit_max_wait_s: float = 5.0  # longest wait for budget or Retry-After before failing
    budget_redis_timeout_s: float = 0.25  # deadline of each rate-budget call to Redis
    budget_redis_retry_s: float = 10.0  # after a Redis failure, local budget for this long

    def __repr__(self) -> str:
        key = self.api_key[:4] + "…" if self.api_key else ""
        return (
            f"ExchangeConfig(rest_url={self.rest_url!r}, ws_url={self.ws_url!r}, api_key={key!r})"
        )


@dataclass(frozen=True)
class PaperExchangeConfig:
    host: str  # interface the paper exchange binds
    port: int  # one port for REST and WebSocket
    speed: float  # simulated seconds per real second (1 = real time, 60 = a minute per second)
    data_dir: str  # directory with klines/ and funding/ (relative to the repo root)
    state_path: str  # JSON state file, relative paths under run.dir; survives restarts
    symbols: tuple[str, ...]  # replayed USDT-M perpetuals; each needs data and a real spec
    api_key: str = field(repr=False)  # the paper account's API key (documented, not a secret)
    api_secret: str = field(repr=False)  # the paper account's secret (documented, not a secret)
    initial_balance_usdt: float = 10000.0  # wallet balance of a fresh paper account, USDT
    maker_fee_rate: float = 0.0002  # fraction of notional
    taker_fee_rate: float = 0.0004  # fraction of notional
    market_slippage_bps: float = 0.0  # added to MARKET fills against the taker, basis points
    countdown_cancels_algo: bool = False  # whether countdownCancelAll also cancels algo orders
    ws_ping_interval_s: float = 180.0  # server ping frames (Binance: every 3 minutes)
    ws_pong_timeout_s: float = (
        600.0  # close a connection with no pong for this long (Binance: 10 min)
    )
    ws_max_lifetime_s: float = 86400.0  # forced disconnect after this long (Binance: 24 h)
    ws_push_interval_ms: int = 250  # real ms between market-stream pushes (kline: 250 ms)
    listen_key_validity_s: float = 3600.0  # a listenKey expires this long after its last keep-alive
    ws_max_incoming_per_s: int = 10  # incoming frames/s past which a socket closes (Binance: 10)
    ws_queue_max_messages: int = 10000  # per-socket send queue; full: oldest market data dropped
    request_weight_limit_1m: int = 2400  # REQUEST_WEIGHT per minute per IP
    order_limit_10s: int = 300  # ORDERS per 10 seconds per account
    order_limit_1m: int = 1200  # ORDERS per minute per account
    ban_after_429s: int = 3  # 429 answers in one minute after which the IP gets 418
    ban_s: float = 120.0  # length of an IP ban (418), seconds
    max_catch_up_s: float = 86400.0  # simulated time replayed step by step after a restart
    state_save_interval_s: float = 1.0  # real seconds between saves of a changed state
    fsync_state: bool = False  # fsync each save (power-cut safe, ~2 ms per order reply)
    stats_interval_s: float = 60.0  # real seconds between `paper_exchange_stats` log lines

    def __repr__(self) -> str:
        return (
            f"PaperExchangeConfig(host={self.host!r}, port={self.port}, speed={self.speed}, "
            f"symbols={self.symbols!r}, state_path={self.state_path!r})"
        )


@dataclass(frozen=True)
class StreamsConfig:
    max_streams_per_connection: int = 200  # Binance allows 1024 (2026); ccxt and nautilus keep 200
    ping_interval_s: float = 20.0  # client ping frame every this long (server pings are answered)
    pong_timeout_s: float = 20.0  # no pong within this long: the connection is dead
    silence_timeout_s: float = 60.0  # market connection delivering nothing this long is dead
    open_timeout_s: float = 10.0  # deadline of the TCP + WebSocket handshake
    close_timeout_s: float = 5.0  # deadline of the closing handshake before the socket is dropped
    reconnect_base_s: float = 5.0  # first reconnect back-off ceiling; doubles (full jitter)
    reconnect_cap_s: float = 300.0  # reconnect back-off ceiling never exceeds this
    healthy_after_s: float = 60.0  # connected this long: the back-off starts over
    max_connection_age_s: float = 85500.0  # proactive rollover (Binance closes at 24 h)
    rollover_timeout_s: float = 30.0  # new market connection must deliver within this
    queue_max_messages: int = 10000  # consumer queue; market drops oldest, user data blocks
    bad_message_log_interval_s: float = 10.0  # at most one bad_message warning per this long
    listen_key_keepalive_s: float = 1800.0  # PUT /fapi/v1/listenKey every this long (valid 60 min)
    user_call_timeout_s: float = 30.0  # deadline of listenKey create/keep-alive and of resync


FEED_DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "LTCUSDT")
MAX_KLINES_PER_REQUEST = 1500  # GET /fapi/v1/klines limit ceiling (BINANCE-API.md §5)


@dataclass(frozen=True)
class FeedConfig:
    symbols: tuple[str, ...] = FEED_DEFAULT_SYMBOLS  # USDT-M perpetuals streamed (1m klines, marks)
    window_bars: int = 500  # closed 1m bars kept per symbol in the shared-memory ring
    backfill_bars: int = 500  # closed bars loaded over REST per symbol at a fresh start
    heartbeat_interval_s: float = 1.0  # shm heartbeat and `heartbeat.feed` bus message period
    stats_interval_s: float = 60.0  # `feed_stats` log line period, seconds
    cache_flush_interval_s: float = 0.1  # Redis mirror written at most this often (conflated)
    cache_retry_s: float = 5.0  # after a failed Redis write, wait this long before retrying
    warning_interval_s: float = (
        30.0  # a repeated warning (Redis down, bad event) at most this often
    )
    bus_endpoint: str = ""  # ZeroMQ PUB endpoint; empty = ipc://@slt-<instance>-feed-bus
    disable_websocket: bool = False  # poll klines and marks over REST instead of market streams
    disable_rest_fallback: bool = False  # never use REST for market data after the start backfill
    rest_poll_interval_s: float = 2.0  # disable_websocket: one poll of every symbol this often
    mark_stream: str = "all"  # "all": one !markPrice@arr@1s; "symbol": <s>@markPrice@1s each


MARK_STREAMS = ("all", "symbol")  # feed.mark_stream


@dataclass(frozen=True)
class RedisConfig:
    url: str = ""  # external Redis URL; empty = the stack's private instance
    private_port: int = 6391  # port of the private instance started under supervisord
    socket_timeout_s: float = 2.0  # every Redis call has this deadline


@dataclass(frozen=True)
class PostgresConfig:
    dsn: str = ""  # external PostgreSQL DSN; empty = the stack's private instance
    private_port: int = 5441  # port of the private instance started under supervisord
    database: str = "slt"  # database name of the private instance
    command_timeout_s: float = 5.0  # every query has this deadline


@dataclass(frozen=True)
class RunConfig:
    dir: str = "run"  # runtime directory: sockets, logs, databases, state (relative to repo root)
    log_level: str = "INFO"  # DEBUG, INFO, WARNING or ERROR


@dataclass(frozen=True)
class Config:
    mode: str  # "paper" or "live"
    exchange: ExchangeConfig
    paper_exchange: PaperExchangeConfig
    redis: RedisConfig
    postgres: PostgresConfig
    run: RunConfig
    streams: StreamsConfig = field(default_factory=StreamsConfig)
    feed: FeedConfig = field(default_factory=FeedConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    exits: ExitsConfig = field(default_factory=ExitsConfig)
    kill_switch: KillSwitchConfig = field(default_factory=KillSwitchConfig)
    dms: DmsConfig = field(default_factory=DmsConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    trader: TraderConfig = field(default_factory=TraderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    reporter: ReporterConfig = field(default_factory=ReporterConfig)

    def path(self, relative: str) -> Path:
        """Resolve a config path against the repo root (absolute paths stay as they are)."""
        p = Path(relative)
        return p if p.is_absolute() else REPO_ROOT / p


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _decode_value(path: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config: {path} must be a table, got {value!r}")
        return _decode(path, tp, value)
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"config: {path} must be a list, got {value!r}")
        return tuple(_decode_value(f"{path}[{i}]", item_tp, v) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"config: {path} has an unsupported type")  # not used by any field
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config: {path} must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config: {path} must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config: {path} must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config: {path} must be a string, got {value!r}")
        return value
    raise ConfigError(f"config: {path} has an unsupported type {tp!r}")


def _decode(prefix: str, cls: Any, raw: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"config: unknown key {where}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        where = f"{prefix}.{name}" if prefix else name
        if name in raw:
            kwargs[name] = _decode_value(where, hints[name], raw[name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"config: missing key {where}")
    return cls(**kwargs)


def _check_mode(cfg: Config) -> None:
    if cfg.mode not in MODES:
        raise ConfigError(f"config: mode={cfg.mode!r} is not one of {', '.join(MODES)}")


def _check_live_secrets_not_in_files(cfg: Config) -> None:
    if cfg.mode == "live" and (cfg.exchange.api_key or cfg.exchange.api_secret):
        raise ConfigError(
            "config: exchange.api_key/api_secret must not be set in a config file in live mode; "
            "use SLT_API_KEY and SLT_API_SECRET or exchange.api_secret_file"
        )
    rep = cfg.reporter
    if rep.telegram_bot_token or rep.discord_webhook_url or rep.status_token:
        raise ConfigError(
            "config: reporter tokens must not be set in a config file; use "
            "SLT_TELEGRAM_BOT_TOKEN, SLT_DISCORD_WEBHOOK_URL and SLT_STATUS_TOKEN"
        )


def _check_paper(cfg: Config) -> None:
    p = cfg.paper_exchange
    if not 0 < p.port < 65536:
        raise ConfigError(f"config: paper_exchange.port={p.port} is outside 1..65535")
    if not 0 < p.speed <= 3600:
        raise ConfigError(f"config: paper_exchange.speed={p.speed} is outside (0, 3600]")
    if not p.symbols:
        raise ConfigError("config: paper_exchange.symbols is empty; name at least one symbol")
    if p.initial_balance_usdt <= 0:
        raise ConfigError(
            f"config: paper_exchange.initial_balance_usdt={p.initial_balance_usdt} must be > 0"
        )
    positive = (
        "ws_ping_interval_s",
        "ws_pong_timeout_s",
        "ws_max_lifetime_s",
        "ws_push_interval_ms",
        "ws_max_incoming_per_s",
        "ws_queue_max_messages",
        "listen_key_validity_s",
        "state_save_interval_s",
        "stats_interval_s",
    )
    for name in positive:
        if getattr(p, name) <= 0:
            raise ConfigError(f"config: paper_exchange.{name}={getattr(p, name)} must be > 0")


def _check_exchange(cfg: Config) -> None:
    x = cfg.exchange
    if not 0 < x.recv_window_ms <= 60000:
        raise ConfigError(f"config: exchange.recv_window_ms={x.recv_window_ms} is outside 1..60000")
    if not 0 <= x.guard_reserved_share < 1:
        raise ConfigError(
            f"config: exchange.guard_reserved_share={x.guard_reserved_share} is outside [0, 1)"
        )
    positive = (
        "request_timeout_s",
        "retry_max_attempts",
        "retry_base_s",
        "retry_cap_s",
        "breaker_failures",
        "breaker_cooldown_s",
        "weight_limit_1m",
        "expected_processes",
        "budget_redis_timeout_s",
        "budget_redis_retry_s",
    )
    for name in positive:
        if getattr(x, name) <= 0:
            raise ConfigError(f"config: exchange.{name}={getattr(x, name)} must be > 0")
    if x.rate_limit_max_wait_s < 0:
        raise ConfigError(
            f"config: exchange.rate_limit_max_wait_s={x.rate_limit_max_wait_s} must be >= 0"
        )


def _check_streams(cfg: Config) -> None:
    s = cfg.streams
    if not 1 <= s.max_streams_per_connection <= 1024:
        raise ConfigError(
            f"config: streams.max_streams_per_connection={s.max_streams_per_connection} "
            "is outside 1..1024"
        )
    positive = (
        "ping_interval_s",
        "pong_timeout_s",
        "silence_timeout_s",
        "open_timeout_s",
        "close_timeout_s",
        "reconnect_base_s",
        "reconnect_cap_s",
        "healthy_after_s",
        "max_connection_age_s",
        "rollover_timeout_s",
        "queue_max_messages",
        "bad_message_log_interval_s",
        "listen_key_keepalive_s",
        "user_call_timeout_s",
    )
    for name in positive:
        if getattr(s, name) <= 0:
            raise ConfigError(f"config: streams.{name}={getattr(s, name)} must be > 0")
    if s.max_connection_age_s >= 86400:
        raise ConfigError(
            f"config: streams.max_connection_age_s={s.max_connection_age_s} must be < 86400 "
            "(Binance closes every connection after 24 h; roll over before)"
        )
    if s.listen_key_keepalive_s >= 3600:
        raise ConfigError(
            f"config: streams.listen_key_keepalive_s={s.listen_key_keepalive_s} must be < 3600 "
            "(a listenKey expires 60 minutes after its last keep-alive)"
        )


def _check_feed(cfg: Config) -> None:
    f = cfg.feed
    if not f.symbols:
        raise ConfigError("config: feed.symbols is empty; name at least one symbol")
    if len(set(f.symbols)) != len(f.symbols):
        raise ConfigError(f"config: feed.symbols={list(f.symbols)} names a symbol twice")
    if not 1 <= f.backfill_bars < MAX_KLINES_PER_REQUEST:
        raise ConfigError(
            f"config: feed.backfill_bars={f.backfill_bars} is outside "
            f"1..{MAX_KLINES_PER_REQUEST - 1}"
        )
    if f.window_bars < f.backfill_bars:
        raise ConfigError(
            f"config: feed.window_bars={f.window_bars} is below "
            f"feed.backfill_bars={f.backfill_bars}"
        )
    positive = (
        "heartbeat_interval_s",
        "stats_interval_s",
        "cache_flush_interval_s",
        "cache_retry_s",
        "warning_interval_s",
        "rest_poll_interval_s",
    )
    for name in positive:
        if getattr(f, name) <= 0:
            raise ConfigError(f"config: feed.{name}={getattr(f, name)} must be > 0")
    if f.mark_stream not in MARK_STREAMS:
        raise ConfigError(
            f"config: feed.mark_stream={f.mark_stream!r} is not one of {', '.join(MARK_STREAMS)}"
        )
    if f.disable_websocket and f.disable_rest_fallback:
        raise ConfigError(
            "config: feed.disable_websocket and feed.disable_rest_fallback are both true; "
            "the feed would have no market data"
        )
    if f.disable_websocket:
        # One poll: premiumIndex for all symbols (weight 10) + one klines page each (weight 1).
        per_minute = (10 + len(f.symbols)) * 60 / f.rest_poll_interval_s
        allowed = cfg.exchange.weight_limit_1m * (1 - cfg.exchange.guard_reserved_share) / 2
        if per_minute > allowed:
            raise ConfigError(
                f"config: feed.rest_poll_interval_s={f.rest_poll_interval_s} polls "
                f"{per_minute:.0f} weight/min, over half the unreserved budget {allowed:.0f}"
            )


def _check_log_level(cfg: Config) -> None:
    if cfg.run.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"config: run.log_level={cfg.run.log_level!r} is not a log level")


def _check_ops(cfg: Config) -> None:
    try:
        check_guard(cfg.guard, cfg.dms)
        check_exits(cfg.exits, cfg.kill_switch)
        check_watchdog(cfg.watchdog)
        check_guard_drain(cfg.guard, cfg.watchdog)
        check_trader(cfg.trader, cfg.model)
        check_reporter(cfg.reporter)
    except ValueError as e:
        raise ConfigError(str(e)) from None


CHECKS = (
    _check_mode,
    _check_exchange,
    _check_paper,
    _check_streams,
    _check_feed,
    _check_log_level,
    _check_ops,
)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config: file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {path} is not valid TOML: {e}") from None


def _apply_environment(cfg: Config, env: typing.Mapping[str, str]) -> Config:
    if env.get("SLT_DISABLE_WEBSOCKET", "").lower() in ("1", "true", "yes"):
        cfg = dataclasses.replace(cfg, feed=dataclasses.replace(cfg.feed, disable_websocket=True))
    if env.get("SLT_RELAXED_SIGNAL_MODE", "").lower() in ("1", "true", "yes"):
        cfg = dataclasses.replace(
            cfg, trader=dataclasses.replace(cfg.trader, relaxed_signal_mode=True)
        )
    if env.get("SLT_DISABLE_MODEL_TRAINING", "").lower() in ("1", "true", "yes"):
        cfg = dataclasses.replace(
            cfg, trader=dataclasses.replace(cfg.trader, disable_model_training=True)
        )
    rep = cfg.reporter
    rep = dataclasses.replace(
        rep,
        telegram_bot_token=env.get("SLT_TELEGRAM_BOT_TOKEN", "") or rep.telegram_bot_token,
        discord_webhook_url=env.get("SLT_DISCORD_WEBHOOK_URL", "") or rep.discord_webhook_url,
        status_token=env.get("SLT_STATUS_TOKEN", "") or rep.status_token,
    )
    cfg = dataclasses.replace(cfg, reporter=rep)
    key = env.get("SLT_API_KEY", "")
    secret = env.get("SLT_API_SECRET", "")
    if not secret and cfg.exchange.api_secret_file:
        secret_path = Path(cfg.exchange.api_secret_file).expanduser()
        try:
            secret = secret_path.read_text().strip()
        except OSError as e:
            raise ConfigError(
                f"config: exchange.api_secret_file={secret_path} cannot be read ({e.strerror})"
            ) from None
    if not key and not secret:
        return cfg
    exchange = dataclasses.replace(
        cfg.exchange,
        api_key=key or cfg.exchange.api_key,
        api_secret=secret or cfg.exchange.api_secret,
    )
    return dataclasses.replace(cfg, exchange=exchange)


def _resolve_run_paths(cfg: Config) -> Config:
    """Make run.dir absolute (relative: under the repo root) and runtime files absolute under it."""
    run_dir = cfg.path(cfg.run.dir)
    state = Path(cfg.paper_exchange.state_path)
    if not state.is_absolute():
        state = run_dir / state
    return dataclasses.replace(
        cfg,
        run=dataclasses.replace(cfg.run, dir=str(run_dir)),
        paper_exchange=dataclasses.replace(cfg.paper_exchange, state_path=str(state)),
    )


def load_config(
    mode: str | None = None,
    overlay: dict[str, Any] | None = None,
    env: typing.Mapping[str, str] | None = None,
    config_dir: Path = CONFIG_DIR,
) -> Config:
    """Load, decode and check the configuration for `mode` (default: SLT_MODE, else paper).

    `overlay` is applied last (tests use it to shrink intervals). Raises ConfigError.
    """
    environ = os.environ if env is None else env
    chosen = mode or environ.get("SLT_MODE") or "paper"
    if chosen not in MODES:
        raise ConfigError(f"config: mode={chosen!r} is not one of {', '.join(MODES)}")
    raw = _read_toml(config_dir / "default.toml")
    raw = _merge(raw, _read_toml(config_dir / f"{chosen}.toml"))
    user_file = environ.get("SLT_CONFIG")
    if user_file:
        raw = _merge(raw, _read_toml(Path(user_file).expanduser()))
    if overlay:
        raw = _merge(raw, overlay)
    raw["mode"] = chosen
    cfg: Config = _decode("", Config, raw)
    # Checked before the environment is applied: a secret from the environment is the right place.
    _check_live_secrets_not_in_files(cfg)
    cfg = _apply_environment(cfg, environ)
    cfg = _resolve_run_paths(cfg)
    for check in CHECKS:
        check(cfg)
    return cfg
