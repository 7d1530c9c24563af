"""Shared inputs of the market tests: the shipped replay (loaded once), the real BTCUSDT and
ETHUSDT symbol objects, and the sim-time mapping used throughout (not a test module)."""

from __future__ import annotations

import functools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from procs.paper_exchange.market.prices import WARMUP, Market
from procs.paper_exchange.market.replay import Replay, load_replay

REPO = Path(__file__).resolve().parents[3]
DATA_DIR = REPO / "procs" / "paper_exchange" / "data"
FIXTURES = REPO / "tests" / "fixtures" / "binance"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
MINUTE = 60_000
DAY_MS = 86_400_000
# 2026-11-23 01:00 UTC plays data row WARMUP (2025-05-27 01:00), so sim days map to data days.
EPOCH_MS = 1_795_395_600_000


@functools.cache
def _load() -> dict[str, Replay]:
    return load_replay(DATA_DIR, SYMBOLS)


def shipped_replay() -> dict[str, Replay]:
    """The shipped BTCUSDT and ETHUSDT data, read once per test session."""
    return dict(_load())


def real_specs() -> dict[str, dict[str, Any]]:
    """Fresh copies of the real symbol objects (nautilus-real exchangeInfo fixture)."""
    path = FIXTURES / "nautilus-real" / "http_futures_market_exchange_info.json"
    info = json.loads(path.read_text())
    return {s["symbol"]: s for s in info["symbols"] if s["symbol"] in SYMBOLS}


def minute_of(k: int) -> int:
    """Sim minute that plays sequence index k."""
    return EPOCH_MS + (k - WARMUP) * MINUTE


def price(replay: Replay, row: int, column: int) -> Decimal:
    """Data price of a row: column 0 open, 1 high, 2 low, 3 close."""
    return Decimal(int(replay.ohlc_units[row, column])).scaleb(-replay.price_decimals)


def volume(replay: Replay, rows: range) -> Decimal:
    """Data volume summed over rows."""
    units = int(replay.volume_units[rows.start : rows.stop].sum())
    return Decimal(units).scaleb(-replay.volume_decimals)


def path(market: Market, symbol: str, minute_ms: int) -> list[Decimal]:
    """The 240 step prices of one sim minute."""
    return [market.last_price(symbol, minute_ms + 250 * s) for s in range(240)]
