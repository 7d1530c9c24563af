"""Client order ids: deterministic from the intent, within Binance's 36 characters and regex."""

from __future__ import annotations

import hashlib
import re

import pytest

from shared.core.ids import (
    ClientIdParts,
    client_order_id,
    is_ours,
    parse_client_order_id,
)

BINANCE_REGEX = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")  # §3.4 -4015, typed from the docs


def test_short_signal_id_gives_the_readable_id() -> None:
    assert client_order_id("8812", "entry", 0) == "slt-8812-entry-0"
    assert client_order_id("BTC_1718000000", "stop", 12) == "slt-BTC_1718000000-stop-12"


def test_same_intent_gives_the_same_id_after_a_restart() -> None:
    first = client_order_id("a-very-long-signal-id-from-the-trader-0001", "flat", 3)
    again = client_order_id("a-very-long-signal-id-from-the-trader-0001", "flat", 3)
    assert first == again


def test_too_long_signal_id_is_shortened_to_its_hash_within_36_characters() -> None:
    cid = client_order_id("BTCUSDT_1718000000000_breakout_long_v2", "entry", 0)
    digest = hashlib.sha256(b"BTCUSDT_1718000000000_breakout_long_v2").hexdigest()
    assert cid == "slt-.a1ee0cbdb59d77d0c3f9f90-entry-0" == f"slt-.{digest[:23]}-entry-0"
    assert len(cid) == 36 and BINANCE_REGEX.match(cid)


def test_signal_id_with_characters_outside_the_kept_set_is_hashed() -> None:
    cid = client_order_id("a:b", "tp", 1)
    assert cid.startswith("slt-.") and cid.endswith("-tp-1")
    assert BINANCE_REGEX.match(cid)


def test_different_long_signal_ids_give_different_ids() -> None:
    ids = {client_order_id(f"signal-{i:04d}-" + "x" * 40, "stop", 0) for i in range(2000)}
    assert len(ids) == 2000


@pytest.mark.parametrize("signal", ["1", "x" * 17, "x" * 18, "y" * 200, "sig/1.2:3", "é"])
@pytest.mark.parametrize(("purpose", "attempt"), [("e", 0), ("stop", 7), ("abcdefghij", 999)])
def test_every_id_fits_binance_s_regex(signal: str, purpose: str, attempt: int) -> None:
    cid = client_order_id(signal, purpose, attempt)
    assert len(cid) <= 36
    assert BINANCE_REGEX.match(cid)
    assert parse_client_order_id(cid) is not None


def test_parse_returns_the_parts_of_our_ids() -> None:
    assert parse_client_order_id("slt-8812-entry-0") == ClientIdParts("8812", "entry", 0)
    long_id = client_order_id("z" * 50, "exit", 2)
    parts = parse_client_order_id(long_id)
    assert parts is not None and parts.signal.startswith(".") and parts.attempt == 2


def test_foreign_client_ids_are_not_ours() -> None:
    assert not is_ours("x-xcKtGhcu04075babaeb34c55af79ba")
    assert not is_ours("autoclose-1234567890")
    assert not is_ours("slt-8812-Entry-0")
    assert is_ours("slt-8812-entry-0")


@pytest.mark.parametrize(
    ("signal", "purpose", "attempt", "message"),
    [
        ("", "entry", 0, "signal_id is empty"),
        ("1", "Entry", 0, "purpose='Entry'"),
        ("1", "entry-x", 0, "purpose='entry-x'"),
        ("1", "abcdefghijk", 0, "purpose='abcdefghijk'"),
        ("1", "entry", -1, "attempt=-1 is outside 0..999"),
        ("1", "entry", 1000, "attempt=1000 is outside 0..999"),
    ],
)
def test_invalid_parts_are_refused(signal: str, purpose: str, attempt: int, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        client_order_id(signal, purpose, attempt)
