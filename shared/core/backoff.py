"""Retry delays and the circuit breaker: pure, time and randomness passed in.

Back-off is exponential with FULL jitter: the delay before retry `attempt` (0-based) is drawn
uniformly from [0, min(cap, base · 2^attempt)]. Of the schemes compared in AWS's "Exponential
Backoff and Jitter" (2015), full jitter spreads competing clients best and does the least total
work; decorrelated jitter is close but needs the previous delay as state, which a pure function
of the attempt number does not have. Callers bound the number of attempts.

The circuit breaker is a state machine over caller-supplied time (`now_s`, seconds of any
monotonic clock):

    CLOSED --N consecutive failures--> OPEN --cooldown elapsed--> HALF_OPEN
    HALF_OPEN --probe succeeds--> CLOSED
    HALF_OPEN --probe fails-----> OPEN (a new cooldown)

In HALF_OPEN exactly one call (the probe) is let through until it reports its outcome.
"""

from __future__ import annotations

import enum
import math

import numpy


def backoff_delay_s(
    attempt: int, base_s: float, cap_s: float, rng: numpy.random.Generator
) -> float:
    """Return the delay before retry `attempt` (0-based), seconds, with full jitter.

    Raises ValueError for a negative attempt or non-positive base/cap.
    """
    if attempt < 0:
        raise ValueError(f"backoff: attempt={attempt} must be >= 0")
    if base_s <= 0 or cap_s <= 0:
        raise ValueError(f"backoff: base_s={base_s} and cap_s={cap_s} must be > 0")
    # 2**1024 overflows a float; any exponent past log2(cap/base) is capped anyway.
    exponent = min(attempt, 1 + math.ceil(math.log2(max(cap_s / base_s, 1.0))))
    ceiling = min(cap_s, base_s * 2.0**exponent)
    return float(rng.uniform(0.0, ceiling))


class BreakerState(enum.Enum):
    CLOSED = "closed"  # calls pass; consecutive failures are counted
    OPEN = "open"  # calls fail fast until the cooldown has elapsed
    HALF_OPEN = "half_open"  # one probe call passes; its outcome closes or reopens


class CircuitBreaker:
    """Open after `failure_threshold` consecutive failures, probe again after `cooldown_s`."""

    def __init__(self, failure_threshold: int = 5, cooldown_s: float = 60.0) -> None:
        if failure_threshold < 1:
            raise ValueError(f"breaker: failure_threshold={failure_threshold} must be >= 1")
        if cooldown_s <= 0:
            raise ValueError(f"breaker: cooldown_s={cooldown_s} must be > 0")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.consecutive_failures = 0
        self._state = BreakerState.CLOSED
        self._opened_at_s = 0.0
        self._is_probe_out = False

    def state(self, now_s: float) -> BreakerState:
        """Return the state at `now_s` (OPEN turns HALF_OPEN once the cooldown has elapsed)."""
        if self._state is BreakerState.OPEN and now_s - self._opened_at_s >= self.cooldown_s:
            self._state = BreakerState.HALF_OPEN
            self._is_probe_out = False
        return self._state

    def allow(self, now_s: float) -> bool:
        """Return whether a call may go out now; in HALF_OPEN the first caller gets the probe."""
        state = self.state(now_s)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._is_probe_out:
            self._is_probe_out = True
            return True
        return False

    def retry_after_s(self, now_s: float) -> float:
        """Return the seconds until the breaker lets a probe through (0 when it would now)."""
        if self.state(now_s) is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at_s + self.cooldown_s - now_s)

    def record_success(self, now_s: float) -> None:
        """Report a call that reached a healthy exchange: close the breaker."""
        del now_s  # a success closes the breaker whenever it happens
        self.consecutive_failures = 0
        self._state = BreakerState.CLOSED
        self._is_probe_out = False

    def record_failure(self, now_s: float) -> None:
        """Report a call that failed because of the exchange or the network."""
        state = self.state(now_s)
        self.consecutive_failures += 1
        if state is BreakerState.HALF_OPEN or (
            state is BreakerState.CLOSED and self.consecutive_failures >= self.failure_threshold
        ):
            self._state = BreakerState.OPEN
            self._opened_at_s = now_s
            self._is_probe_out = False

    def release_probe(self, now_s: float) -> None:
        """Return an unused probe slot (the probe call ended without telling health either way)."""
        if self.state(now_s) is BreakerState.HALF_OPEN:
            self._is_probe_out = False
