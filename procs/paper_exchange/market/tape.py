"""One symbol's price tape: integer units from its spec, and the deterministic path of a minute.

Units: prices are integers of 10**-price_exp, where price_exp covers both the data's decimals and
the tick size's; quantities of 10**-qty_exp likewise with the step size; quote amounts of
10**-(pricePrecision + quantityPrecision), the precision Binance's kline quote volumes carry
(`"142.96380"` for BTCUSDT in the real ccxt kline fixture). Construction checks that every
replayed price is a multiple of the tick size and every volume a multiple of the step size.

Minute path (see `market.py` for the whole picture): 240 steps of 250 ms through the knots
open (step 0) -> first extreme (80) -> second extreme (159) -> close (239), linear in ticks
between knots, rounded half up. The knots are symmetric (239 - 80 == 159), so the path of a
backward-pass minute is exactly the reversed path of its forward minute.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from itertools import accumulate
from typing import Any

from procs.paper_exchange.market.replay import DataError, Replay
from procs.paper_exchange.market.series import Series

STEP_MS = 250
STEPS_PER_MINUTE = 240
KNOTS = (0, 80, 159, 239)  # symmetric: 239 - 80 == 159


def _filter_value(symbol: str, spec: Mapping[str, Any], filter_type: str, key: str) -> Decimal:
    for item in spec.get("filters", ()):
        if item.get("filterType") == filter_type and key in item:
            value = Decimal(str(item[key]))
            if value > 0:
                return value.normalize()
    raise DataError(f"market: {symbol} spec has no positive {filter_type} {key}")


def _precision(symbol: str, spec: Mapping[str, Any], key: str) -> int:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DataError(f"market: {symbol} spec {key}={value!r} is not a whole number >= 0")
    return value


def _decimals(value: Decimal) -> int:
    return max(0, -int(value.as_tuple().exponent))


class SymbolTape:
    """One symbol's integer units, replay series, price override and current-minute cache."""

    def __init__(self, symbol: str, replay: Replay, spec: Mapping[str, Any]) -> None:
        tick = _filter_value(symbol, spec, "PRICE_FILTER", "tickSize")
        step = _filter_value(symbol, spec, "LOT_SIZE", "stepSize")
        price_precision = _precision(symbol, spec, "pricePrecision")
        qty_precision = _precision(symbol, spec, "quantityPrecision")
        self.price_exp = max(replay.price_decimals, _decimals(tick))
        self.qty_exp = max(replay.volume_decimals, _decimals(step))
        if self.price_exp > price_precision or self.qty_exp > qty_precision:
            raise DataError(
                f"market: {symbol} data needs {self.price_exp} price and {self.qty_exp} quantity"
                f" decimals, spec precision is {price_precision} and {qty_precision}"
            )
        self.tick = tick
        self.tick_units = int(tick.scaleb(self.price_exp))
        self.lot_units = int(step.scaleb(self.qty_exp))
        self.quote_exp = price_precision + qty_precision
        self.funding_exp = replay.funding_decimals
        price_units = replay.ohlc_units * 10 ** (self.price_exp - replay.price_decimals)
        volume_units = replay.volume_units * 10 ** (self.qty_exp - replay.volume_decimals)
        for what, off in (
            (f"a price that is not a multiple of tickSize {tick}", price_units % self.tick_units),
            (f"a volume that is not a multiple of stepSize {step}", volume_units % self.lot_units),
        ):
            if off.any():
                row = int(off.reshape(len(off), -1).any(axis=1).argmax())
                raise DataError(f"market: {symbol} data row {row} (file line {row + 2}) has {what}")
        self.series = Series(
            replay,
            price_mult=10 ** (self.price_exp - replay.price_decimals),
            qty_mult=10 ** (self.qty_exp - replay.volume_decimals),
            quote_shift=self.quote_exp - self.price_exp - self.qty_exp,
        )
        self.override: Decimal | None = None
        self.minute: MinutePath | None = None  # the latest minute asked about
        self.other_minute: MinutePath | None = None  # the last older one

    def price(self, units: int) -> Decimal:
        """Return a price from integer units."""
        return Decimal(units).scaleb(-self.price_exp)

    def qty(self, units: int) -> Decimal:
        """Return a quantity from integer units."""
        return Decimal(units).scaleb(-self.qty_exp)

    def quote(self, units: int) -> Decimal:
        """Return a quote amount from integer units."""
        return Decimal(units).scaleb(-self.quote_exp)


class MinutePath:
    """The deterministic path of one sim minute in price units, with running extremes."""

    __slots__ = (
        "k",
        "minute_ms",
        "ohlcv",
        "path",
        "prev_close",
        "prices",
        "run_high",
        "run_low",
    )

    def __init__(self, sym: SymbolTape, minute_ms: int, k: int) -> None:
        series = sym.series
        p = series.position(k)
        o, h, lo, c = (int(a[p]) for a in (series.open, series.high, series.low, series.close))
        self.minute_ms = minute_ms
        self.k = k
        self.ohlcv = (o, h, lo, c, int(series.volume[p]))
        self.prev_close = int(series.close[(k - 1) % series.period])
        unit = sym.tick_units
        first, second = (h, lo) if c < o else (lo, h)
        knots = (o // unit, first // unit, second // unit, c // unit)
        path: list[int] = []
        for segment in range(3):
            a, b = KNOTS[segment], KNOTS[segment + 1]
            start, rise, length = knots[segment], knots[segment + 1] - knots[segment], b - a
            path.extend(start + (2 * rise * (s - a) + length) // (2 * length) for s in range(a, b))
        path.append(knots[3])
        self.path = [t * unit for t in path]
        self.run_high = list(accumulate(self.path, max))
        self.run_low = list(accumulate(self.path, min))
        self.prices = [sym.price(units) for units in self.path]

    def volume_through(self, step: int) -> int:
        """Volume traded in steps 0..step (-1 gives 0)."""
        return self.ohlcv[4] * (step + 1) // STEPS_PER_MINUTE
