"""The guard's stale-marks threshold (issue 13, hole 14): REST marks must come before the
dead-man's blind flatten, and REST-mode reconciles must leave the REST marks their weight."""

from __future__ import annotations

import pytest

from procs.guard.main import RECONCILE_WEIGHT, rest_mode_reconcile_interval_s
from shared.config import ConfigError, load_config


def test_default_marks_go_stale_after_30_s_well_before_the_blind_flatten() -> None:
    cfg = load_config("paper", env={})
    assert cfg.guard.marks_stale_after_s == 30.0 < cfg.dms.blind_after_s


def test_a_stale_marks_threshold_not_below_the_blind_deadline_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"guard\.marks_stale_after_s=60\.0 must be below"):
        load_config("paper", overlay={"guard": {"marks_stale_after_s": 60.0}}, env={})


def test_rest_mode_reconciles_stay_within_the_guards_reserved_weight() -> None:
    cfg = load_config("paper", env={})
    per_min = RECONCILE_WEIGHT * 60 / rest_mode_reconcile_interval_s(cfg)
    assert per_min == cfg.exchange.weight_limit_1m * cfg.exchange.guard_reserved_share == 480
