"""Back-off delays (exponential, full jitter, capped) and the circuit breaker's state machine."""

from __future__ import annotations

import numpy
import pytest

from shared.core.backoff import BreakerState, CircuitBreaker, backoff_delay_s


def test_backoff_delay_is_uniform_below_base_times_two_to_the_attempt() -> None:
    delays = [backoff_delay_s(a, 0.5, 60.0, numpy.random.default_rng(7)) for a in range(4)]
    expected = [numpy.random.default_rng(7).uniform(0.0, 0.5 * 2**a) for a in range(4)]
    assert delays == expected


def test_backoff_delay_never_exceeds_the_cap_even_for_huge_attempts() -> None:
    rng = numpy.random.default_rng(1)
    delays = [backoff_delay_s(a, 0.25, 2.0, rng) for a in (3, 10, 100, 5000)]
    assert all(0.0 <= d <= 2.0 for d in delays)


def test_backoff_delay_with_the_same_seed_is_the_same_sequence() -> None:
    first = [backoff_delay_s(a, 0.1, 1.0, numpy.random.default_rng(42)) for a in range(6)]
    second = [backoff_delay_s(a, 0.1, 1.0, numpy.random.default_rng(42)) for a in range(6)]
    assert first == second


def test_backoff_delay_spreads_over_the_whole_jitter_range() -> None:
    rng = numpy.random.default_rng(3)
    delays = numpy.array([backoff_delay_s(5, 1.0, 8.0, rng) for _ in range(2000)])
    assert delays.min() < 0.1 and delays.max() > 7.9
    assert abs(float(delays.mean()) - 4.0) < 0.25


def test_backoff_delay_rejects_a_negative_attempt() -> None:
    with pytest.raises(ValueError, match=r"attempt=-1 must be >= 0"):
        backoff_delay_s(-1, 1.0, 2.0, numpy.random.default_rng(0))


def test_breaker_stays_closed_below_the_failure_threshold() -> None:
    breaker = CircuitBreaker(failure_threshold=5, cooldown_s=60.0)
    for t in range(4):
        breaker.record_failure(float(t))
    assert breaker.state(4.0) is BreakerState.CLOSED
    assert breaker.allow(4.0)


def test_breaker_opens_after_five_consecutive_failures_and_fails_fast() -> None:
    breaker = CircuitBreaker(failure_threshold=5, cooldown_s=60.0)
    for t in range(5):
        breaker.record_failure(100.0 + t)
    assert breaker.state(104.0) is BreakerState.OPEN
    assert not breaker.allow(150.0)
    assert breaker.retry_after_s(150.0) == 14.0


def test_a_success_resets_the_consecutive_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10.0)
    breaker.record_failure(0.0)
    breaker.record_failure(1.0)
    breaker.record_success(2.0)
    breaker.record_failure(3.0)
    breaker.record_failure(4.0)
    assert breaker.state(4.0) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 2


def test_breaker_turns_half_open_after_the_cooldown_and_lets_exactly_one_probe_through() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=60.0)
    breaker.record_failure(0.0)
    assert breaker.state(59.999) is BreakerState.OPEN
    assert breaker.state(60.0) is BreakerState.HALF_OPEN
    assert breaker.retry_after_s(60.0) == 0.0
    assert [breaker.allow(60.0), breaker.allow(60.1), breaker.allow(61.0)] == [True, False, False]


def test_a_successful_probe_closes_the_breaker() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5.0)
    breaker.record_failure(0.0)
    assert breaker.allow(5.0)
    breaker.record_success(5.2)
    assert breaker.state(5.2) is BreakerState.CLOSED
    assert breaker.allow(5.3) and breaker.allow(5.3)


def test_a_failed_probe_reopens_the_breaker_for_a_whole_new_cooldown() -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=5.0)
    breaker.record_failure(0.0)
    breaker.record_failure(0.0)
    assert breaker.allow(5.0)
    breaker.record_failure(5.5)
    assert breaker.state(10.4) is BreakerState.OPEN
    assert breaker.retry_after_s(10.0) == 0.5
    assert breaker.state(10.5) is BreakerState.HALF_OPEN


def test_a_released_probe_lets_the_next_caller_probe() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=1.0)
    breaker.record_failure(0.0)
    assert breaker.allow(1.0)
    breaker.release_probe(1.0)
    assert breaker.allow(1.1)
