"""Binance error replies of the paper exchange, with Binance's codes and exact messages.

Class tree:
    Exception
    └── ApiError   the exchange refuses the request: HTTP status, Binance code, Binance message

An endpoint raises `ApiError`; the server answers `ApiError.http_status` with `ApiError.body()`.
Inside `POST /fapi/v1/batchOrders` the same error becomes one element of the reply array.
Messages come from BINANCE-API.md §3.4 and Binance's USDⓈ-M error-code page; where the digest
and the page differ on a message, the page wins only where the digest marks the text unconfirmed.
"""

from __future__ import annotations

# Codes whose message takes no argument (BINANCE-API.md §3.4; Binance error-code page).
MESSAGES: dict[int, str] = {
    -1111: "Precision is over the maximum defined for this asset.",
    -1115: "Invalid timeInForce.",
    -1116: "Invalid orderType.",
    -1117: "Invalid side.",
    -1121: "Invalid symbol.",
    -1128: "Combination of optional parameters invalid.",
    -1136: "Invalid newOrderRespType",
    -2011: "Unknown order sent.",
    -2013: "Order does not exist.",
    -2019: "Margin is insufficient.",
    -2021: "Order would immediately trigger.",
    -2022: "ReduceOnly Order is rejected.",
    -2025: "Reach max open order limit.",
    -2027: "Exceeded the maximum allowable position at current leverage.",
    -2028: "Leverage is smaller than permitted: insufficient margin balance.",
    -4001: "Price less than 0.",
    -4002: "Price greater than max price.",
    -4003: "Quantity less than zero.",
    -4004: "Quantity less than min quantity.",
    -4005: "Quantity greater than max quantity.",
    -4013: "Price less than min price.",
    -4014: "Price not increased by tick size.",
    -4015: "Client order id is not valid.",
    -4016: "Price is higher than mark price multiplier cap.",
    -4023: "Qty not increased by step size.",
    -4024: "Price is lower than mark price multiplier floor.",
    -4031: "Invalid parameter working type",
    -4045: "Reach max stop order limit.",
    -4046: "No need to change margin type.",
    -4047: "Margin type cannot be changed if there exists open orders.",
    -4048: "Margin type cannot be changed if there exists position.",
    -4059: "No need to change position side.",
    -4060: "Invalid position side.",
    -4061: "Order's position side does not match user's setting.",
    -4067: "Position side cannot be changed if there exists open orders.",
    -4068: "Position side cannot be changed if there exists position.",
    -4082: "Invalid number of batch place orders.",
    # The digest marks "ClientOrderId is duplicated." unconfirmed; the error-code page has this.
    -4116: "clientOrderId is duplicated",
    -4120: (
        "Order type not supported for this endpoint. "
        "Please use the Algo Order API endpoints instead."
    ),
    # A second closePosition stop (or take-profit) in one direction; the exact text as Binance
    # sends it, captured in public client code and bot logs (issue 13).
    -4130: (
        "An open stop or take profit order with GTE and closePosition in the direction is existing."
    ),
    -4135: "Invalid activation price",
    -4137: "Quantity must be zero with closePosition equals true",
    -5021: "Due to the order could not be filled immediately, the FOK order has been rejected.",
    -5022: "Due to the order could not be executed as maker, the Post Only order will be rejected.",
    -5039: "Invalid self trade prevention mode",
}


class ApiError(Exception):
    """A request the exchange refuses, answered as HTTP `http_status` with `{"code", "msg"}`."""

    def __init__(self, http_status: int, code: int, msg: str) -> None:
        super().__init__(f"{code} {msg}")
        self.http_status = http_status
        self.code = code
        self.msg = msg

    def body(self) -> dict[str, object]:
        """Return the JSON error body Binance sends: `{"code": <int>, "msg": <str>}`."""
        return {"code": self.code, "msg": self.msg}


def rejected(code: int) -> ApiError:
    """Return the HTTP 400 error for a code whose message takes no argument (see MESSAGES)."""
    return ApiError(400, code, MESSAGES[code])


def missing_param(name: str) -> ApiError:
    """-1102 for a mandatory parameter that is absent, empty or malformed."""
    return ApiError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def missing_either(first: str, second: str) -> ApiError:
    """-1102 when one of two alternative parameters (orderId / origClientOrderId) is required."""
    return ApiError(
        400, -1102, f"Param '{first}' or '{second}' must be sent, but both were empty/null!"
    )


def not_required(name: str) -> ApiError:
    """-1106 for a parameter that must not be sent with the others."""
    return ApiError(400, -1106, f"Parameter '{name}' sent when not required.")


def invalid_value(name: str) -> ApiError:
    """-1130 for a parameter whose value is outside what the endpoint accepts."""
    return ApiError(400, -1130, f"Data sent for parameter '{name}' is not valid.")


def min_notional(notional: str) -> ApiError:
    """-4164 with the symbol's MIN_NOTIONAL `notional` exactly as exchangeInfo spells it."""
    return ApiError(
        400,
        -4164,
        f"Order's notional must be no smaller than {notional} (unless you choose reduce only).",
    )


def invalid_leverage(leverage: str) -> ApiError:
    """-4028 for a leverage outside 1..the symbol's first-bracket initialLeverage."""
    return ApiError(400, -4028, f"Leverage {leverage} is not valid")


def close_position_type(order_type: str) -> ApiError:
    """-4136 for closePosition=true on a type other than STOP_MARKET / TAKE_PROFIT_MARKET."""
    return ApiError(
        400, -4136, f"Target strategy invalid for orderType {order_type},closePosition true"
    )
