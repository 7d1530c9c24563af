"""Model features: hand-checked windows for every feature, NaN rows, and the same-code guarantee.

Hand-built windows are WINDOW_BARS bars: flat filler bars first, then the pattern under test at
the end (the last pattern bar is bar L = 119). `candles` turns a list of mid prices into bars
with high/low = mid +- 0.5 and a 0.5 body in the direction of the move (open mid -+ 0.25,
close mid +- 0.25), so each expected value below can be worked out from the mids.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from shared.core import features
from shared.core.features import (
    FEATURE_NAMES,
    FEATURE_SCHEMA,
    FEATURE_VERSION,
    WINDOW_BARS,
    compute_features,
    feature_history,
    feature_schema,
)
from shared.shm.layout import KlineColumn

F64 = npt.NDArray[np.float64]
Bar = tuple[float, float, float, float]  # open, high, low, close

REPO = Path(__file__).resolve().parents[3]
BTC_CSV = REPO / "procs/paper_exchange/data/klines/BTCUSDT-1m-futures-2025-05-26_2025-06-23.csv.gz"
FILLER: Bar = (100.0, 100.5, 99.5, 100.0)
FLAT: Bar = (100.0, 100.0, 100.0, 100.0)
# Mids of a clear uptrend at bars 105..119: swing highs 104 (bar 108) and 106 (bar 114), swing
# lows 102 (bar 110) and 104 (bar 116), last close 107.25 above the last swing high.
UPTREND = [101, 102, 103, 104, 103, 102, 103, 104, 105, 106, 105, 104, 105, 106, 107]


def candles(mids: Sequence[float], start_mid: float = 100.0) -> list[Bar]:
    """Return bars around `mids`: high/low mid +- 0.5, a 0.5 body in the move's direction."""
    rows: list[Bar] = []
    previous = start_mid
    for mid in mids:
        d = (mid > previous) - (mid < previous)
        rows.append((mid - 0.25 * d, mid + 0.5, mid - 0.5, mid + 0.25 * d))
        previous = mid
    return rows


def window(rows: Sequence[Bar], filler: Bar = FILLER, volumes: Sequence[float] = ()) -> F64:
    """Return one (1, WINDOW_BARS, 6) window: filler bars, then `rows` as the last bars."""
    ohlc = np.array([filler] * (WINDOW_BARS - len(rows)) + list(rows), dtype=np.float64)
    out = np.zeros((1, WINDOW_BARS, 6), dtype=np.float64)
    out[0, :, 0] = np.arange(WINDOW_BARS) * 60_000.0
    out[0, :, 1:5] = ohlc
    out[0, :, 5] = np.asarray(volumes, dtype=np.float64) if len(volumes) else 1.0
    return out


def mirror(windows: F64) -> F64:
    """Return the windows reflected in price (p -> 200 - p): highs become lows and back."""
    out = windows.copy()
    out[..., 1] = 200.0 - windows[..., 1]
    out[..., 2] = 200.0 - windows[..., 3]
    out[..., 3] = 200.0 - windows[..., 2]
    out[..., 4] = 200.0 - windows[..., 4]
    return out


def named(windows: F64) -> dict[str, float]:
    """Return the features of a single window by name."""
    row = compute_features(windows)
    assert row.shape == (1, len(FEATURE_NAMES))
    return {name: float(value) for name, value in zip(FEATURE_NAMES, row[0], strict=True)}


def near(expected: float) -> object:
    return pytest.approx(expected, rel=1e-12, abs=1e-12)


def load_btc(rows: int) -> F64:
    """Return the first `rows` one-minute BTCUSDT bars (open_time .. close_time, 7 columns)."""
    with gzip.open(BTC_CSV, "rt") as f:
        lines = [next(f) for _ in range(rows + 1)][1:]
    return np.array([[float(x) for x in line.split(",")] for line in lines], dtype=np.float64)


# --- schema and layout ---------------------------------------------------------------------


def test_feature_names_are_the_12_ict_features_then_trend_and_volatility() -> None:
    assert FEATURE_NAMES[:3] == ("market_structure", "break_of_structure", "change_of_character")
    assert len(FEATURE_NAMES) == 18
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert {"adx_14", "atr_pct_14", "volume_zscore_20"} <= set(FEATURE_NAMES)


def test_feature_schema_is_16_hex_of_version_window_and_names() -> None:
    assert FEATURE_SCHEMA == feature_schema(FEATURE_VERSION, WINDOW_BARS, FEATURE_NAMES)
    assert len(FEATURE_SCHEMA) == 16
    int(FEATURE_SCHEMA, 16)


def test_feature_schema_changes_when_a_name_the_version_or_the_window_changes() -> None:
    renamed = ("market_structure_v2", *FEATURE_NAMES[1:])
    reordered = (FEATURE_NAMES[1], FEATURE_NAMES[0], *FEATURE_NAMES[2:])
    others = {
        feature_schema(FEATURE_VERSION, WINDOW_BARS, renamed),
        feature_schema(FEATURE_VERSION, WINDOW_BARS, reordered),
        feature_schema(FEATURE_VERSION, WINDOW_BARS, FEATURE_NAMES[:-1]),
        feature_schema(FEATURE_VERSION + 1, WINDOW_BARS, FEATURE_NAMES),
        feature_schema(FEATURE_VERSION, WINDOW_BARS + 1, FEATURE_NAMES),
    }
    assert FEATURE_SCHEMA not in others
    assert len(others) == 5


def test_price_columns_follow_the_shm_kline_layout() -> None:
    assert features.OPEN == KlineColumn.OPEN
    assert features.HIGH == KlineColumn.HIGH
    assert features.LOW == KlineColumn.LOW
    assert features.CLOSE == KlineColumn.CLOSE
    assert features.VOLUME == KlineColumn.VOLUME


# --- market structure, break of structure, change of character, swing distances -------------


def test_uptrend_with_higher_highs_and_higher_lows_is_bullish_structure_broken_upward() -> None:
    f = named(window(candles(UPTREND)))
    # Swing highs 104.5 -> 106.5, swing lows 101.5 -> 103.5; last close 107.25 > 106.5.
    assert f["market_structure"] == 1.0
    assert f["break_of_structure"] == 1.0
    assert f["change_of_character"] == 0.0
    assert f["swing_high_distance_pct"] == near((107.25 - 106.5) / 107.25 * 100)
    assert f["swing_low_distance_pct"] == near((107.25 - 103.5) / 107.25 * 100)
    # Window range: lowest low 99.5 (filler), highest high 107.5 (last bar).
    assert f["premium_discount"] == near((107.25 - 99.5) / (107.5 - 99.5))


def test_mirrored_uptrend_is_bearish_structure_broken_downward() -> None:
    f = named(mirror(window(candles(UPTREND))))
    assert f["market_structure"] == -1.0
    assert f["break_of_structure"] == -1.0
    assert f["change_of_character"] == 0.0
    # Mirrored: last close 92.75, last swing low 93.5, last swing high 96.5.
    assert f["swing_low_distance_pct"] == near((92.75 - 93.5) / 92.75 * 100)
    assert f["swing_high_distance_pct"] == near((92.75 - 96.5) / 92.75 * 100)


def test_close_below_the_last_swing_low_of_an_uptrend_is_a_bearish_change_of_character() -> None:
    rows = [*candles(UPTREND[:-1]), (106.0, 106.2, 103.0, 103.2)]  # closes below 103.5
    f = named(window(rows))
    assert f["market_structure"] == 1.0
    assert f["break_of_structure"] == 0.0
    assert f["change_of_character"] == -1.0
    # Break below the swing low 103.5 at the last bar; last bullish candle before it is bar
    # 118 (mid 106): zone 105.5..106.5, close below it.
    assert f["bearish_order_block_distance_pct"] == near((103.2 - 105.5) / 103.2 * 100)
    # Last upward break: bar 113 over 104.5; last bearish candle before it, bar 110 (mid 102).
    assert f["bullish_order_block_distance_pct"] == near((103.2 - 102.5) / 103.2 * 100)


def test_mirrored_change_of_character_is_bullish() -> None:
    rows = [*candles(UPTREND[:-1]), (106.0, 106.2, 103.0, 103.2)]
    f = named(mirror(window(rows)))
    assert f["market_structure"] == -1.0
    assert f["change_of_character"] == 1.0
    assert f["break_of_structure"] == 0.0


def test_fewer_than_two_swings_on_a_side_is_neutral_structure() -> None:
    # One swing high (bar 114) and one swing low (bar 116) only.
    f = named(window(candles([101, 102, 103, 104, 105, 106, 105, 104, 105, 106, 107])))
    assert f["market_structure"] == 0.0
    assert f["break_of_structure"] == 0.0
    assert f["change_of_character"] == 0.0
    assert f["swing_high_distance_pct"] == near((107.25 - 106.5) / 107.25 * 100)


def test_equal_highs_next_to_each_other_are_not_a_swing() -> None:
    # Double top: bars 116 and 117 both reach 103.5; neither is strictly above its neighbours.
    f = named(window(candles([101, 102, 103, 103, 102, 101])))
    assert f["swing_high_distance_pct"] == 0.0
    assert f["market_structure"] == 0.0


# --- order blocks ---------------------------------------------------------------------------


def test_bullish_order_block_is_the_last_bearish_candle_before_the_break() -> None:
    f = named(window(candles(UPTREND)))
    # Last upward break: bar 119 closes 107.25 over the swing high 106.5 (prev close 106.25).
    # Last bearish candle before it: bar 116 (mid 104), zone 103.5..104.5.
    assert f["bullish_order_block_distance_pct"] == near((107.25 - 104.5) / 107.25 * 100)
    # No close ever crossed below a swing low: no bearish order block.
    assert f["bearish_order_block_distance_pct"] == 0.0


def test_close_back_inside_the_order_block_zone_is_zero_distance() -> None:
    # Swing high 103.5 (bar 109) broken at bar 114 (close 104.25); last bearish candle before
    # it is bar 111 (mid 101, zone 100.5..101.5); price falls back to close 100.75.
    mids = [101, 102, 103, 102, 101, 102, 103, 104, 105, 104, 103, 102, 101]
    f = named(window(candles(mids)))
    assert f["bullish_order_block_distance_pct"] == 0.0
    below = named(window([*candles(mids[:-1]), (101.75, 102.0, 100.0, 100.2)]))
    assert below["bullish_order_block_distance_pct"] == near((100.2 - 100.5) / 100.2 * 100)


# Swing high 103.5 (bar 109) first closed above at bar 114; the bearish bar 115 and the bars
# after it still close above 103.5 but are not new breaks. Bar 113 is a doji (not bearish), so
# the order block is bar 111 (mid 101, zone 100.5..101.5).
BREAK_ROWS = [
    *candles([101, 102, 103, 102, 101, 102]),
    (103.0, 103.5, 102.5, 103.0),
    (103.75, 104.5, 103.5, 104.25),
    (104.25, 104.6, 103.7, 103.9),
    (103.9, 104.4, 103.8, 104.2),
    (104.2, 104.7, 104.1, 104.5),
    (104.5, 104.9, 104.3, 104.8),
    (104.8, 105.2, 104.6, 105.0),
]


def test_order_block_precedes_the_first_close_beyond_the_level_not_a_later_one() -> None:
    f = named(window(BREAK_ROWS))
    assert f["bullish_order_block_distance_pct"] == near((105.0 - 101.5) / 105.0 * 100)


def test_bearish_order_block_precedes_the_first_close_below_the_level() -> None:
    f = named(mirror(window(BREAK_ROWS)))
    # Mirrored zone of bar 111: 98.5..99.5; mirrored close 95.0.
    assert f["bearish_order_block_distance_pct"] == near((95.0 - 98.5) / 95.0 * 100)


def test_mirrored_bullish_order_block_is_a_bearish_one() -> None:
    f = named(mirror(window(candles(UPTREND))))
    # Mirrored zone of bar 116: 95.5..96.5; mirrored close 92.75 is below it.
    assert f["bearish_order_block_distance_pct"] == near((92.75 - 95.5) / 92.75 * 100)
    assert f["bullish_order_block_distance_pct"] == 0.0


# --- liquidity sweep ------------------------------------------------------------------------

# Swing high 102.5 (bar 106), swing low 99.5 (bar 108), flat at 102 after; bar 117 wicks to
# 99.0 below the swing low and the window closes back above it at 101.8.
SWEEP_ROWS = [
    *candles([101, 102, 101, 100, 101, 102, 102, 102, 102, 102, 102]),
    (102.0, 102.2, 99.0, 101.0),
    (101.0, 101.6, 100.6, 101.5),
    (101.5, 102.0, 101.0, 101.8),
]


def test_wick_below_the_swing_low_closing_back_above_is_a_bullish_sweep() -> None:
    f = named(window(SWEEP_ROWS))
    assert f["liquidity_sweep"] == 1.0
    # The sweep bar is itself the newest swing low (99.0).
    assert f["swing_low_distance_pct"] == near((101.8 - 99.0) / 101.8 * 100)


def test_wick_above_the_swing_high_closing_back_below_is_a_bearish_sweep() -> None:
    assert named(mirror(window(SWEEP_ROWS)))["liquidity_sweep"] == -1.0


def test_close_staying_below_the_swept_low_is_no_sweep() -> None:
    rows = [*SWEEP_ROWS[:-1], (101.5, 101.6, 99.0, 99.2)]
    assert named(window(rows))["liquidity_sweep"] == 0.0


def test_trend_without_a_wick_through_a_swing_is_no_sweep() -> None:
    assert named(window(candles(UPTREND)))["liquidity_sweep"] == 0.0


# --- fair value gaps ------------------------------------------------------------------------

# Gap A at bar 112: low 101.0 above bar 110's high 100.5, never revisited. Gap B at bar 117:
# low 104.0 above bar 115's high 103.4, filled by bar 119's low 103.3.
FVG_ROWS = [
    (100.0, 103.0, 100.0, 102.8),
    (102.8, 103.5, 101.0, 103.2),
    (103.2, 103.6, 102.8, 103.0),
    (103.0, 103.6, 102.8, 103.0),
    (103.0, 103.4, 102.9, 103.1),
    (103.1, 105.0, 103.1, 104.8),
    (104.8, 105.2, 104.0, 105.0),
    (105.0, 105.1, 104.2, 104.5),
    (104.5, 104.6, 103.3, 103.6),
]


def test_bullish_fvg_is_the_most_recent_gap_not_filled_since() -> None:
    f = named(window(FVG_ROWS))
    assert f["bullish_fvg_pct"] == near((101.0 - 100.5) / 103.6 * 100)
    assert f["bearish_fvg_pct"] == 0.0


def test_bearish_fvg_mirrors_the_bullish_one() -> None:
    f = named(mirror(window(FVG_ROWS)))
    assert f["bearish_fvg_pct"] == near((99.5 - 99.0) / (200.0 - 103.6) * 100)
    assert f["bullish_fvg_pct"] == 0.0


def test_fvg_filled_by_a_later_low_touching_its_bottom_is_gone() -> None:
    rows = [*FVG_ROWS[:-1], (104.5, 104.6, 100.5, 101.0)]  # reaches gap A's bottom too
    assert named(window(rows))["bullish_fvg_pct"] == 0.0


# --- trend and volatility -------------------------------------------------------------------

# Ramp: mid 100 + i at every bar i, body up: TR = 1.25 (high - previous close), +DM = 1, -DM = 0.
RAMP_ROWS = candles([100.0 + i for i in range(WINDOW_BARS)], start_mid=99.0)


def test_steady_ramp_has_adx_100_and_atr_of_the_constant_true_range() -> None:
    f = named(window(RAMP_ROWS))
    assert f["adx_14"] == near(100.0)
    assert f["atr_pct_14"] == near(1.25 / 219.25 * 100)
    assert f["displacement"] == near(0.5 / 1.25)


def test_steady_ramp_returns_are_close_to_close_percent() -> None:
    f = named(window(RAMP_ROWS))
    assert f["return_5_pct"] == near((219.25 / 214.25 - 1) * 100)
    assert f["return_15_pct"] == near((219.25 / 204.25 - 1) * 100)
    assert f["premium_discount"] == near((219.25 - 99.5) / (219.5 - 99.5))


def test_steady_ramp_has_no_swings_and_a_fresh_one_point_gap() -> None:
    f = named(window(RAMP_ROWS))
    # Every bar's low is 1 above the high two bars back; the newest gap is at the last bar.
    assert f["bullish_fvg_pct"] == near(1.0 / 219.25 * 100)
    for name in (
        "market_structure",
        "break_of_structure",
        "change_of_character",
        "bullish_order_block_distance_pct",
        "bearish_order_block_distance_pct",
        "liquidity_sweep",
        "bearish_fvg_pct",
        "swing_high_distance_pct",
        "swing_low_distance_pct",
    ):
        assert f[name] == 0.0, name


def test_constant_prices_give_zero_features_and_a_mid_range_position() -> None:
    f = named(window([], filler=FLAT))
    assert f["premium_discount"] == 0.5
    assert all(value == 0.0 for name, value in f.items() if name != "premium_discount")


def test_one_jump_after_flat_prices_sets_wilder_atr_adx_ema_and_returns() -> None:
    f = named(window([(100.0, 110.0, 100.0, 110.0)], filler=FLAT))
    atr = (0.0 * 13 + 10.0) / 14  # seed 0 from 14 zero ranges, then one range of 10
    assert f["atr_pct_14"] == near(atr / 110.0 * 100)
    assert f["displacement"] == near(10.0 / atr)
    assert f["adx_14"] == near(100.0 / 14)  # DX 0 throughout, then 100 at the last bar
    fast, slow = 100.0 + 2.0 / 21 * 10.0, 100.0 + 2.0 / 61 * 10.0
    assert f["ema_trend"] == near((fast - slow) / 110.0)
    assert f["return_5_pct"] == near((110.0 / 100.0 - 1) * 100)
    assert f["return_15_pct"] == near((110.0 / 100.0 - 1) * 100)
    assert f["premium_discount"] == 1.0


def test_volume_spike_is_scored_against_the_20_bars_before_it() -> None:
    # Before the last bar: ten 1s and ten 3s (mean 2, population std 1); older bars ignored.
    volumes = [1000.0] * (WINDOW_BARS - 21) + [1.0, 3.0] * 10 + [5.0]
    f = named(window([], filler=FLAT, volumes=volumes))
    assert f["volume_zscore_20"] == 3.0


def test_volume_after_20_equal_volumes_scores_zero() -> None:
    # 0.1 is inexact in binary: the rounded mean is off by an ulp, the std is not exactly 0.
    volumes = [0.1] * (WINDOW_BARS - 1) + [50.0]
    assert named(window([], filler=FLAT, volumes=volumes))["volume_zscore_20"] == 0.0


def textbook_indicators(bars: F64) -> dict[str, float]:
    """Wilder ATR/ADX and the EMA trend of one (bars, 6+) window by the plain recursions."""
    hi, lo, cl, op = (bars[-WINDOW_BARS:, col].tolist() for col in (2, 3, 4, 1))
    n = 14
    moves = []
    for i in range(1, WINDOW_BARS):
        tr = max(hi[i] - lo[i], abs(hi[i] - cl[i - 1]), abs(lo[i] - cl[i - 1]))
        up, down = hi[i] - hi[i - 1], lo[i - 1] - lo[i]
        moves.append(
            (tr, up if up > down and up > 0 else 0.0, down if down > up and down > 0 else 0.0)
        )
    s = [sum(m[k] for m in moves[:n]) / n for k in range(3)]

    def dx() -> float:
        plus, minus = 100 * s[1] / s[0], 100 * s[2] / s[0]
        return 100 * abs(plus - minus) / (plus + minus) if plus + minus > 0 else 0.0

    dxs = [dx()]
    for m in moves[n:]:
        s = [(s[k] * (n - 1) + m[k]) / n for k in range(3)]
        dxs.append(dx())
    adx = sum(dxs[:n]) / n
    for value in dxs[n:]:
        adx = (adx * (n - 1) + value) / n
    emas = []
    for bars_n in (20, 60):
        alpha, ema = 2 / (bars_n + 1), cl[0]
        for close in cl[1:]:
            ema = alpha * close + (1 - alpha) * ema
        emas.append(ema)
    return {
        "adx_14": adx,
        "atr_pct_14": s[0] / cl[-1] * 100,
        "displacement": (cl[-1] - op[-1]) / s[0],
        "ema_trend": (emas[0] - emas[1]) / cl[-1],
    }


def test_wilder_atr_adx_and_ema_trend_match_the_textbook_recursions_on_real_bars() -> None:
    bars = load_btc(1200)
    history = feature_history(bars)
    for t in range(WINDOW_BARS - 1, 1200, 97):
        expected = textbook_indicators(bars[t - WINDOW_BARS + 1 : t + 1])
        for name, value in expected.items():
            got = history[t, FEATURE_NAMES.index(name)]
            assert got == pytest.approx(value, rel=1e-9, abs=1e-12), (t, name)


# --- invalid input --------------------------------------------------------------------------


def test_window_with_a_bad_price_or_volume_is_a_nan_row_and_others_are_unaffected() -> None:
    good = window(candles(UPTREND))
    batch = np.repeat(good, 5, axis=0)
    batch[1, 50, 4] = np.nan  # close
    batch[2, 3, 3] = 0.0  # low
    batch[3, 119, 2] = np.inf  # high
    batch[4, 10, 5] = -1.0  # volume
    rows = compute_features(batch)
    assert np.all(np.isnan(rows[1:]))
    assert np.array_equal(rows[0], compute_features(good)[0])


def test_only_the_last_window_bars_are_used() -> None:
    good = window(candles(UPTREND))
    longer = np.concatenate([np.full((1, 30, 6), np.nan), good], axis=1)
    assert np.array_equal(compute_features(longer), compute_features(good))


def test_short_or_narrow_windows_raise_value_error() -> None:
    with pytest.raises(ValueError, match="windows shape"):
        compute_features(np.ones((2, WINDOW_BARS - 1, 6)))
    with pytest.raises(ValueError, match="windows shape"):
        compute_features(np.ones((2, WINDOW_BARS, 5)))
    with pytest.raises(ValueError, match="bars shape"):
        feature_history(np.ones((200, 5)))


def test_empty_batch_gives_empty_rows() -> None:
    assert compute_features(np.ones((0, WINDOW_BARS, 6))).shape == (0, len(FEATURE_NAMES))


# --- history: the same code, no look-ahead --------------------------------------------------


def test_history_row_equals_compute_features_of_the_window_ending_there_on_real_bars() -> None:
    bars = load_btc(2000)
    history = feature_history(bars, chunk=333)  # several chunk boundaries
    assert history.shape == (2000, len(FEATURE_NAMES))
    assert np.all(np.isnan(history[: WINDOW_BARS - 1]))
    assert np.all(np.isfinite(history[WINDOW_BARS - 1 :]))
    for t in range(WINDOW_BARS - 1, 2000):
        one = compute_features(bars[None, t - WINDOW_BARS + 1 : t + 1])[0]
        assert np.array_equal(history[t], one), t


def test_history_does_not_depend_on_the_chunk_size() -> None:
    bars = load_btc(400)
    assert np.array_equal(feature_history(bars, chunk=1), feature_history(bars), equal_nan=True)


def test_changing_bars_after_t_leaves_rows_up_to_t_unchanged() -> None:
    bars = load_btc(600)
    before = feature_history(bars)
    t = 400
    changed = bars.copy()
    changed[t + 1 :, 1:5] *= np.random.default_rng(7).uniform(0.9, 1.1, (599 - t, 1))
    changed[t + 1 :, 5] *= 3.0
    after = feature_history(changed)
    assert np.array_equal(after[: t + 1], before[: t + 1], equal_nan=True)
    assert not np.array_equal(after[t + 1 :], before[t + 1 :])


def test_history_shorter_than_a_window_is_all_nan() -> None:
    history = feature_history(load_btc(WINDOW_BARS - 1))
    assert history.shape == (WINDOW_BARS - 1, len(FEATURE_NAMES))
    assert np.all(np.isnan(history))
