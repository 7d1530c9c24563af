"""A feed stand-in for the shm tests, run as a subprocess: appends bars derived from a counter.

    python -m tests.integration.shm_writer <instance> <symbols,comma,separated> <window> <bars>

Bar k of every symbol is `bar(k)`: open time k minutes, and every other column k plus a fixed
fraction, so a reader can check each row's internal consistency. The mark is k + 0.5 at time k.
It continues after the newest bar already in the segment (a restart after kill -9), prints
`ready <is_new> <first k>` and appends `bars` bars per symbol (-1: until killed).
"""

from __future__ import annotations

import sys

from shared.shm.rings import COLUMN_COUNT, KlineWriter

MINUTE_MS = 60_000


def bar(k: int) -> list[float]:
    """Return row k: open time k minutes, column j (j >= 1) = k + j/16 (exact in binary)."""
    return [float(k * MINUTE_MS)] + [k + j / 16 for j in range(1, COLUMN_COUNT)]


def main(argv: list[str]) -> int:
    instance, symbols, window, bars = argv[0], argv[1].split(","), int(argv[2]), int(argv[3])
    writer = KlineWriter.open(instance, symbols, window)
    last = writer.last_open_time_ms(symbols[0])
    k = 0 if last is None else last // MINUTE_MS + 1
    print(f"ready {writer.is_new} {k}", flush=True)
    end = k + bars if bars >= 0 else -1
    while k != end:
        row = bar(k)
        for symbol in symbols:
            writer.append(symbol, row)
            if k % 2:
                writer.set_mark(symbol, k + 0.5, k)
        if not k % 2:  # every other bar: all marks in one batch (the feed's !markPrice@arr)
            writer.set_marks(symbols, [k + 0.5] * len(symbols), [k] * len(symbols))
        k += 1
    writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
