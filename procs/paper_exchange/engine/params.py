"""Request parameters as the server received them (BINANCE-API.md §2.1), read into typed values.

Every signed endpoint gets the merged query + body as `dict[str, str]`. An empty value counts
as absent (Binance: "was not sent, was empty/null, or malformed"); booleans are accepted in any
case (`true`, `True`, `TRUE` — python-binance stringifies Python booleans); decimals must be
plain decimal numbers, no exponent, no sign other than a leading minus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from decimal import Decimal
from typing import Any
from urllib.parse import unquote_plus

from procs.paper_exchange.errors import ApiError, invalid_value, missing_param, rejected

Params = dict[str, str]

_DECIMAL = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)$")
_INTEGER = re.compile(r"^-?\d+$")


def text(params: Params, name: str) -> str | None:
    """Return the parameter, or None when absent or empty."""
    value = params.get(name)
    return value if value else None


def required(params: Params, name: str) -> str:
    """Return a mandatory parameter; raise -1102 when it is absent or empty."""
    value = text(params, name)
    if value is None:
        raise missing_param(name)
    return value


def decimal(params: Params, name: str) -> Decimal | None:
    """Return an optional decimal parameter; raise -1102 when it is malformed."""
    value = text(params, name)
    if value is None:
        return None
    if not _DECIMAL.match(value):
        raise missing_param(name)
    return Decimal(value)


def required_decimal(params: Params, name: str) -> Decimal:
    """Return a mandatory decimal parameter; raise -1102 when absent, empty or malformed."""
    value = decimal(params, name)
    if value is None:
        raise missing_param(name)
    return value


def integer(params: Params, name: str) -> int | None:
    """Return an optional integer parameter; raise -1102 when it is malformed."""
    value = text(params, name)
    if value is None:
        return None
    if not _INTEGER.match(value):
        raise missing_param(name)
    return int(value)


def required_integer(params: Params, name: str) -> int:
    """Return a mandatory integer parameter; raise -1102 when absent, empty or malformed."""
    value = integer(params, name)
    if value is None:
        raise missing_param(name)
    return value


def boolean(params: Params, name: str, default: bool = False) -> bool:
    """Return a boolean parameter in any letter case; raise -1130 for other values."""
    value = text(params, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise invalid_value(name)
    return lowered == "true"


def choice(
    params: Params, name: str, allowed: Collection[str], error: ApiError, default: str | None
) -> str:
    """Return an enum parameter, `default` when absent; raise `error` for a value not allowed.

    A None `default` makes the parameter mandatory (-1102 when absent).
    """
    value = text(params, name)
    if value is None:
        if default is None:
            raise missing_param(name)
        return default
    if value not in allowed:
        raise error
    return value


def limit(params: Params, default: int, maximum: int) -> int:
    """Return the `limit` parameter clamped to 1..maximum (Binance caps silently)."""
    value = integer(params, "limit")
    if value is None:
        return default
    return max(1, min(value, maximum))


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def json_list(raw: str, name: str) -> list[Any]:
    """Parse a JSON array parameter (batchOrders, orderIdList), raw or still percent-encoded.

    The connector sends `batchOrders` `+`-encoded with numbers unquoted (§2.1); numbers are kept
    as their exact text so `0.001` never passes through a float.
    """
    for candidate in (raw, unquote_plus(raw)):
        try:
            parsed = json.loads(candidate, parse_float=str, parse_int=str)
        except ValueError:
            continue
        if isinstance(parsed, list):
            return parsed
    raise invalid_value(name)


def item_params(item: Any, name: str) -> Params:
    """Return one batchOrders element as string parameters, booleans as "true"/"false"."""
    if not isinstance(item, dict):
        raise invalid_value(name)
    return {str(k): _scalar_text(v) for k, v in item.items() if v is not None}


# -- order parameters shared by /fapi/v1/order, batchOrders and /fapi/v1/algoOrder (§5.9, §5.10)

TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTX")
STP_MODES = ("EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "NONE")
_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")


def client_id(params: Params, name: str) -> str | None:
    """Return newClientOrderId / clientAlgoId; raise -4015 unless it matches Binance's regex."""
    value = text(params, name)
    if value is not None and not _CLIENT_ID.match(value):
        raise rejected(-4015)
    return value


def check_position_side(params: Params, is_dual_side: bool = False) -> None:
    """Accept only BOTH in one-way mode: LONG/SHORT -4061, anything else -4060. In hedge mode
    every order is -4061: Binance requires LONG/SHORT there, and the paper exchange does not
    trade hedge positions (it only holds the mode)."""
    value = text(params, "positionSide")
    if value not in (None, "BOTH", "LONG", "SHORT"):
        raise rejected(-4060)
    if is_dual_side:
        raise rejected(-4061)
    if value is None or value == "BOTH":
        return
    raise rejected(-4061 if value in ("LONG", "SHORT") else -4060)


def response_type(params: Params) -> str:
    """Return newOrderRespType, ACK by default; raise -1136 for another value."""
    return choice(params, "newOrderRespType", ("ACK", "RESULT"), rejected(-1136), "ACK")


def stp_mode(params: Params, default: str) -> str:
    """Return selfTradePreventionMode (recorded only: the paper account never trades itself)."""
    return choice(params, "selfTradePreventionMode", STP_MODES, rejected(-5039), default)


def check_price_match(params: Params) -> None:
    """Refuse priceMatch other than NONE: the paper book has no depth to match against."""
    value = text(params, "priceMatch")
    if value is not None and value != "NONE":
        raise invalid_value("priceMatch")
