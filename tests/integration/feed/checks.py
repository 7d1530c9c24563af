"""Checks shared by the feed tests: REST klines of the paper exchange, window continuity."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import numpy.typing as npt

from procs.feed.logic.state import INTERVAL_MS
from shared.shm.rings import KlineColumn
from tests.paper_exchange_fixture import PaperExchangeProcess


def rest_klines(
    px: PaperExchangeProcess, symbol: str, start_ms: int, limit: int
) -> list[list[str]]:
    """Return the exchange's REST kline rows from start_ms (the wire arrays)."""
    url = (
        f"{px.rest_url}/fapi/v1/klines?symbol={symbol}&interval=1m&startTime={start_ms}"
        f"&limit={limit}"
    )
    with urllib.request.urlopen(url, timeout=5) as reply:
        rows: list[list[str]] = json.loads(reply.read())
        return rows


def open_times(window: npt.NDArray[np.float64]) -> list[int]:
    return [int(t) for t in window[:, KlineColumn.OPEN_TIME_MS]]


def assert_no_hole(window: npt.NDArray[np.float64]) -> None:
    """Every bar follows the previous one by exactly one minute (no hole, no duplicate)."""
    gaps = np.diff(window[:, KlineColumn.OPEN_TIME_MS])
    assert (gaps == INTERVAL_MS).all(), f"open-time steps {sorted(set(gaps.tolist()))}"


def assert_rows_whole(window: npt.NDArray[np.float64]) -> None:
    """Each row is internally consistent: a torn row (half old, half new) fails this."""
    opens = window[:, KlineColumn.OPEN_TIME_MS]
    assert (window[:, KlineColumn.CLOSE_TIME_MS] == opens + INTERVAL_MS - 1).all()
    assert (window[:, KlineColumn.HIGH] >= window[:, KlineColumn.LOW]).all()
    assert (window[:, KlineColumn.HIGH] >= window[:, KlineColumn.CLOSE]).all()
    assert (window[:, KlineColumn.LOW] <= window[:, KlineColumn.OPEN]).all()
