"""The Tennessee Eastman Process benchmark folder (``normal.csv`` + ``test/dNN.csv``; read by
:func:`aiot.data.readers.read_tep`), scored the way the process-monitoring literature does: per-fault detection rates.

Folder layout and protocol are those of the data's SOURCE.md: 52 variables every 3 min;
``normal.csv`` (500 normal rows) is the fleet's training recording; in ``test/d01..d21``
fault IDV(NN) starts at row 160 (label 1 from there), ``d00`` is normal throughout. Each
test file is commissioned on its rows 0..99 (``TRAIN_ROWS``) and scored on 100..959.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

#: Rows of every test file the device commissions on (all normal: the fault starts at 160).
TRAIN_ROWS = 100
#: Faults known to be nearly invisible in the data (the literature reports rates without them too).
INVISIBLE_FAULTS = (3, 9, 15)
_FILE = re.compile(r"^d(\d\d)\.csv$", re.IGNORECASE)


def fault_number(name: str) -> int | None:
    """``test/d05.csv`` -> 5 (``d00`` -> 0); None for a file not named dNN.csv."""
    m = _FILE.match(Path(name).name)
    return int(m.group(1)) if m else None


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
