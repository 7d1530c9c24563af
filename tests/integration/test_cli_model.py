"""`slt evaluate`, `slt train` and `slt model` end to end, as subprocesses, on slices of the real
1m klines; the database commands against the private PostgreSQL (a fresh database per test)."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared import log
from shared.config import load_config
from shared.exchange.rest import ExchangeClient
from shared.learn import dataset
from tests.paper_exchange_fixture import PaperExchangeProcess, start_paper_exchange, write_overlay

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTCUSDT", "DOGEUSDT")
SLICE_BARS = 2000
FAST = ["--symbols", ",".join(SYMBOLS), "--rounds", "30"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last SLICE_BARS bars of each symbol's real file, in the same CSV layout."""
    out = tmp_path_factory.mktemp("klines")
    for symbol, bars in dataset.load_kline_csvs(dataset.DEFAULT_DATA_DIR, SYMBOLS).items():
        with gzip.open(out / f"{symbol}-1m-futures-slice.csv.gz", "wt") as f:
            f.write("open_time,open,high,low,close,volume,close_time\n")
            for r in bars[-SLICE_BARS:].tolist():
                open_ms = int(r[0])
                f.write(
                    f"{open_ms},{r[1]!r},{r[2]!r},{r[3]!r},{r[4]!r},{r[5]!r},{open_ms + 59_999}\n"
                )
    return out


@pytest.fixture
def config_file(database_dsn: str, tmp_path: Path) -> Path:
    """An SLT_CONFIG overlay pointing postgres.dsn at a fresh database."""
    path = tmp_path / "slt.toml"
    path.write_text(f'[postgres]\ndsn = "{database_dsn}"\n')
    return path


def _slt(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLT_")}
    env["SLT_MODE"] = "paper"
    if config is not None:
        env["SLT_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "procs.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def _field(stdout: str, name: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith(name + ":")]
    assert len(lines) == 1, f"{name!r} not printed once in:\n{stdout}"
    return lines[0][len(name) + 1 :].strip()


def test_evaluate_prints_held_out_metrics_backtest_and_random_baseline(data_dir: Path) -> None:
    done = _slt(
        "evaluate",
        "--data-dir",
        str(data_dir),
        *FAST,
        "--draws",
        "20",
        "--train-fraction",
        "0.7",
        "--threshold",
        "0.3",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert 0.0 <= float(_field(out, "AUC")) <= 1.0
    assert float(_field(out, "log-loss").split()[0]) > 0
    hit_rate = _field(out, "hit rate").split()[0]
    assert hit_rate == "nan" or 0.0 <= float(hit_rate) <= 1.0
    trades = int(_field(out, "trades").split()[0])
    assert trades >= 0
    pnl = float(_field(out, "PnL after fees").split()[0])
    assert np.isfinite(pnl)
    baseline = _field(out, "random baseline")
    assert "± " in baseline and "over 20 draws" in baseline and "model beats" in baseline
    assert "training seconds" in out


def test_train_without_save_prints_metrics_and_touches_no_database(data_dir: Path) -> None:
    done = _slt("train", "--data-dir", str(data_dir), *FAST)
    assert done.returncode == 0, done.stderr
    assert 0.0 <= float(_field(done.stdout, "AUC")) <= 1.0
    assert float(_field(done.stdout, "training seconds")) > 0
    assert "saved" not in done.stdout


def test_train_save_promote_then_model_list_promote_and_rollback(
    data_dir: Path, config_file: Path
) -> None:
    first = _slt(
        "train", "--data-dir", str(data_dir), *FAST, "--save", "--promote", config=config_file
    )
    assert first.returncode == 0, first.stderr
    assert "saved: model version 1 (candidate)" in first.stdout
    assert "model 1 no champion; challenger log-loss" in first.stdout
    # the same data and seed make the same model: its log-loss is not lower, so it is rejected
    second = _slt(
        "train", "--data-dir", str(data_dir), *FAST, "--save", "--promote", config=config_file
    )
    assert second.returncode == 0, second.stderr
    assert "model 2 kept champion" in second.stdout
    listed = _slt("model", "list", config=config_file)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [("1", "champion"), ("2", "rejected")]
    promoted = _slt("model", "promote", "2", config=config_file)
    assert promoted.returncode == 0, promoted.stderr
    assert "model 2 is the champion" in promoted.stdout
    rolled = _slt("model", "rollback", config=config_file)
    assert rolled.returncode == 0, rolled.stderr
    assert "model 1 is the champion again" in rolled.stdout
    missing = _slt("model", "promote", "9", config=config_file)
    assert missing.returncode == 1
    assert "model 9 does not exist" in missing.stderr


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaperExchangeProcess]:
    process = start_paper_exchange(tmp_path_factory.mktemp("paper"))
    yield process
    process.stop()


def test_fetch_history_pages_back_to_the_bars_asked_all_closed_and_contiguous(
    paper: PaperExchangeProcess,
) -> None:
    cfg = dataclasses.replace(
        load_config("paper", env={}).exchange, rest_url=paper.rest_url, ws_url=paper.ws_url
    )

    async def fetch() -> tuple[dict[str, np.ndarray], int]:
        async with ExchangeClient(cfg, logger=log.EventLogger("model-test")) as client:
            got = await dataset.fetch_history(client, ["BTCUSDT", "ETHUSDT"], 3200)  # 3 pages
            return got, client.transport.server_now_ms()

    histories, now_ms = asyncio.run(fetch())
    for bars in histories.values():
        assert bars.shape == (3200, 6)
        assert np.all(np.diff(bars[:, 0]) == 60_000)
        assert bars[-1, 0] + 60_000 <= now_ms  # the last bar is closed
        assert now_ms - bars[-1, 0] < 3 * 60_000  # and it is the latest closed bar
        assert np.all(bars[:, 2] >= bars[:, 3])


def test_train_from_exchange_prints_metrics(paper: PaperExchangeProcess, tmp_path: Path) -> None:
    overlay = tmp_path / "exchange.toml"
    write_overlay(overlay, {"exchange": {"rest_url": paper.rest_url, "ws_url": paper.ws_url}})
    done = _slt(
        "train",
        "--from-exchange",
        "--bars",
        "2500",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--rounds",
        "30",
        config=overlay,
    )
    assert done.returncode == 0, done.stderr
    assert "data: 2 symbols, 5000 bars" in done.stdout
    assert 0.0 <= float(_field(done.stdout, "AUC")) <= 1.0


def test_train_with_too_little_data_prints_one_line_and_exits_1(data_dir: Path) -> None:
    done = _slt("train", "--data-dir", str(data_dir), *FAST, "--bars", "200")
    assert done.returncode == 1
    assert done.stderr.startswith("slt: ") and len(done.stderr.splitlines()) == 1
