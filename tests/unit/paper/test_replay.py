"""load_replay: exact values from the shipped files; one-sentence errors naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.paper_exchange.market.replay import DataError, load_replay

REPO = Path(__file__).resolve().parents[3]
DATA_DIR = REPO / "procs" / "paper_exchange" / "data"
MINUTE = 60_000


def test_replay_keeps_exact_decimal_values() -> None:
    btc = load_replay(DATA_DIR, ["BTCUSDT"])["BTCUSDT"]
    # First line: 1748217600000,108956,109002.6,108901.4,108901.4,139.177,1748217659999
    assert btc.open_time_ms[0] == 1_748_217_600_000 and btc.n_rows == 41_760
    assert btc.ohlc_units[0].tolist() == [1_089_560, 1_090_026, 1_089_014, 1_089_014]
    assert (btc.price_decimals, int(btc.volume_units[0]), btc.volume_decimals) == (1, 139_177, 3)
    assert btc.funding_rate_units[:2].tolist() == [7331, 10000] and btc.funding_decimals == 8


KLINES = "open_time,open,high,low,close,volume,close_time\n"
ROW = "{t},10.5,11,10,10.75,3,{c}\n"


def write_data(
    tmp_path: Path, klines: str, funding: str = "funding_time,funding_rate\n0,0.0001\n"
) -> None:
    (tmp_path / "klines").mkdir()
    (tmp_path / "funding").mkdir()
    (tmp_path / "klines" / "XUSDT-1m-futures-x.csv").write_text(klines)
    (tmp_path / "funding" / "XUSDT-funding-rate-x.csv").write_text(funding)


def rows(count: int) -> str:
    return "".join(ROW.format(t=i * MINUTE, c=i * MINUTE + 59_999) for i in range(count))


def test_replay_reads_plain_csv_too(tmp_path: Path) -> None:
    write_data(tmp_path, KLINES + rows(3))
    data = load_replay(tmp_path, ["XUSDT"])["XUSDT"]
    assert data.ohlc_units[2].tolist() == [1050, 1100, 1000, 1075] and data.price_decimals == 2


@pytest.mark.parametrize(
    ("klines", "message"),
    [
        (KLINES + rows(2) + "120000,1,2,x,1,1,179999\n", r"line 4 low='x' is not a number"),
        (KLINES + rows(1) + "60000,1,2,1,1,119999\n", r"line 3 has 6 fields, expected 7"),
        (KLINES + rows(1) + ROW.format(t=120_000, c=179_999), r"line 3 open_time does not follow"),
        (KLINES + "0,10,9,8,9,1,59999\n", r"line 2 high is below open, low or close"),
        ("time,o,h,l,c\n", r"line 1 is 'time,o,h,l,c', expected header"),
    ],
)
def test_replay_error_names_the_file_and_line(tmp_path: Path, klines: str, message: str) -> None:
    write_data(tmp_path, klines)
    with pytest.raises(DataError, match=r"XUSDT-1m-futures-x\.csv " + message):
        load_replay(tmp_path, ["XUSDT"])


def test_replay_error_names_a_missing_file(tmp_path: Path) -> None:
    write_data(tmp_path, KLINES + rows(2))
    with pytest.raises(DataError, match=r"klines/YUSDT-1m-futures-\*\.csv\[\.gz\] matches no file"):
        load_replay(tmp_path, ["YUSDT"])
