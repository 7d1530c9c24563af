"""Log lines: one line per event, fixed prefix, key=value pairs, secrets redacted."""

from __future__ import annotations

from shared.log import format_event


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
