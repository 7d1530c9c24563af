"""The guard's silence policy and dead-man's switch (DESIGN-RULES rule 12).

Pure: the guard passes the CLOCK_MONOTONIC times (ms) of the last sign of life of the feed,
the trader, the freshest streamed mark and the freshest mark price from any source, and acts on
the decision.

An age is `now - last`; a source never seen counts from when the guard started watching
(`now - started`), so a guard that starts into silence waits the full threshold first.
"Silent" means strictly older than the threshold.

1. use_rest: poll marks and positions over REST (T1) when either
   a. the feed is silent > `guard.feed_silent_after_s`, or
   b. positions are open and the streamed marks (bus, shm) are stale >
      `guard.marks_stale_after_s`, whatever the feed's heartbeat says: a stalled socket (open,
      silent) leaves the feed alive and beating, and only the marks show it.
2. halt_entries: the trader is silent > `guard.trader_silent_after_s` -> halt flag, no new
   entries; exits are still managed (T2).
3. flatten, only when `dms.enabled` and positions are open, first match:
   a. "dms_silence": the feed AND the trader are both silent > `dms.silence_after_s` (T3);
   b. "dms_blind": the freshest mark from any source, the guard's own REST marks included, is
      older than `dms.blind_after_s` (the guard cannot see prices, so its exit rules cannot
      work). The config keeps `marks_stale_after_s` below it, so REST is tried first.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from shared.config.ops import DmsConfig, GuardConfig

_MS_PER_S = Decimal(1000)


@dataclass(frozen=True, slots=True)
class Liveness:
    """What the guard knows of the others, all times CLOCK_MONOTONIC milliseconds."""

    now_ms: int
    started_ms: int  # when the guard started watching
    feed_last_ms: int | None  # last sign of feed life (heartbeat or message); None = never seen
    trader_last_ms: int | None
    mark_last_ms: int | None  # freshest mark price from ANY source (shm, bus, REST)
    has_positions: bool
    # Streamed marks (bus, shm) of the open positions: the oldest, over those symbols, of the
    # last time a stream brought a newer mark; None = one of them never had one.
    stream_mark_last_ms: int | None


@dataclass(frozen=True, slots=True)
class SilenceDecision:
    """What the guard does about silence."""

    use_rest: bool  # feed silent > guard.feed_silent_after_s
    halt_entries: bool  # trader silent > guard.trader_silent_after_s
    flatten_reason: str | None  # "dms_silence" | "dms_blind" | None
    detail: str  # one sentence with the ages


def _age_ms(live: Liveness, last_ms: int | None) -> int:
    return live.now_ms - (live.started_ms if last_ms is None else last_ms)


def _is_older(age_ms: int, limit_s: float) -> bool:
    return age_ms > Decimal(str(limit_s)) * _MS_PER_S


def silence_decision(live: Liveness, guard: GuardConfig, dms: DmsConfig) -> SilenceDecision:
    """Return whether to poll REST, halt entries or flatten, given the ages of the last signs
    of life (see the module docstring for the rules and their order)."""
    feed_ms = _age_ms(live, live.feed_last_ms)
    trader_ms = _age_ms(live, live.trader_last_ms)
    mark_ms = _age_ms(live, live.mark_last_ms)
    stream_ms = _age_ms(live, live.stream_mark_last_ms)
    marks_stale = live.has_positions and _is_older(stream_ms, guard.marks_stale_after_s)
    flatten: str | None = None
    if dms.enabled and live.has_positions:
        if _is_older(feed_ms, dms.silence_after_s) and _is_older(trader_ms, dms.silence_after_s):
            flatten = "dms_silence"
        elif _is_older(mark_ms, dms.blind_after_s):
            flatten = "dms_blind"
    detail = (
        f"feed silent {feed_ms / 1000:.3f} s, trader silent {trader_ms / 1000:.3f} s, "
        f"freshest mark {mark_ms / 1000:.3f} s old"
    )
    if marks_stale:  # say why REST mode while the feed beats
        detail += f", streamed marks {stream_ms / 1000:.3f} s old"
    return SilenceDecision(
        use_rest=_is_older(feed_ms, guard.feed_silent_after_s) or marks_stale,
        halt_entries=_is_older(trader_ms, guard.trader_silent_after_s),
        flatten_reason=flatten,
        detail=detail,
    )
