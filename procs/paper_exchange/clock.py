"""Simulated exchange time: `SimClock` runs at `speed` times real time and can pause, resume, jump.

Pure: the caller passes the real time (`real_ms`, integer UTC milliseconds) into every call, so
there is no clock read here and tests drive time by hand. Simulated time never decreases: not
when the real clock steps back, not across pause/resume/set_speed, not across a restart.

State round trip: `to_state(real_ms)` records the simulated and real time of the save;
`SimClock.from_state(state, real_ms)` lets simulated time keep running for the real time the
process was down (at the saved speed), unless the clock was saved paused.
"""

from __future__ import annotations

import math
from typing import Any


def _check_speed(speed: float) -> float:
    value = float(speed)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"clock: speed={speed!r} must be a finite number above 0")
    return value


class SimClock:
    """Simulated time in integer UTC milliseconds, advancing at `speed` x real time."""

    def __init__(self, speed: float, real_ms: int, sim_ms: int | None = None) -> None:
        """Start at `sim_ms` (default: the real time, so speed 1 tracks the wall clock)."""
        self._speed = _check_speed(speed)
        self._anchor_real_ms = int(real_ms)
        self._anchor_sim_ms = int(real_ms if sim_ms is None else sim_ms)
        self._is_paused = False
        self._high_ms = self._anchor_sim_ms

    @property
    def speed(self) -> float:
        """Simulated milliseconds per real millisecond."""
        return self._speed

    @property
    def is_paused(self) -> bool:
        """Whether simulated time is frozen."""
        return self._is_paused

    def now(self, real_ms: int) -> int:
        """Return the simulated time at real time `real_ms`; never less than a previous answer."""
        sim_ms = self._anchor_sim_ms
        if not self._is_paused:
            elapsed_ms = max(0, int(real_ms) - self._anchor_real_ms)
            sim_ms += math.floor(elapsed_ms * self._speed)
        if sim_ms < self._high_ms:
            return self._high_ms
        self._high_ms = sim_ms
        return sim_ms

    def _rebase(self, real_ms: int) -> None:
        self._anchor_sim_ms = self.now(real_ms)
        self._anchor_real_ms = int(real_ms)

    def pause(self, real_ms: int) -> None:
        """Freeze simulated time at its value at `real_ms` (no effect when already paused)."""
        if not self._is_paused:
            self._rebase(real_ms)
            self._is_paused = True

    def resume(self, real_ms: int) -> None:
        """Let simulated time run again from where it was frozen (no effect when running)."""
        if self._is_paused:
            self._anchor_real_ms = int(real_ms)
            self._is_paused = False

    def jump(self, delta_ms: int, real_ms: int) -> None:
        """Move simulated time forward by `delta_ms` (>= 0); raise ValueError when negative."""
        if delta_ms < 0:
            raise ValueError(f"clock: jump delta_ms={delta_ms} is below 0; time only moves forward")
        self._rebase(real_ms)
        self._anchor_sim_ms += int(delta_ms)
        self._high_ms = self._anchor_sim_ms

    def set_speed(self, speed: float, real_ms: int) -> None:
        """Run at `speed` from `real_ms` on; the simulated time so far is kept."""
        new_speed = _check_speed(speed)
        self._rebase(real_ms)
        self._speed = new_speed

    def to_state(self, real_ms: int) -> dict[str, Any]:
        """Return a JSON-able snapshot taken at real time `real_ms`."""
        return {
            "sim_ms": self.now(real_ms),
            "real_ms": int(real_ms),
            "speed": self._speed,
            "is_paused": self._is_paused,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], real_ms: int) -> SimClock:
        """Rebuild a clock saved by `to_state`; unless paused, time ran on while saved.

        Raises ValueError naming the field when the state is malformed.
        """
        for key, kinds in (("sim_ms", int), ("real_ms", int), ("speed", (int, float))):
            value = state.get(key)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(f"clock state: {key}={value!r} is not a number")
        is_paused = state.get("is_paused")
        if not isinstance(is_paused, bool):
            raise ValueError(f"clock state: is_paused={is_paused!r} is not a boolean")
        clock = cls(state["speed"], state["real_ms"], state["sim_ms"])
        if is_paused:
            clock.pause(state["real_ms"])
        clock._rebase(real_ms)
        return clock
