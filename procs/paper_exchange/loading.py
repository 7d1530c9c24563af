"""Read what the paper exchange starts from: symbol specs, leverage brackets, replay data, state.

The only file reads of the server side, all at start. Paths in the config are relative to the
repo root unless absolute. Raises `DataError` (replay.py) when the data directory is unusable and
`StateError` (state.py) when the state file exists but is corrupt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procs.paper_exchange.market.replay import DataError, Replay, load_replay
from procs.paper_exchange.state import load_state
from shared.config import REPO_ROOT, PaperExchangeConfig


@dataclass(frozen=True)
class Inputs:
    specs: dict[str, dict[str, Any]]  # raw exchangeInfo symbol objects, in config order
    brackets: dict[str, list[dict[str, Any]]]  # raw leverageBracket rows per symbol
    replay: dict[str, Replay]  # klines and funding per symbol
    state: dict[str, Any] | None  # the saved state, None for a fresh account
    state_path: Path


def resolve_path(text: str) -> Path:
    """Resolve a config path against the repo root (absolute paths stay as they are)."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"paper_exchange: {path} cannot be read as JSON ({e})") from None


def load_inputs(cfg: PaperExchangeConfig) -> Inputs:
    """Read specs, brackets, replay data and the state file named by `cfg`.

    Raises DataError (a data file is missing, malformed or lacks a configured symbol) and
    StateError (the state file is corrupt).
    """
    state_path = resolve_path(cfg.state_path)
    state = load_state(state_path)  # first: a corrupt state file fails before the slow data load
    data_dir = resolve_path(cfg.data_dir)
    info_path = data_dir / "exchange_info.json"
    info = _read_json(info_path)
    by_symbol = {s["symbol"]: s for s in info.get("symbols", [])} if isinstance(info, dict) else {}
    brackets_path = data_dir / "leverage_brackets.json"
    rows = _read_json(brackets_path)
    brackets = {r["symbol"]: r["brackets"] for r in rows} if isinstance(rows, list) else {}
    for symbol in cfg.symbols:
        if symbol not in by_symbol:
            raise DataError(f"paper_exchange: {info_path} has no symbol {symbol}")
        if symbol not in brackets:
            raise DataError(f"paper_exchange: {brackets_path} has no brackets for {symbol}")
    specs = {s: by_symbol[s] for s in cfg.symbols}
    return Inputs(
        specs=specs,
        brackets={s: brackets[s] for s in cfg.symbols},
        replay=load_replay(data_dir, cfg.symbols),
        state=state,
        state_path=state_path,
    )
