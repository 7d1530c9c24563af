"""Model features of one kline window: ICT/SMC structure plus trend and volatility.

Training (`feature_history`, sliding windows over a symbol's history) and live trading
(`compute_features` over the shm windows of all symbols) run THE SAME `compute_features`, so a
row depends only on the last `WINDOW_BARS` bars of its window and on nothing else.

Input: float64 windows (n, bars, C >= 6), oldest bar first, columns in the order of
`shared.shm.layout.KlineColumn` (1 open, 2 high, 3 low, 4 close, 5 volume). Only the last
`WINDOW_BARS` bars are used; below, bars are indexed 0..L with L = WINDOW_BARS - 1 the last bar,
and o, h, l, c, v are its columns. A window with any open/high/low/close not finite or <= 0, or
any volume not finite or < 0, gives a row of NaN; every other row is finite.

Swings (fractals, k = `SWING_BARS`): bar i is a swing high when h[i] is strictly above the highs
of the k bars before and the k bars after it (a swing low mirrors with lows), so ties make no
swing and a swing at i is confirmed at bar i + k. "The swing high as of bar j" is the latest
swing high with i <= j - k. H1 and H0 are the last and the previous swing high of the window,
L1 and L0 the last and the previous swing low.

Features, in `FEATURE_NAMES` order (pct = percent of the last close c = c[L]):

1. market_structure: +1 when H1 > H0 and L1 > L0 (higher high and higher low), -1 when
   H1 < H0 and L1 < L0, else 0 (also 0 with fewer than two swing highs or two swing lows).
2. break_of_structure: +1 when market_structure = +1 and c > H1; -1 when it is -1 and c < L1;
   else 0.
3. change_of_character: a break against the structure: -1 when market_structure = +1 and
   c < L1; +1 when it is -1 and c > H1; else 0.
4. bullish_order_block_distance_pct: the break bar is the latest bar j whose close crosses
   above the swing high as of j (c[j] > level >= c[j-1]); the order block is the last bearish
   candle (c < o) before j, its zone [l, h]. Distance = (c - zone high) / c * 100 above the
   zone, (c - zone low) / c * 100 below it, 0 inside; 0 (sentinel) without an order block.
5. bearish_order_block_distance_pct: mirror: the latest close crossing below the swing low as
   of its bar (c[j] < level <= c[j-1]); the last bullish candle (c > o) before it; same signed
   distance (negative when c is below the zone).
6. liquidity_sweep: with the swing low S as of bar L - `SWEEP_BARS` (so a swing the sweep
   itself forms does not hide it), +1 when some low of the last `SWEEP_BARS` bars is < S and
   c > S; -1 mirror with the swing high (a high above it, c below it); both or neither -> 0.
7. bullish_fvg_pct: a bullish fair value gap at bar t (2 <= t <= L) is l[t] > h[t-2]; it is
   filled once a later low (bars t+1..L) is <= h[t-2]. Size of the most recent unfilled one,
   (l[t] - h[t-2]) / c * 100; 0 without one.
8. bearish_fvg_pct: mirror: h[t] < l[t-2], filled once a later high >= l[t-2];
   size (l[t-2] - h[t]) / c * 100.
9. premium_discount: (c - min l) / (max h - min l) over the window, 0..1; 0.5 for a zero range.
10. displacement: (c[L] - o[L]) / ATR (signed body in ATRs); 0 when ATR = 0.
11. swing_high_distance_pct: (c - H1) / c * 100; 0 without a swing high.
12. swing_low_distance_pct: (c - L1) / c * 100; 0 without a swing low.

Trend and volatility (Wilder, N = `ATR_BARS` = `ADX_BARS` = 14):

13. adx_14: for i = 1..L, TR[i] = max(h[i] - l[i], |h[i] - c[i-1]|, |l[i] - c[i-1]|),
    up = h[i] - h[i-1], down = l[i-1] - l[i], +DM = up if up > down and up > 0 else 0,
    -DM = down if down > up and down > 0 else 0. Each of TR, +DM, -DM is seeded with the mean
    of i = 1..N and then smoothed s = (s * (N - 1) + x) / N up to i. From i = N on,
    +DI = 100 * s(+DM) / s(TR), -DI likewise (0 when s(TR) = 0), DX = 100 * |+DI - -DI| /
    (+DI + -DI) (0 when the sum is 0); ADX is the mean of the first N DX values, then smoothed
    the same way up to L.
14. atr_pct_14: ATR = s(TR) at L (as above); ATR / c * 100.
15. volume_zscore_20: (v[L] - mean) / std (population) of the `VOLUME_BARS` volumes before the
    last bar (L - 20 .. L - 1); 0 when those volumes are all equal.
16. ema_trend: (EMA20 - EMA60) / c, each EMA seeded with c[0] and updated
    e = a * c[i] + (1 - a) * e, a = 2 / (N + 1); computed as sum(dw * (c - c[L])) / c with dw
    the difference of the two EMAs' weights (each sums to 1), so a constant price gives 0.
17. return_5_pct: (c[L] / c[L - 5] - 1) * 100.
18. return_15_pct: (c[L] / c[L - 15] - 1) * 100.

Wilder smoothing and the EMAs are evaluated in closed form (s_k = r^(k-N) * (s_N +
sum_(i=N+1..k) x_i r^-(i-N) / N), r = (N - 1) / N; an EMA as fixed weights on the closes): the
same values as the recursions up to rounding, without a Python loop over bars. Every reduction
runs along one window's own contiguous row (np.sum / np.cumsum over the bar axis), so a row is
bit-identical however many windows are computed together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
Index = npt.NDArray[np.intp]

FEATURE_VERSION = 1
WINDOW_BARS = 120  # bars each feature row is computed from (the last WINDOW_BARS of a window)
SWING_BARS = 2  # fractal swing: bars on each side that must be strictly lower (higher)
SWEEP_BARS = 3  # bars at the end of the window that may sweep a swing level
ATR_BARS = 14  # Wilder period of ATR and of the displacement denominator
ADX_BARS = 14  # Wilder period of +DI/-DI and of the ADX smoothing
VOLUME_BARS = 20  # volumes before the last bar that the z-score compares it with
EMA_FAST_BARS = 20
EMA_SLOW_BARS = 60
RETURN_SHORT_BARS = 5
RETURN_LONG_BARS = 15

if ATR_BARS != ADX_BARS:  # one smoothing pass serves both
    raise ValueError(f"features: ATR_BARS={ATR_BARS} must equal ADX_BARS={ADX_BARS}")


def _ema_weights(bars: int) -> F64:
    """Return the weights of closes 0..L in an EMA of `bars` seeded with close 0 (sum 1)."""
    alpha = 2.0 / (bars + 1)
    weights = alpha * (1.0 - alpha) ** np.arange(WINDOW_BARS - 1, -1, -1, dtype=np.float64)
    weights[0] = (1.0 - alpha) ** (WINDOW_BARS - 1)
    return weights


# Wilder smoothing s_k = r s_(k-1) + x_k / N, r = (N - 1) / N, in closed form over bars N..L.
_WILDER_RATIO = (ATR_BARS - 1) / ATR_BARS
_WILDER_STEPS = WINDOW_BARS - ATR_BARS  # smoothed values at bars N..L
_WILDER_GROWTH = _WILDER_RATIO ** -np.arange(1, _WILDER_STEPS, dtype=np.float64) / ATR_BARS
_WILDER_DECAY = _WILDER_RATIO ** np.arange(_WILDER_STEPS, dtype=np.float64)
_ADX_SMOOTHED = _WILDER_STEPS - ADX_BARS  # DX values after the ADX seed (bars 2N..L)
_ADX_SEED_DECAY = _WILDER_RATIO**_ADX_SMOOTHED
_ADX_WEIGHTS = _WILDER_RATIO ** np.arange(_ADX_SMOOTHED - 1, -1, -1, dtype=np.float64) / ADX_BARS
_EMA_DIFFERENCE_WEIGHTS = _ema_weights(EMA_FAST_BARS) - _ema_weights(EMA_SLOW_BARS)

# Column order of shared.shm.layout.KlineColumn (not imported: that module maps memory);
# compute_features relies on OPEN..VOLUME being consecutive.
OPEN, HIGH, LOW, CLOSE, VOLUME = 1, 2, 3, 4, 5
MIN_COLUMNS = 6

FEATURE_NAMES: tuple[str, ...] = (
    "market_structure",
    "break_of_structure",
    "change_of_character",
    "bullish_order_block_distance_pct",
    "bearish_order_block_distance_pct",
    "liquidity_sweep",
    "bullish_fvg_pct",
    "bearish_fvg_pct",
    "premium_discount",
    "displacement",
    "swing_high_distance_pct",
    "swing_low_distance_pct",
    "adx_14",
    "atr_pct_14",
    "volume_zscore_20",
    "ema_trend",
    "return_5_pct",
    "return_15_pct",
)


def feature_schema(version: int, window_bars: int, names: Sequence[str]) -> str:
    """Return the first 16 hex digits of sha256 over the version, window length and names."""
    text = f"{version}|{window_bars}|{','.join(names)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


FEATURE_SCHEMA = feature_schema(FEATURE_VERSION, WINDOW_BARS, FEATURE_NAMES)


def compute_features(windows: F64) -> F64:
    """Return the (n, len(FEATURE_NAMES)) features of (n, bars >= WINDOW_BARS, C >= 6) windows.

    Uses the last WINDOW_BARS bars of each window; a window with a non-finite or non-positive
    price (or a non-finite or negative volume) gives a row of NaN. Raises ValueError for a
    wrong shape.
    """
    if windows.ndim != 3 or windows.shape[1] < WINDOW_BARS or windows.shape[2] < MIN_COLUMNS:
        raise ValueError(
            f"features: windows shape {windows.shape} is not (n, >= {WINDOW_BARS}, "
            f">= {MIN_COLUMNS})"
        )
    n = windows.shape[0]
    recent = windows[:, -WINDOW_BARS:, :]
    # One copy, column-major: each column is then a C-contiguous (n, WINDOW_BARS) array.
    by_column = recent[:, :, OPEN : VOLUME + 1].transpose(2, 0, 1)
    opens, highs, lows, closes, volumes = np.ascontiguousarray(by_column, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        prices_ok = np.all(
            np.isfinite(opens) & np.isfinite(highs) & np.isfinite(lows) & np.isfinite(closes),
            axis=1,
        ) & np.all((opens > 0) & (highs > 0) & (lows > 0) & (closes > 0), axis=1)
        is_valid = prices_ok & np.all(np.isfinite(volumes) & (volumes >= 0), axis=1)
    if not np.all(is_valid):
        # Bad windows are computed on placeholder bars so no arithmetic sees NaN, then blanked.
        keep = is_valid[:, None]
        opens, highs, lows, closes = (np.where(keep, x, 1.0) for x in (opens, highs, lows, closes))
        volumes = np.where(keep, volumes, 0.0)

    last = closes[:, -1]
    atr, adx = _wilder_atr_adx(highs, lows, closes)
    columns = _structure_features(opens, highs, lows, closes)
    columns["premium_discount"] = _premium_discount(highs, lows, last)
    columns["displacement"] = _ratio(last - opens[:, -1], atr)
    columns["adx_14"] = adx
    columns["atr_pct_14"] = atr / last * 100.0
    columns["volume_zscore_20"] = _volume_zscore(volumes)
    columns["ema_trend"] = _ema_trend(closes)
    columns["return_5_pct"] = (last / closes[:, -1 - RETURN_SHORT_BARS] - 1.0) * 100.0
    columns["return_15_pct"] = (last / closes[:, -1 - RETURN_LONG_BARS] - 1.0) * 100.0
    out = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64)
    for i, name in enumerate(FEATURE_NAMES):
        out[:, i] = columns[name]
    out[~is_valid] = np.nan
    return out


def feature_history(bars: F64, chunk: int = 4096) -> F64:
    """Return (T, F) features of one symbol's (T, C >= 6) bars; rows t < WINDOW_BARS - 1 are NaN.

    Row t equals compute_features(bars[t - WINDOW_BARS + 1 : t + 1]); windows are computed
    `chunk` at a time to bound memory. Raises ValueError for a wrong shape or chunk < 1.
    """
    if bars.ndim != 2 or bars.shape[1] < MIN_COLUMNS:
        raise ValueError(f"features: bars shape {bars.shape} is not (T, >= {MIN_COLUMNS})")
    if chunk < 1:
        raise ValueError(f"features: chunk={chunk} must be >= 1")
    total = bars.shape[0]
    out = np.full((total, len(FEATURE_NAMES)), np.nan, dtype=np.float64)
    if total < WINDOW_BARS:
        return out
    views = sliding_window_view(bars, (WINDOW_BARS, bars.shape[1]))[:, 0]
    for start in range(0, views.shape[0], chunk):
        stop = min(start + chunk, views.shape[0])
        out[start + WINDOW_BARS - 1 : stop + WINDOW_BARS - 1] = compute_features(views[start:stop])
    return out


def _ratio(numerator: F64, denominator: F64) -> F64:
    """Return numerator / denominator, 0 where the denominator is not positive."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _swing_mask(x: F64) -> Mask:
    """Return where x[:, i] is strictly above the SWING_BARS values on each side."""
    k, width = SWING_BARS, x.shape[1]
    mask = np.zeros(x.shape, dtype=np.bool_)
    centre = x[:, k : width - k]
    is_swing = np.ones(centre.shape, dtype=np.bool_)
    for d in range(1, k + 1):
        is_swing &= centre > x[:, k - d : width - k - d]
        is_swing &= centre > x[:, k + d : width - k + d]
    mask[:, k : width - k] = is_swing
    return mask


def _last_index(mask: Mask) -> Index:
    """Return, per bar, the index of the latest True at or before it (-1 when none)."""
    positions = np.arange(mask.shape[1], dtype=np.intp)
    marked = np.where(mask, positions, np.intp(-1))
    return np.maximum.accumulate(marked, axis=1)


def _as_of(latest: Index) -> Index:
    """Return, per bar j, the latest swing index with i <= j - SWING_BARS (-1 when none)."""
    shifted = np.full(latest.shape, -1, dtype=np.intp)
    shifted[:, SWING_BARS:] = latest[:, : latest.shape[1] - SWING_BARS]
    return shifted


def _pick(x: F64, index: Index) -> F64:
    """Return x[row, index[row]] (index -1 reads column 0; callers mask it)."""
    return x[np.arange(x.shape[0]), np.maximum(index, 0)]


def _pick_each(x: F64, index: Index) -> F64:
    """Return x[row, index[row, j]] for every j (index -1 reads column 0; callers mask it)."""
    return np.take_along_axis(x, np.maximum(index, 0), axis=1)


def _previous(latest: Index, index: Index) -> Index:
    """Return the latest marked index strictly before `index` (-1 when none)."""
    before = latest[np.arange(latest.shape[0]), np.maximum(index - 1, 0)]
    return np.where(index > 0, before, np.intp(-1))


def _zone_distance(close: F64, low: F64, high: F64, has_zone: Mask) -> F64:
    """Return the signed distance of close to [low, high] in % of close, 0 inside or no zone."""
    above = (close - high) / close * 100.0
    below = (close - low) / close * 100.0
    distance = np.where(close > high, above, np.where(close < low, below, 0.0))
    return np.where(has_zone, distance, 0.0)


def _order_block(
    opens: F64, highs: F64, lows: F64, closes: F64, level_index: Index, is_bullish: bool
) -> F64:
    """Return the order-block distance (% of the last close) for one direction."""
    width = closes.shape[1]
    level = _pick_each(highs if is_bullish else lows, level_index)[:, 1:]
    has_level = level_index[:, 1:] >= 0
    now, before = closes[:, 1:], closes[:, :-1]
    if is_bullish:
        crossed = has_level & (now > level) & (before <= level)
        opposite = closes < opens
    else:
        crossed = has_level & (now < level) & (before >= level)
        opposite = closes > opens
    positions = np.arange(1, width, dtype=np.intp)
    break_bar = np.max(np.where(crossed, positions, np.intp(-1)), axis=1)
    block = _previous(_last_index(opposite), break_bar)
    has_block = (break_bar > 0) & (block >= 0)
    return _zone_distance(closes[:, -1], _pick(lows, block), _pick(highs, block), has_block)


def _fair_value_gap(highs: F64, lows: F64, close: F64, is_bullish: bool) -> F64:
    """Return the size (% of close) of the most recent unfilled fair value gap, 0 without one."""
    n, width = highs.shape
    if is_bullish:
        bottom, top = highs[:, :-2], lows[:, 2:]
        is_gap = top > bottom
        later_low = np.minimum.accumulate(lows[:, ::-1], axis=1)[:, ::-1]
        after = np.concatenate([later_low[:, 3:], np.full((n, 1), np.inf)], axis=1)
        is_open = is_gap & (after > bottom)
    else:
        top, bottom = lows[:, :-2], highs[:, 2:]
        is_gap = bottom < top
        later_high = np.maximum.accumulate(highs[:, ::-1], axis=1)[:, ::-1]
        after = np.concatenate([later_high[:, 3:], np.full((n, 1), -np.inf)], axis=1)
        is_open = is_gap & (after < top)
    positions = np.arange(width - 2, dtype=np.intp)
    latest = np.max(np.where(is_open, positions, np.intp(-1)), axis=1)
    size = (_pick(top, latest) - _pick(bottom, latest)) / close * 100.0
    return np.where(latest >= 0, size, 0.0)


def _structure_features(opens: F64, highs: F64, lows: F64, closes: F64) -> dict[str, F64]:
    """Return the swing-based features (1-8, 11 and 12) by name."""
    last = closes[:, -1]
    latest_high = _last_index(_swing_mask(highs))
    latest_low = _last_index(_swing_mask(-lows))
    high_1 = latest_high[:, -1]
    low_1 = latest_low[:, -1]
    high_0 = _previous(latest_high, high_1)
    low_0 = _previous(latest_low, low_1)
    h1, h0, l1, l0 = (
        _pick(highs, high_1),
        _pick(highs, high_0),
        _pick(lows, low_1),
        _pick(lows, low_0),
    )
    has_both = (high_0 >= 0) & (low_0 >= 0)
    bullish = has_both & (h1 > h0) & (l1 > l0)
    bearish = has_both & (h1 < h0) & (l1 < l0)
    structure = bullish.astype(np.float64) - bearish.astype(np.float64)
    above_high = (high_1 >= 0) & (last > h1)
    below_low = (low_1 >= 0) & (last < l1)
    bos = (bullish & above_high).astype(np.float64) - (bearish & below_low).astype(np.float64)
    choch = (bearish & above_high).astype(np.float64) - (bullish & below_low).astype(np.float64)

    high_as_of, low_as_of = _as_of(latest_high), _as_of(latest_low)
    bull_block = _order_block(opens, highs, lows, closes, high_as_of, is_bullish=True)
    bear_block = _order_block(opens, highs, lows, closes, low_as_of, is_bullish=False)

    sweep_from = closes.shape[1] - SWEEP_BARS  # first bar of the sweep window
    low_level_index = low_as_of[:, sweep_from - 1]
    high_level_index = high_as_of[:, sweep_from - 1]
    low_level, high_level = _pick(lows, low_level_index), _pick(highs, high_level_index)
    swept_low = (
        (low_level_index >= 0)
        & (np.min(lows[:, sweep_from:], axis=1) < low_level)
        & (last > low_level)
    )
    swept_high = (
        (high_level_index >= 0)
        & (np.max(highs[:, sweep_from:], axis=1) > high_level)
        & (last < high_level)
    )
    sweep = swept_low.astype(np.float64) - swept_high.astype(np.float64)

    return {
        "market_structure": structure,
        "break_of_structure": bos,
        "change_of_character": choch,
        "bullish_order_block_distance_pct": bull_block,
        "bearish_order_block_distance_pct": bear_block,
        "liquidity_sweep": sweep,
        "bullish_fvg_pct": _fair_value_gap(highs, lows, last, is_bullish=True),
        "bearish_fvg_pct": _fair_value_gap(highs, lows, last, is_bullish=False),
        "swing_high_distance_pct": np.where(high_1 >= 0, (last - h1) / last * 100.0, 0.0),
        "swing_low_distance_pct": np.where(low_1 >= 0, (last - l1) / last * 100.0, 0.0),
    }


def _premium_discount(highs: F64, lows: F64, last: F64) -> F64:
    """Return the position of the last close in the window's low..high range, 0.5 if flat."""
    top, bottom = np.max(highs, axis=1), np.min(lows, axis=1)
    span = top - bottom
    position: F64 = np.divide(last - bottom, span, out=np.full_like(last, 0.5), where=span > 0)
    return position


def _wilder_atr_adx(highs: F64, lows: F64, closes: F64) -> tuple[F64, F64]:
    """Return Wilder ATR(ATR_BARS) (price units) and ADX(ADX_BARS) at the last bar."""
    period = ATR_BARS
    # moves[m, row, i - 1] for bars i = 1..L; m = 0 TR, 1 +DM, 2 -DM (all >= 0). Written in
    # place: large temporaries cost more in allocation than in arithmetic.
    moves = np.empty((3, *(highs.shape[0], highs.shape[1] - 1)), dtype=np.float64)
    true_range, plus_dm, minus_dm = moves[0], moves[1], moves[2]
    prev_close = closes[:, :-1]
    np.subtract(highs[:, 1:], lows[:, 1:], out=true_range)
    np.maximum(true_range, np.abs(highs[:, 1:] - prev_close), out=true_range)
    np.maximum(true_range, np.abs(lows[:, 1:] - prev_close), out=true_range)
    up = highs[:, 1:] - highs[:, :-1]
    down = lows[:, :-1] - lows[:, 1:]
    np.copyto(plus_dm, np.where((up > down) & (up > 0), up, 0.0))
    np.copyto(minus_dm, np.where((down > up) & (down > 0), down, 0.0))
    seed = np.sum(moves[:, :, :period], axis=2) / period
    # s_k = r^(k-N) * (s_N + sum_{i=N+1..k} x_i r^-(i-N) / N): non-negative terms, no cancellation.
    smooth = moves[:, :, period - 1 :]  # becomes s at bars N..L
    grown = smooth[:, :, 1:]
    grown *= _WILDER_GROWTH
    np.cumsum(grown, axis=2, out=grown)
    grown += seed[:, :, None]
    smooth[:, :, 0] = seed
    smooth *= _WILDER_DECAY
    plus_di = _ratio(smooth[1] * 100.0, smooth[0])
    minus_di = _ratio(smooth[2] * 100.0, smooth[0])
    dx = _ratio(np.abs(plus_di - minus_di) * 100.0, plus_di + minus_di)
    adx_seed = np.sum(dx[:, :period], axis=1) / period  # DX at bars N..2N-1
    adx = adx_seed * _ADX_SEED_DECAY + np.sum(dx[:, period:] * _ADX_WEIGHTS, axis=1)
    atr: F64 = smooth[0, :, -1]
    return atr, adx


def _volume_zscore(volumes: F64) -> F64:
    """Return the z-score of the last volume against the VOLUME_BARS volumes before it."""
    before = volumes[:, -1 - VOLUME_BARS : -1]
    mean = np.sum(before, axis=1) / VOLUME_BARS
    std = np.sqrt(np.sum((before - mean[:, None]) ** 2, axis=1) / VOLUME_BARS)
    is_flat = np.max(before, axis=1) == np.min(before, axis=1)
    return np.where(is_flat, 0.0, _ratio(volumes[:, -1] - mean, np.where(is_flat, 0.0, std)))


def _ema_trend(closes: F64) -> F64:
    """Return (EMA_FAST - EMA_SLOW) / last close, each EMA seeded with the first close."""
    last = closes[:, -1]
    # Each EMA's weights sum to 1, so subtracting c[L] first changes nothing but rounding and
    # makes a constant price give exactly 0.
    trend: F64 = np.sum((closes - last[:, None]) * _EMA_DIFFERENCE_WEIGHTS, axis=1) / last
    return trend
