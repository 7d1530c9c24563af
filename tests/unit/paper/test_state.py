"""The paper exchange's state file: atomic save, load, and refusal of a corrupt file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from procs.paper_exchange.state import StateError, encode_state, load_state, save_state

GOOD = {
    "version": 1,
    "clock": {"sim_ms": 1, "real_ms": 1, "speed": 1.0, "is_paused": False},
    "epoch_ms": 1_700_000_040_000,
    "last_step_ms": 1_700_000_040_250,
    "engine": {"orders": []},
    "listen_keys": {"key": None, "expires_real_ms": 0},
}


def test_missing_file_loads_as_none(tmp_path: Path) -> None:
    assert load_state(tmp_path / "state.json") is None


def test_saved_state_loads_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    save_state(path, encode_state(GOOD))
    assert load_state(path) == GOOD
    assert not (tmp_path / "sub" / "state.json.tmp").exists()


def test_save_replaces_the_previous_state(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, encode_state(GOOD))
    save_state(path, encode_state({**GOOD, "epoch_ms": 5}))
    loaded = load_state(path)
    assert loaded is not None and loaded["epoch_ms"] == 5


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"version": 1, "clock": {', "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({**GOOD, "version": 2}).encode(), "version=2"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "engine"}).encode(), "engine=None"),
        (json.dumps({**GOOD, "epoch_ms": "x"}).encode(), "epoch_ms='x'"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_corrupt_state_raises_state_error_naming_the_fault(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateError) as e:
        load_state(path)
    assert fragment in str(e.value)
    assert str(path) in str(e.value)
