"""The halt flag: while it is set, no process opens a new position; exits are still managed.

The truth is a JSON file, `<run.dir>/guard/halt.json` (the guard must not depend on Redis, rule 4),
written atomically (temp file, fsync, rename) so a crash never leaves half a flag. Redis key
`Keys.guard_halt` mirrors it for the trader and the status page. A missing file means not halted;
an unreadable one means halted (fail safe) with reason "halt_file_unreadable".

Reasons that need the operator (`needs_operator`): the kill switch, the dead-man's switch, an
operator's flatten and an unreadable equity file. They stay set until `slt rearm`; the trader's
silence halt clears itself when the trader beats again.

The record also carries the guard's flatten in progress (`flatten_episode`, `flatten_round`), in
the same atomic write as the halt it belongs to, so a guard killed mid-flatten is resumed by the
next one; and `equity_reset_ms`, the operator's request (`slt rearm` after a kill-switch trip)
that the guard restart its equity watch from the current equity.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from shared.schemas import guard as g
from shared.store.durable import save_atomically

OPERATOR_REASONS = (
    "kill_switch_drawdown",
    "kill_switch_daily_loss",
    "operator_flatten",
    "dms_silence",
    "dms_blind",
    "equity_file_unreadable",
)
# Halts after which `slt rearm` also restarts the guard's equity watch from the current equity:
# without it the next check would trip again on the same loss.
EQUITY_RESET_REASONS = ("kill_switch_drawdown", "kill_switch_daily_loss", "equity_file_unreadable")


def halt_path(run_dir: str | Path) -> Path:
    """Return the halt file of a stack."""
    return Path(run_dir) / "guard" / "halt.json"


def load_halt(path: Path) -> g.HaltState:
    """Return the flag; not halted when the file is missing, halted when it is unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return g.HaltState(is_halted=False, reason="", since_ms=0)
    except OSError:
        return g.HaltState(
            is_halted=True, reason="halt_file_unreadable", since_ms=0, needs_operator=True
        )
    try:
        return g.decode_halt(raw, is_json=True)
    except msgspec.DecodeError:
        return g.HaltState(
            is_halted=True, reason="halt_file_unreadable", since_ms=0, needs_operator=True
        )


def save_halt(path: Path, state: g.HaltState) -> None:
    """Write the flag atomically and durably (shared/store/durable.py)."""
    save_atomically(path, g.encode_json(state))


def halted(reason: str, now_ms: int) -> g.HaltState:
    """Return a set flag for `reason` (operator re-arm needed for OPERATOR_REASONS)."""
    return g.HaltState(
        is_halted=True, reason=reason, since_ms=now_ms, needs_operator=reason in OPERATOR_REASONS
    )


def armed() -> g.HaltState:
    """Return a cleared flag."""
    return g.HaltState(is_halted=False, reason="", since_ms=0)


def rearmed(before: g.HaltState, now_ms: int) -> g.HaltState:
    """Return the cleared flag `slt rearm` writes over `before`: after a kill-switch trip (or an
    unreadable equity file) it asks the guard to restart its equity watch (`equity_reset_ms`);
    an unfinished flatten episode is dropped (the operator's re-arm ends it)."""
    reset_ms = now_ms if before.reason in EQUITY_RESET_REASONS else before.equity_reset_ms
    return g.HaltState(is_halted=False, reason="", since_ms=0, equity_reset_ms=reset_ms)
