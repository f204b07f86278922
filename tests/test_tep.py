"""The Tennessee Eastman reader and its benchmark figures, on a small made-up TEP-shaped folder
and hand-counted rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aiot.data import readers
from aiot.data.tep import benchmark, fault_number
from aiot.errors import ToolkitError


def _tep(root: Path, faults=(0, 1, 3), rows=20, onset=8) -> Path:
    rng = np.random.default_rng(0)

    def write(path: Path, labels: np.ndarray, cols=("xmeas_1", "xmeas_2", "xmv_1")) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["timestamp," + ",".join(cols) + ",label"]
        for i, y in enumerate(labels):
            lines.append(f"2000-01-01T{i // 20:02d}:{(i % 20) * 3:02d}:00," + ",".join(f"{v:.4f}" for v in rng.normal(size=len(cols)))
                         + f",{y}")
        path.write_text("\n".join(lines) + "\n")

    write(root / "normal.csv", np.zeros(rows, int))
    for k in faults:
        y = np.zeros(rows, int)
        if k:
            y[onset:] = 1
        write(root / "test" / f"d{k:02d}.csv", y)
    return root


def test_reader_takes_test_files_in_fault_order_and_normal_csv_as_the_fleet(tmp_path):
    ds = readers.read("tep", _tep(tmp_path, faults=(3, 0, 1)))
    assert [r.name for r in ds.recordings] == ["test/d00.csv", "test/d01.csv", "test/d03.csv"]
    assert ds.fleet_source.name == "normal.csv" and ds.fleet.rows == 20 and ds.fleet.labels is None
    assert ds.recordings[0].labels.sum() == 0 and ds.recordings[1].labels.tolist() == [0] * 8 + [1] * 12
    assert ds.fleet.channels == ds.recordings[0].series.channels == ["xmeas_1", "xmeas_2", "xmv_1"]


def test_reader_names_what_is_missing(tmp_path):
    (tmp_path / "test").mkdir()
    with pytest.raises(ToolkitError) as e:
        readers.read("tep", tmp_path)
    assert "normal.csv" in e.value.message and "test/dNN.csv" in e.value.hint


def test_fault_number():
    assert (fault_number("test/d00.csv"), fault_number("d21.csv"), fault_number("x.csv")) == (0, 21, None)


def test_benchmark_by_hand():
    # d00: 10 normal rows, 1 alerting. d01: faulty 8 of 8 alerting, normal 2 with 0 alerting.
    # d03: faulty 1 of 4 (invisible fault), normal 6 with 1 alerting. d05: faulty 3 of 4, normal 0.
    got = benchmark([("test/d00.csv", 0, 0, 1, 9), ("test/d01.csv", 8, 0, 0, 2),
                     ("test/d03.csv", 1, 3, 1, 5), ("test/d05.csv", 3, 1, 0, 0)])
    assert got["faults"] == 3
    assert got["detection_rate"] == pytest.approx((1.0 + 0.25 + 0.75) / 3)
    assert got["detection_rate_without_3_9_15"] == pytest.approx((1.0 + 0.75) / 2)
    assert got["false_alarm_rate"] == pytest.approx(2 / 18)  # 1 + 0 + 1 of 10 + 2 + 6 normal rows
    assert got["detection_rate_by_fault"] == {"IDV(1)": 1.0, "IDV(3)": 0.25, "IDV(5)": 0.75}


def test_time_resets_reach_the_recordings_notes(tmp_path):
    # the loader's findings go to report.json's per-file "notes" (Recording.meta)
    root = _tep(tmp_path, faults=(0, 1))
    p = root / "test" / "d01.csv"
    lines = p.read_text().splitlines()
    lines[5] = lines[2].split(",", 1)[0] + "," + lines[5].split(",", 1)[1]  # row 4 stamped as row 1: a step back
    p.write_text("\n".join(lines) + "\n")
    ds = readers.read("tep", root)
    rec = next(r for r in ds.recordings if r.name == "test/d01.csv")
    assert rec.meta == {"time_resets": 1, "first_time_reset_line": 6}
    assert next(r for r in ds.recordings if r.name == "test/d00.csv").meta == {}
