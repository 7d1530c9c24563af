"""Configuration sections of the protective side: `[guard]`, `[exits]`, `[kill_switch]`, `[dms]`
and `[watchdog]`. Decoded by `shared.config` like every other section; the cross-field checks here
raise ValueError with one sentence, which `shared.config` turns into ConfigError.
"""

from __future__ import annotations

from dataclasses import dataclass

# Programs the watchdog may supervise: those that write a heartbeat from their event loop.
WATCHABLE_PROGRAMS = ("feed", "guard", "trader", "reporter")


@dataclass(frozen=True)
class GuardConfig:
    heartbeat_interval_s: float = 1.0  # shm heartbeat period (and the Redis mirror)
    check_interval_s: float = 0.25  # exit rules evaluated against the latest marks this often
    reconcile_interval_s: float = 10.0  # full REST check (weight 50); events reconcile at once
    feed_silent_after_s: float = 5.0  # feed heartbeat/marks older than this: REST mode (T1)
    # No newer mark from the streams (bus, shm) for a held symbol this long: REST mode, whatever
    # the feed's heartbeat says (a stalled socket leaves the feed beating). < dms.blind_after_s.
    marks_stale_after_s: float = 30.0
    trader_silent_after_s: float = 10.0  # trader heartbeat older than this: halt entries (T2)
    rest_poll_interval_s: float = 1.0  # REST mode: mark prices and positions polled this often
    stop_working_type: str = "MARK_PRICE"  # workingType of the protective STOP_MARKET
    flatten_round_s: float = 0.5  # pause between flatten rounds while REST shows a position
    flatten_max_rounds: int = 40  # rounds before flatten gives up and alerts (stops stay)
    call_timeout_s: float = 10.0  # deadline of one REST call made by the guard
    stop_move_min_ticks: int = 5  # a trailing stop moves at the exchange only this many ticks on
    stop_move_min_interval_s: float = 5.0  # ...and at most this often per symbol
    # The entry lease's life (Redis PX TTL): renewed after each full reconcile that found every
    # position's resting stop; the trader sends no entry once it ran out. > reconcile_interval_s.
    lease_ttl_s: float = 30.0
    bus_endpoint: str = ""  # the feed's PUB endpoint; empty = ipc://@slt-<instance>-feed-bus


@dataclass(frozen=True)
class ExitsConfig:
    stop_loss_pct: float = 2.0  # default stop distance from entry, % of price (no trader intent)
    take_profit_pct: float = 4.0  # default take-profit distance from entry, % of price
    take_profit_close_fraction: float = 0.5  # share of the position closed at the take-profit
    trailing_activation_pct: float = 1.5  # profit (% of price) after which the stop trails
    trailing_distance_pct: float = 1.0  # trailing stop distance behind the best mark, % of price
    time_stop_s: float = 3600.0  # close a position not in profit after this long (0 = off)
    max_holding_s: float = 7200.0  # close any position held this long (seeds: 2 h; 0 = off)
    counter_trend_min_strength: float = 0.002  # trend against the position above this: close
    counter_trend_fast_bars: int = 20  # fast EMA of closes (bars) for the trend
    counter_trend_slow_bars: int = 60  # slow EMA of closes (bars)
    emergency_pnl_pct: float = -99.0  # unrealised PnL at or below this % of margin: close now
    liquidation_buffer_pct: float = 2.0  # mark within this % of the liquidation price: cut
    liquidation_cut_fraction: float = 0.5  # share closed when the buffer is breached (once)


@dataclass(frozen=True)
class KillSwitchConfig:
    max_drawdown_pct: float = 20.0  # peak-to-trough equity drawdown that flattens and halts
    daily_loss_limit_pct: float = 10.0  # loss since 00:00 UTC, % of that day's start equity


@dataclass(frozen=True)
class DmsConfig:
    enabled: bool = True  # the dead-man's switch flattens on silence or blindness
    silence_after_s: float = 120.0  # feed and trader both silent this long, positions open
    blind_after_s: float = 60.0  # no fresh mark from any source this long, positions open


@dataclass(frozen=True)
class WatchdogConfig:
    programs: tuple[str, ...] = ("feed", "guard", "trader", "reporter")  # programs it watches
    check_interval_s: float = 1.0  # heartbeat table read and decisions this often
    stale_after_s: float = 3.0  # heartbeat older than this: hung (3 x the 1 s interval)
    progress_stale_after_s: float = 180.0  # main progress older than this: stuck (0 = off)
    startup_grace_s: float = 20.0  # after a (re)start, no heartbeat is required for this long
    kill_after_s: float = 15.0  # TERM sent, same pid still there after this: KILL (> guard drain)
    rpc_timeout_s: float = 3.0  # deadline of every supervisord XML-RPC call
    max_restarts: int = 5  # restarts (ours and crashes) allowed in restart_window_s...
    restart_window_s: float = 300.0  # ...beyond which the program is backed off
    crash_delay_after: int = 3  # more crashes than this in the window: wait crash_delay_s
    crash_delay_s: float = 60.0  # before the next start of a crash-looping program
    fatal_retry_base_s: float = 10.0  # FATAL retried after this, doubling per attempt...
    fatal_retry_cap_s: float = 600.0  # ...up to this
    service_check_interval_s: float = 10.0  # Redis, PostgreSQL and the exchange probed this often
    alert_interval_s: float = 60.0  # the same alert at most this often
    heartbeat_interval_s: float = 1.0  # the watchdog's own heartbeat


def check_guard(guard: GuardConfig, dms: DmsConfig) -> None:
    """Raise ValueError when the guard's or the dead-man's switch's settings contradict."""
    for name in (
        "heartbeat_interval_s",
        "check_interval_s",
        "reconcile_interval_s",
        "feed_silent_after_s",
        "marks_stale_after_s",
        "trader_silent_after_s",
        "rest_poll_interval_s",
        "flatten_round_s",
        "call_timeout_s",
        "lease_ttl_s",
    ):
        if getattr(guard, name) <= 0:
            raise ValueError(f"config: guard.{name}={getattr(guard, name)} must be > 0")
    if guard.lease_ttl_s <= guard.reconcile_interval_s:
        raise ValueError(
            f"config: guard.lease_ttl_s={guard.lease_ttl_s} must exceed "
            f"guard.reconcile_interval_s={guard.reconcile_interval_s}, which renews it"
        )
    if guard.stop_working_type not in ("MARK_PRICE", "CONTRACT_PRICE"):
        raise ValueError(
            f"config: guard.stop_working_type={guard.stop_working_type!r} is not "
            "MARK_PRICE or CONTRACT_PRICE"
        )
    if guard.stop_move_min_ticks < 1 or guard.stop_move_min_interval_s < 0:
        raise ValueError(
            f"config: guard.stop_move_min_ticks={guard.stop_move_min_ticks} must be >= 1 and "
            f"guard.stop_move_min_interval_s={guard.stop_move_min_interval_s} >= 0"
        )
    if guard.flatten_max_rounds < 1:
        raise ValueError(
            f"config: guard.flatten_max_rounds={guard.flatten_max_rounds} must be >= 1"
        )
    if dms.silence_after_s <= guard.feed_silent_after_s:
        raise ValueError(
            f"config: dms.silence_after_s={dms.silence_after_s} must exceed "
            f"guard.feed_silent_after_s={guard.feed_silent_after_s} (REST mode comes first)"
        )
    if guard.marks_stale_after_s >= dms.blind_after_s:
        raise ValueError(
            f"config: guard.marks_stale_after_s={guard.marks_stale_after_s} must be below "
            f"dms.blind_after_s={dms.blind_after_s} (REST marks come before the blind flatten)"
        )
    if dms.blind_after_s <= guard.rest_poll_interval_s * 3:
        raise ValueError(
            f"config: dms.blind_after_s={dms.blind_after_s} must exceed three REST polls "
            f"({guard.rest_poll_interval_s * 3} s)"
        )


def check_exits(exits: ExitsConfig, kill: KillSwitchConfig) -> None:
    """Raise ValueError for an exit or kill-switch setting outside its range."""
    for name in (
        "stop_loss_pct",
        "take_profit_pct",
        "trailing_distance_pct",
        "liquidation_buffer_pct",
    ):
        value = getattr(exits, name)
        if not 0 < value < 100:
            raise ValueError(f"config: exits.{name}={value} is outside (0, 100)")
    for name in ("take_profit_close_fraction", "liquidation_cut_fraction"):
        value = getattr(exits, name)
        if not 0 < value <= 1:
            raise ValueError(f"config: exits.{name}={value} is outside (0, 1]")
    if not -100 <= exits.emergency_pnl_pct < 0:
        raise ValueError(
            f"config: exits.emergency_pnl_pct={exits.emergency_pnl_pct} is outside [-100, 0)"
        )
    if not 1 <= exits.counter_trend_fast_bars < exits.counter_trend_slow_bars:
        raise ValueError(
            f"config: exits.counter_trend_fast_bars={exits.counter_trend_fast_bars} must be "
            f"below exits.counter_trend_slow_bars={exits.counter_trend_slow_bars}"
        )
    for name in ("max_drawdown_pct", "daily_loss_limit_pct"):
        value = getattr(kill, name)
        if not 0 < value <= 100:
            raise ValueError(f"config: kill_switch.{name}={value} is outside (0, 100]")


def check_watchdog(wd: WatchdogConfig) -> None:
    """Raise ValueError for an unknown program or a deadline that cannot work."""
    for program in wd.programs:
        if program not in WATCHABLE_PROGRAMS:
            raise ValueError(
                f"config: watchdog.programs names {program!r}, not one of "
                f"{', '.join(WATCHABLE_PROGRAMS)}"
            )
    if wd.stale_after_s < 2 * wd.check_interval_s:
        raise ValueError(
            f"config: watchdog.stale_after_s={wd.stale_after_s} is below two checks "
            f"({2 * wd.check_interval_s} s)"
        )
    if wd.max_restarts < 1 or wd.crash_delay_after < 1:
        raise ValueError("config: watchdog.max_restarts and crash_delay_after must be >= 1")
    for name in (
        "rpc_timeout_s",
        "kill_after_s",
        "restart_window_s",
        "crash_delay_s",
        "fatal_retry_base_s",
        "fatal_retry_cap_s",
        "service_check_interval_s",
        "alert_interval_s",
        "heartbeat_interval_s",
        "startup_grace_s",
    ):
        if getattr(wd, name) <= 0:
            raise ValueError(f"config: watchdog.{name}={getattr(wd, name)} must be > 0")


def check_guard_drain(guard: GuardConfig, wd: WatchdogConfig) -> None:
    """Raise ValueError when the watchdog would KILL a watched guard while it still drains: after
    TERM the guard lets the exchange call in flight finish for up to guard.call_timeout_s."""
    if "guard" in wd.programs and wd.kill_after_s <= guard.call_timeout_s:
        raise ValueError(
            f"config: watchdog.kill_after_s={wd.kill_after_s} must exceed the guard's drain "
            f"guard.call_timeout_s={guard.call_timeout_s} (a KILL would cut it short)"
        )
