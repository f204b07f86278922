"""How well the reference fleet model fits each SKAB file's commissioning rows, next to the
validation pieces cut from the fleet recording: a diagnosis of the validation harness (no
test row is read), not a tool a user needs. Moved here from aiot.evaluate.tuning's old
argparse entry point (``--fit``).

Run: python -m lab.commissioning_fit SKAB_DIR [--window W]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from aiot.evaluate.tuning import SHAPE, pseudo_installations, warmup_change


def commissioning_fit(skab_root: str, window: int) -> int:
    """How well the reference fleet model reconstructs each installation's *commissioning*
    rows (the rows SKAB's protocol trains on; no test row is read into the score), grouped
    by folder, next to the validation pieces cut from the fleet recording: the median
    calibration window score and each sensor's mean error, in the installation's noise units."""
    from aiot.model.package import load_package
    from aiot.evaluate.device import ReferenceDevice, rule_for
    from aiot.evaluate.pipeline import Settings, fleet_package
    from aiot.data.readers import read_skab

    ds = read_skab(Path(skab_root))
    if ds.fleet is None:
        raise SystemExit(f"{skab_root}: no anomaly-free/ folder (the fleet recording)")
    rule = rule_for(window)
    package = fleet_package(ds.fleet, ds.fleet_source, Settings(format="skab", window=window))
    half = ds.fleet.rows // 2
    groups: dict[str, list] = {}
    pieces = [(rec.name.split("/")[0], rec) for rec in ds.recordings]
    pieces += [("validation pieces", rec) for rec in pseudo_installations(ds.fleet.slice(half, ds.fleet.rows))]
    fleet = load_package(package).normalization
    for group, rec in pieces:
        head = rec.series.head(SHAPE[0])
        d = ReferenceDevice(package, rule)
        d.commission(head)
        groups.setdefault(group, []).append((float(np.median(d.cal_total)), d.cal_ch.mean(axis=0),
                                             warmup_change(head, fleet.mean, fleet.std)))
    print("per-sensor order:", ", ".join(ds.fleet.channels))
    for group, rows in groups.items():
        per = np.median(np.array([r[1] for r in rows]), axis=0)
        warm = np.median(np.array([r[2] for r in rows]), axis=0)
        print(f"{group:18s} {len(rows):2d} files  median window score {np.median([r[0] for r in rows]):.3f}  "
              f"per sensor {np.array2string(per, precision=2)}")
        print(f"{'':18s} warm-up while commissioned, |last 100 - first 100 rows| in noise units "
              f"{np.array2string(warm, precision=2)}")
    return 0


if __name__ == "__main__":
    from aiot.evaluate.device import VALIDATED_WINDOW

    if len(sys.argv) not in (2, 4) or (len(sys.argv) == 4 and sys.argv[2] != "--window"):
        sys.exit("usage: python -m lab.commissioning_fit SKAB_DIR [--window W]")
    sys.exit(commissioning_fit(sys.argv[1], int(sys.argv[3]) if len(sys.argv) == 4 else VALIDATED_WINDOW["reference"]))
