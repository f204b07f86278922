"""Read the Tennessee Eastman Process benchmark folder (``normal.csv`` + ``test/dNN.csv``)
and score it the way the process-monitoring literature does: per-fault detection rates.

Folder layout and protocol are those of the data's SOURCE.md: 52 variables every 3 min;
``normal.csv`` (500 normal rows) is the fleet's training recording; in ``test/d01..d21``
fault IDV(NN) starts at row 160 (label 1 from there), ``d00`` is normal throughout. Each
test file is commissioned on its rows 0..99 (``TRAIN_ROWS``) and scored on 100..959.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from aiot.errors import ToolkitError

#: Rows of every test file the device commissions on (all normal: the fault starts at 160).
TRAIN_ROWS = 100
#: Faults known to be nearly invisible in the data (the literature reports rates without them too).
INVISIBLE_FAULTS = (3, 9, 15)
_FILE = re.compile(r"^d(\d\d)\.csv$", re.IGNORECASE)


def fault_number(name: str) -> int | None:
    """``test/d05.csv`` -> 5 (``d00`` -> 0); None for a file not named dNN.csv."""
    m = _FILE.match(Path(name).name)
    return int(m.group(1)) if m else None


def read_tep(root: Path, skip_bad: bool = False, csv_options: dict | None = None):
    """The TEP folder as a Dataset: test/dNN.csv (label column ``label``) as recordings in
    fault order, normal.csv as the fleet recording (its labels ignored)."""
    from aiot.data import load_csv
    from aiot.data.readers import Dataset, _check_same_channels, _load_each, _readable, _time_options

    root = Path(root)
    if root.is_file() or not root.exists():
        raise ToolkitError(f"{root}: not a folder" if root.exists() else f"{root}: no such folder",
                           hint="point --data at the TEP folder that holds normal.csv and test/dNN.csv")
    fleet_file, test_dir = root / "normal.csv", root / "test"
    files = sorted((f for f in test_dir.glob("*.csv") if fault_number(f.name) is not None),
                   key=lambda f: fault_number(f.name)) if test_dir.is_dir() else []
    if not fleet_file.is_file() or not files:
        missing = "normal.csv" if not fleet_file.is_file() else "test/d00.csv .. test/d21.csv"
        raise ToolkitError(f"{root}: no {missing}",
                           hint="point --data at the TEP folder that holds normal.csv and test/dNN.csv")
    opts = _time_options(csv_options)
    skipped: list[tuple[str, str]] | None = [] if skip_bad else None
    recs = _load_each(files, root, lambda f: load_csv(f, label_column="label", **opts), skipped)
    fleet = _readable(lambda f: load_csv(f, label_column=None, **opts), fleet_file)
    recs = _check_same_channels(recs, "normal.csv", fleet.channels, skipped)
    if not recs:
        from aiot.data.readers import none_left

        raise none_left(root, skipped or [])
    lower = [c.lower() for c in fleet.channels]
    order = [lower.index(c.lower()) for c in recs[0].series.channels]  # the fleet in the files' column order
    fleet = replace(fleet, values=fleet.values[:, order], valid=fleet.valid[:, order],
                    channels=[fleet.channels[i] for i in order])
    return Dataset(recs, fleet, fleet_file, skipped or [])


def benchmark(per_file: list[tuple[str, int, int, int, int]]) -> dict:
    """TEP's figures from each scored file's (name, tp, fn, fp, tn) over its scored rows:
    the mean over the faults (d01..d21 present) of each file's detection rate (share of its
    faulty rows alerting), also without :data:`INVISIBLE_FAULTS`, and the false alarm rate
    (share of normal rows alerting, pooled over every file: rows 100..159 of each and d00)."""
    rates, fp, normal = {}, 0, 0
    for name, tp, fn, f_p, tn in per_file:
        fp, normal = fp + f_p, normal + f_p + tn
        k = fault_number(name)
        if k and tp + fn:
            rates[k] = tp / (tp + fn)
    visible = [v for k, v in rates.items() if k not in INVISIBLE_FAULTS]
    return {
        "faults": len(rates),
        "detection_rate": float(np.mean(list(rates.values()))) if rates else None,
        "detection_rate_without_3_9_15": float(np.mean(visible)) if visible else None,
        "false_alarm_rate": fp / normal if normal else None,
        "detection_rate_by_fault": {f"IDV({k})": round(v, 4) for k, v in sorted(rates.items())},
        "protocol": f"each test file commissioned on its rows 0..{TRAIN_ROWS - 1}, scored on the rest; detection "
                    "rate = share of a file's faulty rows alerting, averaged over the faults; false alarm rate = "
                    "share of normal scored rows alerting, pooled over all files (d00 and each file's rows "
                    f"{TRAIN_ROWS}..159)",
    }
