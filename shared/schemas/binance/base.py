"""Shared pieces of the Binance schemas: the `Codec` (decode, then convert) and the base structs."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Generic, TypeVar

import msgspec

W = TypeVar("W")
R = TypeVar("R")


class Codec(Generic[W, R]):
    """Decode JSON bytes into the wire type `W`, then convert it with `to_*` into `R`."""

    def __init__(self, wire: type[W], convert: Callable[[W], R]) -> None:
        self._decoder: msgspec.json.Decoder[W] = msgspec.json.Decoder(wire)
        self._convert = convert

    def __call__(self, raw: bytes | str) -> R:
        """Return the readable value; raises msgspec.ValidationError / DecodeError, also for a
        number that is not finite (`check_finite`) and for one a `to_*` function refuses."""
        wire = self._decoder.decode(raw)
        check_finite(wire)
        return self._convert(wire)


class Wire(msgspec.Struct, frozen=True):
    """Base of the wire structs: field names are Binance's."""


class Readable(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the readable structs the processes use."""


def invalid(path: str, reason: str) -> msgspec.ValidationError:
    return msgspec.ValidationError(f"{reason} - at `{path}`")


def check_finite(value: Any, path: str = "$") -> None:
    """Raise ValidationError naming the path of the first Decimal in `value` (a wire struct, or
    lists and tuples of them) that is not finite. msgspec decodes "NaN" and "Infinity" into a
    Decimal without complaint; no Binance number is ever either, and one that reached a
    comparison would raise InvalidOperation far from the wire."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise invalid(path, f"number {str(value)[:40]} is not finite")
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            check_finite(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_finite(item, f"{path}[{i}]")


def check_price(value: Decimal, path: str) -> None:
    """Raise ValidationError unless `value` is a finite price > 0 (a candle, a mark)."""
    if not (value.is_finite() and value > 0):
        raise invalid(path, f"price {str(value)[:40]} is not finite and positive")


def check_not_negative(value: Decimal | None, path: str) -> None:
    """Raise ValidationError unless `value` is None or finite and >= 0 (a price Binance sends
    as 0 when there is none, a volume, a quantity)."""
    if value is not None and not (value.is_finite() and value >= 0):
        raise invalid(path, f"number {str(value)[:40]} is not finite and >= 0")
