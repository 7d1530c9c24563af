"""Configuration of the trader: `[trader]` (decisions, sizing, self-learning) and `[model]` (labels
and training). Decoded by `shared.config` like every other section; the cross-field checks here
raise ValueError with one sentence, which `shared.config` turns into ConfigError.

Environment flags from the seeds (applied in `shared.config`): SLT_RELAXED_SIGNAL_MODE=1 uses
`relaxed_min_confidence` instead of `min_confidence`; SLT_DISABLE_MODEL_TRAINING=1 turns
retraining off.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TraderConfig:
    enabled: bool = True  # false: the trader scores and follows virtual positions, never enters
    heartbeat_interval_s: float = 1.0  # shm heartbeat (the guard halts entries when it stops)
    cycle_wait_s: float = 2.0  # after a minute's first closed kline, wait at most this long for
    #                            the other symbols' closes before deciding on what is there
    max_open_positions: int = 3  # real positions at once (one per symbol)
    min_confidence: float = 0.5  # seeds: a signal needs confidence above 0.5
    relaxed_signal_mode: bool = False  # seeds' RELAXED_SIGNAL_MODE: relaxed_min_confidence instead
    relaxed_min_confidence: float = 0.45
    virtual_min_confidence: float = 0.5  # untaken signals at or above this are followed virtually
    max_virtual_positions: int = 50  # virtual positions followed at once (oldest kept)
    virtual_interval_s: float = 10.0  # seeds' virtual loop: marks checked this often
    base_margin_fraction: float = 0.05  # margin of a 1x Kelly position, share of equity
    max_position_fraction: float = 0.10  # margin cap per position, share of equity
    max_total_fraction: float = 0.50  # margin cap of all positions together, share of equity
    max_leverage: int = 20  # seeds allow 125; the symbol bracket and stop safety cap it further
    margin_type: str = "CROSSED"  # set per symbol before its first entry (CROSSED | ISOLATED)
    taker_fee_rate: float = 0.0004  # fees of virtual trades and of the evaluation
    position_check_interval_s: float = 2.0  # real positions checked against REST this often
    model_check_interval_s: float = 10.0  # PostgreSQL asked for a newly promoted model this often
    retrain_every_trades: int = 50  # closed trades (real + virtual) between challengers
    disable_model_training: bool = False  # seeds' DISABLE_MODEL_TRAINING
    history_bars: int = 1500  # closed 1m bars per symbol fetched over REST to train on
    outbox_drain_interval_s: float = 1.0  # the PostgreSQL outbox is retried this often
    call_timeout_s: float = 10.0  # deadline of one REST call made by the trader


@dataclass(frozen=True)
class ModelConfig:
    take_profit_pct: float = 0.75  # label and plan: take-profit distance, % of the entry
    stop_loss_pct: float = 0.75  # label and plan: stop distance, % of the entry
    horizon_bars: int = 120  # label: the take-profit must come first within this many 1m bars
    holdout_fraction: float = 0.2  # newest share of samples held out for the metrics
    stride_bars: int = 1  # one sample every this many bars per symbol
    threads: int = 2  # XGBoost threads while training (live prediction uses one)
    min_improvement: float = 0.0  # challenger log-loss must be lower by more than this
    auc_tolerance: float = 0.01  # and its AUC not lower than the champion's by more than this
    seed: int = 7


def check_trader(trader: TraderConfig, model: ModelConfig) -> None:
    """Raise ValueError (one sentence) for an inconsistent [trader] or [model] section."""
    for name in ("min_confidence", "relaxed_min_confidence", "virtual_min_confidence"):
        value = getattr(trader, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"config: trader.{name}={value} must be within 0..1")
    if trader.max_open_positions < 0:
        raise ValueError(f"config: trader.max_open_positions={trader.max_open_positions} < 0")
    for name in ("base_margin_fraction", "max_position_fraction", "max_total_fraction"):
        value = getattr(trader, name)
        if not 0.0 < value <= 1.0:
            raise ValueError(f"config: trader.{name}={value} must be within (0, 1]")
    if trader.max_position_fraction > trader.max_total_fraction:
        raise ValueError(
            f"config: trader.max_position_fraction={trader.max_position_fraction} exceeds "
            f"trader.max_total_fraction={trader.max_total_fraction}"
        )
    if not 1 <= trader.max_leverage <= 125:
        raise ValueError(f"config: trader.max_leverage={trader.max_leverage} is outside 1..125")
    if trader.margin_type not in ("CROSSED", "ISOLATED"):
        raise ValueError(
            f"config: trader.margin_type={trader.margin_type!r} is not CROSSED/ISOLATED"
        )
    if trader.retrain_every_trades < 1:
        raise ValueError(f"config: trader.retrain_every_trades={trader.retrain_every_trades} < 1")
    if not 120 <= trader.history_bars <= 100_000:
        raise ValueError(
            f"config: trader.history_bars={trader.history_bars} is outside 120..100000"
        )
    for name in (
        "heartbeat_interval_s",
        "cycle_wait_s",
        "virtual_interval_s",
        "position_check_interval_s",
        "model_check_interval_s",
        "outbox_drain_interval_s",
        "call_timeout_s",
    ):
        if getattr(trader, name) <= 0:
            raise ValueError(f"config: trader.{name}={getattr(trader, name)} must be > 0")
    if model.take_profit_pct <= 0 or model.stop_loss_pct <= 0:
        raise ValueError(
            f"config: model.take_profit_pct={model.take_profit_pct} and "
            f"model.stop_loss_pct={model.stop_loss_pct} must be > 0"
        )
    if model.horizon_bars < 1:
        raise ValueError(f"config: model.horizon_bars={model.horizon_bars} < 1")
    if not 0.05 <= model.holdout_fraction <= 0.5:
        raise ValueError(
            f"config: model.holdout_fraction={model.holdout_fraction} is outside 0.05..0.5"
        )
    if model.stride_bars < 1 or model.threads < 1:
        raise ValueError("config: model.stride_bars and model.threads must be >= 1")
