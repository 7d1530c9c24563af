"""Binance USDT-M payloads: every REST reply and WebSocket event the client and feed decode.

Written from BINANCE-API.md §4-§7 and the real payloads in tests/fixtures/binance/, never from
the paper exchange's code. Binance's wire names (`orderId`, `positionAmt`, `e`, `E`, `k`, …)
appear only in the private `_…Wire` structs of this package, each commented; explicit `to_*`
functions convert them into the readable structs the processes use, whose fields carry their
units in their names and `Decimal` for every price, quantity and amount.

Decoding is strict: types are checked, unknown fields are ignored, and a mismatch raises
`msgspec.ValidationError` naming the field path (`Expected int, got str - at $[0].orderId`).
Ids and times must be JSON integers, as Binance sends them (§4): the ccxt test harness's habit
of stringifying them is not accepted, so a simulator doing the same fails loudly here. Where the
wire type genuinely varies, the field is the union and `to_*` normalises it
(`listenKeyExpired.E` string or int, the algo-cancel `code` "200", `income.tradeId`).
Fields a real or documented reply omits are optional.

Modules: `base` (Codec, bases), `market` (errors, time, exchangeInfo, klines, premiumIndex,
small control replies), `trading` (account, positions, orders, algo orders, fills, income),
`streams` (market streams, the combined-stream envelope, `decode_event`, the feed's one-pass
`decode_market_frame`, `is_open_kline_frame` and `is_price`), `userdata`
(ACCOUNT_UPDATE, ORDER_TRADE_UPDATE, ALGO_UPDATE, TRADE_LITE, listenKeyExpired, MARGIN_CALL,
ACCOUNT_CONFIG_UPDATE).
"""

from shared.schemas.binance.base import Codec, Readable
from shared.schemas.binance.market import (
    Countdown,
    ErrorReplyWire,
    ExchangeInfo,
    Kline,
    Leverage,
    LeverageBracket,
    MarkPrice,
    SymbolBrackets,
    SymbolSpec,
    decode_code_reply,
    decode_countdown,
    decode_error_reply,
    decode_exchange_info,
    decode_is_hedge_mode,
    decode_kline_rows,
    decode_leverage,
    decode_listen_key,
    decode_mark_price,
    decode_mark_prices,
    decode_server_time_ms,
    decode_symbol_brackets,
    to_klines,
)
from shared.schemas.binance.streams import (
    KNOWN_EVENT_TYPES,
    BookTicker,
    KlineUpdate,
    MarketEvent,
    MarkTick,
    MarkTicks,
    StreamEvent,
    UnknownEvent,
    decode_event,
    decode_market_frame,
    event_type,
    is_open_kline_frame,
    is_price,
    unwrap,
)
from shared.schemas.binance.trading import (
    Account,
    AccountPosition,
    AlgoCancel,
    AlgoOrder,
    AssetBalance,
    Income,
    Order,
    Position,
    UserTrade,
    decode_account,
    decode_algo_cancel,
    decode_algo_order,
    decode_algo_orders,
    decode_income,
    decode_order,
    decode_orders,
    decode_positions,
    decode_user_trades,
)
from shared.schemas.binance.userdata import (
    AccountConfigUpdate,
    AccountUpdate,
    AlgoUpdate,
    BalanceChange,
    ListenKeyExpired,
    MarginCall,
    MarginCallPosition,
    OrderUpdate,
    PositionChange,
    TradeLite,
)

__all__ = [
    "KNOWN_EVENT_TYPES",
    "Account",
    "AccountConfigUpdate",
    "AccountPosition",
    "AccountUpdate",
    "AlgoCancel",
    "AlgoOrder",
    "AlgoUpdate",
    "AssetBalance",
    "BalanceChange",
    "BookTicker",
    "Codec",
    "Countdown",
    "ErrorReplyWire",
    "ExchangeInfo",
    "Income",
    "Kline",
    "KlineUpdate",
    "Leverage",
    "LeverageBracket",
    "ListenKeyExpired",
    "MarginCall",
    "MarginCallPosition",
    "MarkPrice",
    "MarkTick",
    "MarkTicks",
    "MarketEvent",
    "Order",
    "OrderUpdate",
    "Position",
    "PositionChange",
    "Readable",
    "StreamEvent",
    "SymbolBrackets",
    "SymbolSpec",
    "TradeLite",
    "UnknownEvent",
    "UserTrade",
    "decode_account",
    "decode_algo_cancel",
    "decode_algo_order",
    "decode_algo_orders",
    "decode_code_reply",
    "decode_countdown",
    "decode_error_reply",
    "decode_event",
    "decode_exchange_info",
    "decode_income",
    "decode_is_hedge_mode",
    "decode_kline_rows",
    "decode_leverage",
    "decode_listen_key",
    "decode_mark_price",
    "decode_mark_prices",
    "decode_market_frame",
    "decode_order",
    "decode_orders",
    "decode_positions",
    "decode_server_time_ms",
    "decode_symbol_brackets",
    "decode_user_trades",
    "event_type",
    "is_open_kline_frame",
    "is_price",
    "to_klines",
    "unwrap",
]
