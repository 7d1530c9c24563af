"""Log lines: one line per event, fixed prefix, key=value pairs, secrets redacted."""

from __future__ import annotations

import pytest

from shared.log import Throttle, format_event, setup


def test_event_line_has_utc_prefix_level_process_event_and_pairs() -> None:
    line = format_event(
        "INFO", "trader", "order_submitted", {"symbol": "BTCUSDT", "qty": "0.004"}, 1736251200.123
    )
    assert line == ("2025-01-07T12:00:00.123Z INFO trader order_submitted symbol=BTCUSDT qty=0.004")


def test_values_with_spaces_or_newlines_are_quoted_and_stay_on_one_line() -> None:
    line = format_event("WARNING", "feed", "bad_message", {"reason": 'a "b"\nc'}, 0.0)
    assert "\n" not in line
    assert line.endswith('reason="a \\"b\\"\\nc"')


def test_secret_fields_show_only_their_first_four_characters() -> None:
    line = format_event(
        "INFO", "feed", "connected", {"api_key": "ABCDEFGHIJ", "api_secret": "xyz12345"}, 0.0
    )
    assert "ABCDEFGHIJ" not in line and "xyz12345" not in line
    assert "api_key=ABCD…" in line and "api_secret=xyz1…" in line


def test_throttle_lets_one_event_through_per_interval_and_counts_the_rest() -> None:
    throttle = Throttle(60.0)
    assert throttle.allow(0.0) == (True, 0)
    assert [throttle.allow(t)[0] for t in (1.0, 30.0, 59.9)] == [False, False, False]
    assert throttle.allow(60.0) == (True, 3)
    throttle.reset()
    assert throttle.allow(61.0) == (True, 0)


def test_exception_logs_the_event_line_then_the_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = setup("probe")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("step_failed", attempt=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("ERROR probe step_failed attempt=1")
    assert lines[1] == "traceback"
    assert lines[-1] == "ValueError: boom"
