"""Which symbols of a REST snapshot the guard acts on (issue 13, hole 9): a snapshot read before
the symbol's last user-data event is not believed, and a flat symbol is settled (its stops
cancelled) only on the second believed flat read in a row."""

from __future__ import annotations

from decimal import Decimal

from shared.core.reconcile import Belief, FlatRun, believe_snapshot

BTC = "BTCUSDT"


def test_a_read_started_before_the_fill_event_is_not_believed() -> None:
    """The per-symbol reconcile right after a fill reads a positionRisk without the fill."""
    got = believe_snapshot(
        [BTC], {}, read_started_ns=1_000, last_event_ns={BTC: 1_500}, flat_runs={}
    )
    assert got == Belief(settled=(), held_back=(BTC,), flat_runs={})


def test_a_read_started_at_the_same_instant_as_the_event_is_not_believed() -> None:
    got = believe_snapshot([BTC], {}, 1_500, {BTC: 1_500}, {})
    assert got.held_back == (BTC,)


def test_a_stale_read_keeps_the_flat_run_as_it_was() -> None:
    runs = {BTC: FlatRun(1, 2_000)}
    got = believe_snapshot([BTC], {}, 1_000, {BTC: 1_500}, runs)
    assert got.flat_runs == runs and got.held_back == (BTC,)


def test_one_flat_read_does_not_settle_and_two_do() -> None:
    first = believe_snapshot([BTC], {}, 2_000, {BTC: 1_500}, {})
    assert first == Belief((), (BTC,), {BTC: FlatRun(1, 2_000)})
    second = believe_snapshot([BTC], {}, 3_000, {BTC: 1_500}, first.flat_runs)
    assert second == Belief((BTC,), (), {BTC: FlatRun(2, 2_000)})


def test_an_open_position_is_settled_at_once_and_ends_the_flat_run() -> None:
    got = believe_snapshot([BTC], {BTC: Decimal("0.02")}, 3_000, {}, {BTC: FlatRun(1, 2_000)})
    assert got == Belief((BTC,), (), {})


def test_an_event_between_two_flat_reads_restarts_the_run() -> None:
    """A flat read, then a fill, then a read that (lagging) still shows flat: not settled."""
    first = believe_snapshot([BTC], {}, 2_000, {}, {})
    second = believe_snapshot([BTC], {}, 3_000, {BTC: 2_500}, first.flat_runs)
    assert second == Belief((), (BTC,), {BTC: FlatRun(1, 3_000)})


def test_a_long_settled_flat_run_does_not_survive_a_later_event() -> None:
    """Flat for long (run of 5), then a fill: the next flat read is the first of a new run."""
    got = believe_snapshot([BTC], {}, 9_000, {BTC: 8_000}, {BTC: FlatRun(5, 1_000)})
    assert got == Belief((), (BTC,), {BTC: FlatRun(1, 9_000)})


def test_symbols_are_judged_each_on_its_own_events_and_others_runs_are_kept() -> None:
    runs = {"XRPUSDT": FlatRun(1, 10)}
    got = believe_snapshot(
        [BTC, "ETHUSDT"],
        {"ETHUSDT": Decimal("-1")},
        1_000,
        {BTC: 1_200, "ETHUSDT": 800},
        runs,
    )
    assert got == Belief(("ETHUSDT",), (BTC,), runs)
