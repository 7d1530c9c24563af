"""SimClock: sim time from injected real time; pause, resume, jump, speed, state round trip."""

from __future__ import annotations

import json
import math

import pytest

from procs.paper_exchange.clock import SimClock

REAL_MS = 1_790_000_000_000
SIM_MS = 1_750_000_000_000


def test_default_sim_time_is_the_real_time() -> None:
    clock = SimClock(1, REAL_MS)
    assert clock.now(REAL_MS) == REAL_MS
    assert clock.now(REAL_MS + 1234) == REAL_MS + 1234


def test_speed_60_runs_sixty_times_faster_than_real_time() -> None:
    clock = SimClock(60, REAL_MS, SIM_MS)
    assert clock.now(REAL_MS) == SIM_MS
    assert clock.now(REAL_MS + 1000) == SIM_MS + 60_000
    assert clock.now(REAL_MS + 1) == SIM_MS + 60_000  # never goes back, even if asked earlier


def test_fractional_speed_rounds_down_to_whole_milliseconds() -> None:
    clock = SimClock(0.5, REAL_MS, SIM_MS)
    assert clock.now(REAL_MS + 3) == SIM_MS + 1
    assert clock.now(REAL_MS + 4) == SIM_MS + 2


def test_pause_freezes_time_and_resume_continues_without_a_jump() -> None:
    clock = SimClock(10, REAL_MS, SIM_MS)
    clock.pause(REAL_MS + 100)
    assert clock.is_paused
    assert clock.now(REAL_MS + 5000) == SIM_MS + 1000
    clock.resume(REAL_MS + 5000)
    assert not clock.is_paused
    assert clock.now(REAL_MS + 5000) == SIM_MS + 1000
    assert clock.now(REAL_MS + 5100) == SIM_MS + 2000


def test_pause_when_paused_and_resume_when_running_change_nothing() -> None:
    clock = SimClock(2, REAL_MS, SIM_MS)
    clock.resume(REAL_MS + 10)
    assert clock.now(REAL_MS + 10) == SIM_MS + 20
    clock.pause(REAL_MS + 10)
    clock.pause(REAL_MS + 500)
    clock.resume(REAL_MS + 1000)
    assert clock.now(REAL_MS + 1000) == SIM_MS + 20


def test_jump_moves_time_forward_and_keeps_running() -> None:
    clock = SimClock(1, REAL_MS, SIM_MS)
    clock.jump(3_600_000, REAL_MS + 10)
    assert clock.now(REAL_MS + 10) == SIM_MS + 10 + 3_600_000
    assert clock.now(REAL_MS + 20) == SIM_MS + 20 + 3_600_000


def test_jump_while_paused_moves_the_frozen_time() -> None:
    clock = SimClock(1, REAL_MS, SIM_MS)
    clock.pause(REAL_MS)
    clock.jump(60_000, REAL_MS + 10)
    assert clock.now(REAL_MS + 99_999) == SIM_MS + 60_000


def test_jump_backwards_is_rejected() -> None:
    clock = SimClock(1, REAL_MS, SIM_MS)
    with pytest.raises(ValueError, match="delta_ms=-1 is below 0"):
        clock.jump(-1, REAL_MS)


def test_set_speed_keeps_the_sim_time_reached_so_far() -> None:
    clock = SimClock(1, REAL_MS, SIM_MS)
    clock.set_speed(60, REAL_MS + 1000)
    assert clock.speed == 60
    assert clock.now(REAL_MS + 1000) == SIM_MS + 1000
    assert clock.now(REAL_MS + 2000) == SIM_MS + 1000 + 60_000


@pytest.mark.parametrize("speed", [0, -1, math.nan, math.inf])
def test_speed_must_be_a_finite_number_above_zero(speed: float) -> None:
    with pytest.raises(ValueError, match="must be a finite number above 0"):
        SimClock(speed, REAL_MS)
    clock = SimClock(1, REAL_MS)
    with pytest.raises(ValueError, match="must be a finite number above 0"):
        clock.set_speed(speed, REAL_MS)


def test_sim_time_never_decreases_when_the_real_clock_steps_back() -> None:
    clock = SimClock(1, REAL_MS, SIM_MS)
    assert clock.now(REAL_MS + 500) == SIM_MS + 500
    assert clock.now(REAL_MS + 100) == SIM_MS + 500
    assert clock.now(REAL_MS - 10_000) == SIM_MS + 500
    assert clock.now(REAL_MS + 501) == SIM_MS + 501


def test_state_round_trip_keeps_time_running_while_the_process_was_down() -> None:
    clock = SimClock(60, REAL_MS, SIM_MS)
    state = json.loads(json.dumps(clock.to_state(REAL_MS + 1000)))
    assert state == {
        "sim_ms": SIM_MS + 60_000,
        "real_ms": REAL_MS + 1000,
        "speed": 60.0,
        "is_paused": False,
    }
    restored = SimClock.from_state(state, REAL_MS + 11_000)  # down for 10 s of real time
    assert restored.speed == 60
    assert restored.now(REAL_MS + 11_000) == SIM_MS + 60_000 + 600_000
    assert restored.now(REAL_MS + 12_000) == SIM_MS + 60_000 + 660_000


def test_paused_state_round_trip_stays_frozen_until_resumed() -> None:
    clock = SimClock(5, REAL_MS, SIM_MS)
    clock.pause(REAL_MS + 200)
    state = clock.to_state(REAL_MS + 300)
    restored = SimClock.from_state(state, REAL_MS + 900_000)
    assert restored.is_paused
    assert restored.now(REAL_MS + 900_000) == SIM_MS + 1000
    restored.resume(REAL_MS + 900_000)
    assert restored.now(REAL_MS + 900_100) == SIM_MS + 1500


def test_state_restored_with_an_earlier_real_time_does_not_go_back() -> None:
    state = SimClock(1, REAL_MS, SIM_MS).to_state(REAL_MS + 5000)
    restored = SimClock.from_state(state, REAL_MS)
    assert restored.now(REAL_MS) == SIM_MS + 5000
    assert restored.now(REAL_MS + 1) == SIM_MS + 5001


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sim_ms", "1", "sim_ms='1' is not a number"),
        ("real_ms", None, "real_ms=None is not a number"),
        ("speed", True, "speed=True is not a number"),
        ("is_paused", "false", "is_paused='false' is not a boolean"),
    ],
)
def test_malformed_state_is_rejected_naming_the_field(
    field: str, value: object, message: str
) -> None:
    state = SimClock(1, REAL_MS, SIM_MS).to_state(REAL_MS)
    state[field] = value
    with pytest.raises(ValueError, match=message):
        SimClock.from_state(state, REAL_MS)
