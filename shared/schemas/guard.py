"""Messages of the protective side, exchanged through Redis and files (never PUB/SUB: they are
commands and state, DESIGN-RULES 15). Each is a frozen msgspec Struct encoded as msgpack (Redis)
or JSON (files in run/, readable by an operator).

    ExitPlan   trader -> guard: the stop / take-profit distances of one entry, stored before
               the entry is sent (Redis hash `Keys.exit_plans`, field = the entry's client id);
               the guard uses it only for the position that entry's fill opened, and deletes
               it when that position closes
    HaltState  guard -> everyone: new entries halted, why, and since when (file run/guard/halt.json
               is the truth, `Keys.guard_halt` its mirror)
    Alert      any process -> reporter: something a person must know (`Keys.alerts` stream, and an
               ERROR `alert` log line)
    GuardLease guard -> trader: the guard protects every position now; renewed after each full
               reconcile that found a resting stop for every position (`Keys.guard_lease`, with a
               PX TTL of `guard.lease_ttl_s`); no lease, no entry
    GuardPositions guard -> itself after a restart: each position's guard state, one
               GuardPosition per symbol (file run/guard/positions.json, procs/guard/memory.py)
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

SCHEMA_VERSION = 1
PLAN_VERSION = 2  # 2: distances and the entry's client id (1 held levels, bound to nothing)


class ExitPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What the trader wants done with the position one entry opens; the guard enforces it.

    Distances, not levels: the guard derives the stop and take-profit from the actual fill price
    (procs/guard/logic/plans.py), so slippage never puts the stop on the wrong side of the entry.
    """

    v: int = PLAN_VERSION
    symbol: str
    client_id: str  # the entry order's client id: the plan is for the position it opens, only
    signal_id: str  # the entry's signal id; protective orders derive their client ids from it
    side: str  # "BUY" (long) | "SELL" (short): the entry's side
    stop_loss_pct: Decimal  # stop distance from the fill price, % of it, on the losing side
    take_profit_pct: Decimal | None = None  # take-profit distance, % of the fill, winning side
    created_ms: int  # UTC ms the trader stored it


class HaltState(msgspec.Struct, frozen=True, kw_only=True):
    """Whether new entries are halted; only the operator re-arms after a kill-switch trip."""

    v: int = SCHEMA_VERSION
    is_halted: bool
    reason: str  # "", "kill_switch_drawdown", "kill_switch_daily_loss", "dms_silence", ...
    since_ms: int
    needs_operator: bool = False  # True: stays halted until `slt rearm`
    # The guard's flatten in progress under this halt ("" = none): a restarted guard resumes it.
    flatten_episode: str = ""
    flatten_round: int = 0  # the last round of that flatten reported (progress, for operators)
    # `slt rearm` after a kill-switch trip: UTC ms of the request that the guard restart its
    # equity watch (peak and day start) from the current equity; 0 = no request.
    equity_reset_ms: int = 0


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """One alert; `kind` names it (see README's alert table), `detail` is one sentence."""

    v: int = SCHEMA_VERSION
    kind: str
    source: str
    detail: str
    ts_ms: int
    symbol: str = ""


class GuardLease(msgspec.Struct, frozen=True, kw_only=True):
    """The guard's word that every position has its resting stop, good until `expires_ms`."""

    v: int = SCHEMA_VERSION
    pid: int  # the guard process that renewed it
    renewed_ms: int  # UTC ms of the reconcile that verified every position's stop
    expires_ms: int  # UTC ms after which it says nothing (the key's PX TTL ends then too)
    positions: int  # positions verified protected at renewed_ms


class GuardPosition(msgspec.Struct, frozen=True, kw_only=True):
    """What the guard knows of one position beyond exchange truth (issue 13, hole 12): restored
    by a restarted guard for the same position (same side, entry within a tick), so a partial
    take-profit is not taken twice and the holding clock runs from the opening."""

    v: int = SCHEMA_VERSION
    symbol: str
    side: str  # "LONG" | "SHORT"
    entry_price: Decimal  # the exchange's entry price when saved
    quantity: Decimal  # absolute position size when saved
    opened_at_ms: int  # UTC ms the position opened (or was first adopted): the holding clock
    stop_loss_price: Decimal  # the plan's stop
    take_profit_price: Decimal | None = None  # the plan's take-profit
    invalidation_price: Decimal | None = None  # the plan's invalidation level
    best_mark: Decimal  # most favourable mark seen (the trailing stop follows it)
    stop_price: Decimal  # the carried stop: the plan's, tightened by the trail
    has_taken_profit: bool = False  # the partial take-profit was executed
    has_cut_for_liquidation: bool = False  # the liquidation-buffer cut was executed
    signal_id: str  # protective and exit client ids derive from it
    plan_id: str = ""  # the trader's ExitPlan in use (its entry client id); "" = default plan
    exits_sent: int = 0  # exit orders sent (the attempt number of the next exit client id)
    saved_ms: int  # UTC ms written


class GuardPositions(msgspec.Struct, frozen=True, kw_only=True):
    """The file run/guard/positions.json: every open position's GuardPosition."""

    v: int = SCHEMA_VERSION
    positions: list[GuardPosition]


_msgpack = msgspec.msgpack.Encoder()
_json = msgspec.json.Encoder()
_plan = msgspec.msgpack.Decoder(ExitPlan)
_halt_msgpack = msgspec.msgpack.Decoder(HaltState)
_halt_json = msgspec.json.Decoder(HaltState)
_alert = msgspec.msgpack.Decoder(Alert)
_lease = msgspec.msgpack.Decoder(GuardLease)
_positions = msgspec.json.Decoder(GuardPositions)


def encode(value: ExitPlan | HaltState | Alert | GuardLease) -> bytes:
    """Return the msgpack form (Redis)."""
    return _msgpack.encode(value)


def encode_json(value: HaltState | GuardPositions) -> bytes:
    """Return the JSON form (files under run/)."""
    return _json.encode(value)


def decode_plan(raw: bytes) -> ExitPlan:
    """Decode an ExitPlan; raises msgspec.DecodeError / ValidationError for a malformed one."""
    return _plan.decode(raw)


def decode_halt(raw: bytes, is_json: bool = False) -> HaltState:
    """Decode a HaltState (msgpack, or JSON from the file); raises msgspec errors."""
    return (_halt_json if is_json else _halt_msgpack).decode(raw)


def decode_positions(raw: bytes) -> GuardPositions:
    """Decode the positions file (JSON); raises msgspec errors."""
    return _positions.decode(raw)


def decode_alert(raw: bytes) -> Alert:
    """Decode an Alert; raises msgspec errors."""
    return _alert.decode(raw)


def decode_lease(raw: bytes) -> GuardLease:
    """Decode a GuardLease; raises msgspec errors."""
    return _lease.decode(raw)
