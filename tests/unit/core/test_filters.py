"""Step and tick rounding, and the entry quantity checked against the real BTCUSDT filters.

The symbol rules come from the real exchangeInfo capture (tests/fixtures/binance/PROVENANCE.md):
BTCUSDT tick 0.10, MARKET_LOT_SIZE step 0.001, min 0.001, max 1000, MIN_NOTIONAL 10 USDT.
"""

from __future__ import annotations

from decimal import Decimal as D

import msgspec
import pytest

from shared.core.filters import OrderCheck, entry_quantity, floor_to_step, round_to_tick
from shared.schemas.binance import decode_exchange_info
from tests.unit.schemas.fixtures import raw

INFO = decode_exchange_info(raw("nautilus-real/http_futures_market_exchange_info.json"))
BTC = INFO.symbols[0]
ETH = INFO.symbols[1]


def test_fixture_holds_the_filters_these_tests_rely_on() -> None:
    assert BTC.symbol == "BTCUSDT" and ETH.symbol == "ETHUSDT"
    assert (BTC.tick_size, BTC.market_step_size) == (D("0.10"), D("0.001"))
    assert (BTC.market_min_qty, BTC.market_max_qty, BTC.min_notional_usdt) == (
        D("0.001"),
        D("1000"),
        D("10"),
    )


# ---- step ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "step", "expected"),
    [
        ("0.0129", "0.001", "0.012"),
        ("0.012", "0.001", "0.012"),
        ("0.0009999", "0.001", "0"),
        ("12.9", "1", "12"),
        ("7.4", "2.5", "5.0"),
        ("0", "0.001", "0"),
    ],
)
def test_floor_to_step_rounds_down_to_a_multiple_of_the_step(
    qty: str, step: str, expected: str
) -> None:
    assert floor_to_step(D(qty), D(step)) == D(expected)


def test_floor_to_step_keeps_the_step_precision() -> None:
    assert str(floor_to_step(D("0.0129"), D("0.001"))) == "0.012"


def test_floor_to_step_with_a_zero_step_raises() -> None:
    with pytest.raises(ValueError, match="step 0 must be > 0"):
        floor_to_step(D("1"), D("0"))


def test_floor_to_step_with_a_negative_quantity_raises() -> None:
    with pytest.raises(ValueError, match=r"quantity -0\.1 must be >= 0"):
        floor_to_step(D("-0.1"), D("0.001"))


# ---- tick ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "rounding", "expected"),
    [
        ("97012.47", "down", "97012.4"),
        ("97012.47", "up", "97012.5"),
        ("97012.47", "nearest", "97012.5"),
        ("97012.44", "nearest", "97012.4"),
        ("97012.45", "nearest", "97012.5"),
        ("97012.40", "down", "97012.4"),
        ("97012.40", "up", "97012.4"),
        ("97012.40", "nearest", "97012.4"),
    ],
)
def test_round_to_tick_rounds_down_up_or_nearest_with_halves_up(
    price: str, rounding: str, expected: str
) -> None:
    assert round_to_tick(D(price), BTC.tick_size, rounding) == D(expected)


def test_round_to_tick_uses_the_symbols_own_tick() -> None:
    assert round_to_tick(D("3100.255"), ETH.tick_size, "down") == D("3100.25")
    assert round_to_tick(D("3100.255"), ETH.tick_size, "up") == D("3100.26")


def test_round_to_tick_with_an_unknown_rounding_raises() -> None:
    with pytest.raises(ValueError, match="rounding 'half' is not down, up or nearest"):
        round_to_tick(D("1.05"), D("0.1"), "half")


def test_round_to_tick_with_a_zero_tick_raises() -> None:
    with pytest.raises(ValueError, match="tick 0 must be > 0"):
        round_to_tick(D("1.05"), D("0"), "down")


# ---- entry quantity -----------------------------------------------------------------------------


def test_entry_quantity_floors_notional_over_price_to_the_market_step() -> None:
    assert entry_quantity(D("600"), D("50000"), BTC) == OrderCheck(D("0.012"), ())
    check = entry_quantity(D("600"), D("97012.5"), BTC)  # 0.006184...
    assert check == OrderCheck(D("0.006"), ())
    assert check.is_ok


def test_entry_quantity_at_exactly_the_min_notional_passes() -> None:
    assert entry_quantity(D("10"), D("10000"), BTC) == OrderCheck(D("0.001"), ())


def test_entry_quantity_just_below_the_min_notional_names_symbol_value_and_limit() -> None:
    check = entry_quantity(D("10"), D("9999.9"), BTC)  # 0.001 * 9999.9 = 9.9999
    assert check.quantity == D("0.001")
    assert check.problems == ("BTCUSDT notional 9.9999 USDT is below the minimum 10 USDT",)
    assert not check.is_ok


def test_entry_quantity_whose_flooring_drops_below_the_min_notional_is_refused() -> None:
    check = entry_quantity(D("10.5"), D("5500"), BTC)  # 0.00190.. -> 0.001 -> 5.5 USDT
    assert check.problems == ("BTCUSDT notional 5.500 USDT is below the minimum 10 USDT",)


def test_entry_quantity_below_the_min_quantity_names_both_limits() -> None:
    check = entry_quantity(D("49"), D("50000"), BTC)  # 0.00098 -> 0.000
    assert check.quantity == D("0")
    assert check.problems == (
        "BTCUSDT quantity 0.000 is below the minimum 0.001",
        "BTCUSDT notional 0.000 USDT is below the minimum 10 USDT",
    )


def test_entry_quantity_above_the_max_quantity_is_refused() -> None:
    check = entry_quantity(D("500000"), D("402"), BTC)  # 1243.781...
    assert check.quantity == D("1243.781")
    assert check.problems == ("BTCUSDT quantity 1243.781 is above the maximum 1000",)


def test_entry_quantity_at_exactly_the_max_quantity_passes() -> None:
    assert entry_quantity(D("500000"), D("500"), BTC) == OrderCheck(D("1000.000"), ())


def test_entry_quantity_for_a_symbol_not_trading_is_refused() -> None:
    settling = msgspec.structs.replace(BTC, status="SETTLING")
    check = entry_quantity(D("600"), D("50000"), settling)
    assert check.problems == ("BTCUSDT status SETTLING is not TRADING",)


def test_entry_quantity_with_a_zero_price_raises() -> None:
    with pytest.raises(ValueError, match="BTCUSDT price 0 must be > 0"):
        entry_quantity(D("600"), D("0"), BTC)


def test_entry_quantity_with_a_negative_notional_raises() -> None:
    with pytest.raises(ValueError, match="BTCUSDT notional -1 must be >= 0"):
        entry_quantity(D("-1"), D("50000"), BTC)
