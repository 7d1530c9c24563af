"""JSON state of the engine's records: dataclasses of Decimal, int, str and bool fields.

`record_state` writes a record as a JSON-able dict (Decimals as their exact strings, so a
round trip through `json.dumps`/`json.loads` restores every digit); `record_from_state` reads it
back into the dataclass, checking each field's type so a corrupted state file fails loudly.
"""

from __future__ import annotations

import dataclasses
import typing
from decimal import Decimal
from typing import Any, TypeVar

T = TypeVar("T")

_HINTS: dict[type, dict[str, Any]] = {}
_FIELDS: dict[type, tuple[str, ...]] = {}  # dataclasses.fields() is slow; the state is written
# before every order reply, with every record in it


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def record_state(record: object) -> dict[str, Any]:
    """Return a dataclass record as a JSON-able dict, Decimals written as exact strings."""
    cls = type(record)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(record))  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(record, name)
        out[name] = str(value) if type(value) is Decimal else value
    return out


def _decode(cls: type, name: str, hint: Any, value: Any) -> Any:
    if value is None:
        if type(None) in typing.get_args(hint):
            return None
        raise ValueError(f"state: {cls.__name__}.{name} is null")
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if base is Decimal:
        return Decimal(str(value))
    if base is bool:
        if not isinstance(value, bool):
            raise ValueError(f"state: {cls.__name__}.{name}={value!r} is not a boolean")
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"state: {cls.__name__}.{name}={value!r} is not an integer")
        return value
    if base is str:
        if not isinstance(value, str):
            raise ValueError(f"state: {cls.__name__}.{name}={value!r} is not a string")
        return value
    raise ValueError(f"state: {cls.__name__}.{name} has an unsupported type {hint!r}")


def record_from_state(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a dataclass record written by `record_state`; raise ValueError on a bad field."""
    hints = _hints(cls)
    kwargs = {
        field.name: _decode(cls, field.name, hints[field.name], data[field.name])
        for field in dataclasses.fields(cls)  # type: ignore[arg-type]
        if field.name in data
    }
    return cls(**kwargs)
