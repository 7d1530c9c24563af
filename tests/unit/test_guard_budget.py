"""The guard warns at start when its periodic full reconciles alone exceed its reserved weight."""

from __future__ import annotations

import pytest

from procs.guard.main import warn_weight_budget
from shared import log
from shared.config import load_config


def test_default_reconcile_interval_fits_the_guards_reserved_weight(
    capsys: pytest.CaptureFixture[str],
) -> None:
    warn_weight_budget(load_config("paper", env={}), log.setup("guard"))
    assert "guard_weight_budget_exceeded" not in capsys.readouterr().out


def test_reconciling_every_two_seconds_is_reported_with_both_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = load_config("paper", overlay={"guard": {"reconcile_interval_s": 2.0}}, env={})
    warn_weight_budget(cfg, log.setup("guard"))
    out = capsys.readouterr().out
    assert "guard_weight_budget_exceeded" in out
    assert "reconcile_weight_per_min=1500" in out and "reserved_per_min=480" in out
