"""Host build vs a QEMU board on recorded data, every window record the monitor emits compared
as bytes (all fields, floats as bits): a stricter check than ``cmp`` of two predictions.csv,
which round scores and confidence. It reruns the files of an ``aiot evaluate --target
qemu:BOARD`` run with that run's model, firmware image and monitor knobs (its report.json).

Run (from toolkit/): python -m lab.window_parity DATA FORMAT OUT/report.json [--limit N]
e.g. python -m lab.window_parity ../shared/data/tep tep build/tep-qemu/report.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def window_records(model: Path, window: int, target: str, knobs: dict, firmware: str | None, name: str,
                   series, start: int) -> np.ndarray:
    """Every window output of one file on ``target``: commissioned on its first ``start``
    rows, then the rest pushed (one run of rising time: a clock that steps back is refused)."""
    from aiot.evaluate.monitor_device import MonitorDevice

    dev = MonitorDevice(model, window, target, knobs, firmware)
    dev.commission(series.head(start))
    ts = dev._ms(series, slice(0, series.rows))  # the times and values MonitorDevice streams
    if (np.diff(ts) < 0).any():
        raise SystemExit(f"{name}: its clock steps back; this check pushes one run of rising time")
    try:
        rest = dev.dev.push(ts[start:], dev._values(series, slice(start, series.rows)))
    finally:
        dev.close()
    return np.concatenate([dev._pending, rest])  # the commissioning rows' outputs, then the rest's


def main(argv: list[str] | None = None) -> int:
    from aiot.data import readers
    from aiot.evaluate.pipeline import Settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("format", choices=["skab", "tep", "nab", "generic"])
    ap.add_argument("report", help="report.json of an aiot evaluate --target qemu:BOARD run (fleet model)")
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args(argv)
    rep = json.loads(Path(a.report).read_text())
    target, firmware = rep["settings"]["target"], rep["settings"]["firmware"]
    if not target.startswith("qemu:") or not firmware:
        raise SystemExit(f"{a.report}: not a fleet-model run on a QEMU board (target {target})")
    model, knobs, window = Path(rep["model"]["package"]), rep["settings"]["knobs"], rep["settings"]["window"]
    settings = Settings(format=a.format, target="host", window=window, train_rows=rep["settings"]["train_rows"],
                        train_fraction=rep["settings"]["train_fraction"])
    recordings = readers.read(a.format, Path(a.data), None).recordings[: a.limit]
    t0, same = time.time(), 0
    for rec in recordings:
        start = settings.commissioning_rows(rec.series.rows)
        host = window_records(model, window, "host", knobs, None, rec.name, rec.series, start)
        board = window_records(model, window, target, knobs, firmware, rec.name, rec.series, start)
        differ = [i for i in range(min(len(host), len(board))) if host[i].tobytes() != board[i].tobytes()]
        if len(host) == len(board) and not differ:
            same += 1
            print(f"{rec.name}: {len(host)} windows, the same bytes")
        else:
            first = differ[0] if differ else min(len(host), len(board))
            print(f"{rec.name}: {len(host)} windows on the host, {len(board)} on {target}; {len(differ)} differ, "
                  f"first {first}: host {host[first] if first < len(host) else '-'}, "
                  f"board {board[first] if first < len(board) else '-'}")
    print(f"{same}/{len(recordings)} files with byte-identical window records, host vs {target} "
          f"({time.time() - t0:.0f} s)")
    return 0 if same == len(recordings) else 1


if __name__ == "__main__":
    sys.exit(main())
