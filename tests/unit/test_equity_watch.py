"""The kill switch's memory (issue 13, holes 4 and 8): the equity watch survives a save and load,
`slt rearm` after a trip restarts it from the current equity, transfers are netted out, and the
halt record carries the flatten episode a restarted guard resumes."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import msgspec
import pytest

from procs.guard.equityfile import EquityFileError, equity_path, load_watch, save_watch
from procs.guard.logic.risk import (
    DAY_MS,
    Transfer,
    kill_switch_trip,
    needs_reset,
    net_transfers,
    reset_watch,
    watch_equity,
)
from shared.config.ops import KillSwitchConfig
from shared.store import halt as haltfile

DAY0 = 1_699_920_000_000  # 2023-11-14T00:00:00Z
NOON = DAY0 + DAY_MS // 2
CFG = KillSwitchConfig()  # drawdown 20 %, daily loss 10 %


def test_equity_peak_survives_a_save_and_load_and_still_trips_at_21_pct(tmp_path: Path) -> None:
    path = equity_path(tmp_path / "run")
    watch = watch_equity(None, D("10000"), NOON, balance_ms=NOON)
    watch = watch_equity(watch, D("9000"), NOON + 1_000, balance_ms=NOON + 900)
    save_watch(path, watch)
    loaded = load_watch(path)  # what a restarted guard starts from
    assert loaded == watch and loaded is not None
    assert json.loads(path.read_text())["peak_equity"] == "10000"
    after_restart = watch_equity(loaded, D("7900"), NOON + 2_000, balance_ms=NOON + 1_900)
    trip = kill_switch_trip(after_restart, D("7900"), CFG)
    assert trip is not None and trip[0] == "kill_switch_drawdown"
    assert "21.00% below the peak 10000" in trip[1]


def test_a_missing_equity_file_is_no_watch_and_a_corrupt_one_raises(tmp_path: Path) -> None:
    path = equity_path(tmp_path)
    assert load_watch(path) is None
    path.parent.mkdir(parents=True)
    path.write_text('{"peak_equity": "10')
    with pytest.raises(EquityFileError, match="malformed"):
        load_watch(path)


def test_slt_rearm_after_a_drawdown_trip_resets_the_peak_to_the_current_equity() -> None:
    watch = watch_equity(None, D("10000"), NOON, balance_ms=NOON)
    assert kill_switch_trip(watch, D("7900"), CFG) is not None
    tripped = haltfile.halted("kill_switch_drawdown", NOON + 1)
    rearm = haltfile.rearmed(tripped, NOON + 5_000)
    assert not rearm.is_halted and rearm.equity_reset_ms == NOON + 5_000
    assert needs_reset(watch, rearm.equity_reset_ms)
    reset = reset_watch(watch, D("7900"), NOON + 6_000, NOON + 5_500, rearm.equity_reset_ms)
    assert reset.peak_equity == D("7900") and reset.day_start_equity == D("7900")
    assert kill_switch_trip(reset, D("7900"), CFG) is None  # the next check does not trip again
    assert not needs_reset(reset, rearm.equity_reset_ms)  # applied once
    # A later 20 % loss from the new peak trips again.
    assert kill_switch_trip(watch_equity(reset, D("6320"), NOON + 7_000), D("6320"), CFG)


def test_slt_rearm_after_a_daily_loss_trip_resets_the_day_start_too() -> None:
    watch = watch_equity(None, D("10000"), NOON, balance_ms=NOON)
    tripped = haltfile.halted("kill_switch_daily_loss", NOON + 1)
    rearm = haltfile.rearmed(tripped, NOON + 2)
    reset = reset_watch(watch, D("8900"), NOON + 3, NOON + 3, rearm.equity_reset_ms)
    assert kill_switch_trip(reset, D("8900"), CFG) is None


def test_slt_rearm_after_a_silence_halt_keeps_the_peak_and_drops_the_flatten() -> None:
    dms = msgspec.structs.replace(haltfile.halted("dms_silence", NOON), flatten_episode="F1")
    rearm = haltfile.rearmed(dms, NOON + 10)
    assert rearm.equity_reset_ms == 0 and rearm.flatten_episode == ""
    assert not needs_reset(watch_equity(None, D("100"), NOON), rearm.equity_reset_ms)


def test_a_transfer_out_of_the_wallet_does_not_trip_the_drawdown() -> None:
    watch = watch_equity(None, D("10000"), NOON, balance_ms=NOON)
    withdrawal = Transfer(D("-5000"), NOON + 100)
    # The sample after the withdrawal: 50 % less equity, no loss at all.
    seen = watch_equity(watch, D("5000"), NOON + 200, balance_ms=NOON + 100)
    assert kill_switch_trip(seen, D("5000"), CFG) is not None  # what the guard did before
    netted = net_transfers(seen, [withdrawal], NOON + 100)
    assert netted.peak_equity == D("5000") and netted.day_start_equity == D("5000")
    assert kill_switch_trip(netted, D("5000"), CFG) is None
    # A real 20 % loss after the transfer still trips.
    trip = kill_switch_trip(netted, D("4000"), CFG)
    assert trip is not None and trip[0] == "kill_switch_drawdown"


def test_a_deposit_netted_late_does_not_move_a_peak_read_after_it() -> None:
    watch = watch_equity(None, D("10000"), NOON, balance_ms=NOON)
    deposit = Transfer(D("5000"), NOON + 100)
    # The deposit is in the next sample (balance time after it), which raises the peak.
    seen = watch_equity(watch, D("15000"), NOON + 200, balance_ms=NOON + 100)
    netted = net_transfers(seen, [deposit], NOON + 100)
    assert netted.peak_equity == D("15000")  # already holds the deposit
    assert netted.day_start_equity == D("15000")  # the day began before it: moved up
    assert kill_switch_trip(netted, D("15000"), CFG) is None


def test_a_deposit_netted_before_the_sample_lifts_the_marks_read_before_it() -> None:
    watch = watch_equity(None, D("10000"), NOON, balance_ms=NOON)
    netted = net_transfers(watch, [Transfer(D("5000"), NOON + 100)], NOON + 100)
    assert netted.peak_equity == D("15000")
    # 14000 after the deposit is a 6.7 % drawdown, not a new high.
    assert watch_equity(netted, D("14000"), NOON + 200).peak_equity == D("15000")


def test_net_transfers_counts_each_transfer_once_and_only_up_to_through_ms() -> None:
    watch = watch_equity(None, D("1000"), NOON, balance_ms=NOON)
    rows = [Transfer(D("-100"), NOON + 10), Transfer(D("-50"), NOON + 30)]
    once = net_transfers(watch, rows, NOON + 20)  # the second is not covered yet
    assert once.peak_equity == D("900") and once.transfers_through_ms == NOON + 20
    twice = net_transfers(once, rows, NOON + 30)
    assert twice.peak_equity == D("850")
    assert net_transfers(twice, rows, NOON + 30) == twice


def test_halt_record_carries_the_flatten_episode_and_reads_an_old_record(tmp_path: Path) -> None:
    path = haltfile.halt_path(tmp_path)
    state = msgspec.structs.replace(
        haltfile.halted("kill_switch_drawdown", NOON), flatten_episode="F17", flatten_round=3
    )
    haltfile.save_halt(path, state)
    assert haltfile.load_halt(path) == state
    path.write_text('{"v":1,"is_halted":true,"reason":"dms_silence","since_ms":5}')
    old = haltfile.load_halt(path)
    assert old.flatten_episode == "" and old.equity_reset_ms == 0 and old.is_halted
