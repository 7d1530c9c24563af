"""Shared pieces of the Binance schemas: the `Codec` (decode, then convert) and the base structs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import msgspec

W = TypeVar("W")
R = TypeVar("R")


class Codec(Generic[W, R]):
    """Decode JSON bytes into the wire type `W`, then convert it with `to_*` into `R`."""

    def __init__(self, wire: type[W], convert: Callable[[W], R]) -> None:
        self._decoder: msgspec.json.Decoder[W] = msgspec.json.Decoder(wire)
        self._convert = convert

    def __call__(self, raw: bytes | str) -> R:
        """Return the readable value; raises msgspec.ValidationError / DecodeError."""
        return self._convert(self._decoder.decode(raw))


class Wire(msgspec.Struct, frozen=True):
    """Base of the wire structs: field names are Binance's."""


class Readable(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the readable structs the processes use."""


def invalid(path: str, reason: str) -> msgspec.ValidationError:
    return msgspec.ValidationError(f"{reason} - at `{path}`")
