"""The 52-variable Tennessee Eastman plant through the host build of the device monitor:
a check that a plant of that width commissions, calibrates and streams (issue 19), with
what it detects. NOT A TUNED RESULT: default alert settings, a quick PCA model.

Protocol (TEP's SOURCE.md): 3-minute samples, window 4 (12 min). The model is a PCA
autoencoder (16 components) fitted on the feature windows of normal.csv (500 rows, the
fleet's training recording, normalized by its own commissioning). Per test file dNN
(960 rows, fault switched on at row 160): commissioning on rows 0..99, calibration on the
next 12 windows (rows 100..147, normal), armed from row 148. Detection = share of rows
160..959 inside an ANOMALY window; false rows = share of rows 148..159 of every file and
of all armed rows of d00 inside one. Nothing is picked on the test files.

Run: python -m lab.tep_monitor [TEP_DIR]   (default /work/shared/data/tep)
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from aiot import monitor as M

WINDOW, PERIOD_MS, COMMISSION, CALIBRATION, COMPONENTS = 4, 180_000, 100, 12, 16


def load(path: Path) -> np.ndarray:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return np.array([[float(v) for v in r[1:53]] for r in rows[1:]], np.float32)


def main(tep: Path) -> None:
    cfg = M.default_config(52, WINDOW, PERIOD_MS, commission_samples=COMMISSION, calibration_windows=CALIBRATION)
    normal = load(tep / "normal.csv")
    scorer = M.PcaScorer.fit(M.extract_windows(cfg, np.arange(len(normal)) * PERIOD_MS, normal), k=COMPONENTS)
    armed_from = COMMISSION + CALIBRATION * WINDOW
    detected, false_rows, false_total = {}, 0, 0
    for f in sorted((tep / "test").glob("d*.csv")):
        x = load(f)
        mon = M.Monitor(cfg, scorer)
        out = mon.run(np.arange(len(x)) * PERIOD_MS, x)
        alert = np.zeros(len(x), bool)
        for o in out[out["state"] == M.ANOMALY]:
            alert[o["t_start_ms"] // PERIOD_MS : o["t_end_ms"] // PERIOD_MS + 1] = True
        rejected = sum(c["rejected_samples"] for c in mon.commissioning())
        normal_rows = alert[armed_from:] if f.stem == "d00" else alert[armed_from:160]
        false_rows += int(normal_rows.sum())
        false_total += len(normal_rows)
        if f.stem != "d00":
            detected[f.stem] = float(alert[160:].mean())
        print(f"{f.stem}: {mon.stats()['phase']}, detected rows {alert[160:].mean():.2f}, "
              f"commissioning samples rejected {rejected}")
    hard = ("d03", "d09", "d15")
    print(f"mean detection over {len(detected)} faults {np.mean(list(detected.values())):.2f} "
          f"({np.mean([v for k, v in detected.items() if k not in hard]):.2f} without 3, 9, 15); "
          f"false rows {false_rows}/{false_total}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/data/tep"))
