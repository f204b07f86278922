"""The level-shift diagnosis (lab.level_shift) on hand-made series with answers
worked out by hand, and its command on a small SKAB-shaped folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aiot.data import Series
from lab import level_shift as ls
from aiot.data.readers import Recording


def test_rolling_mean_of_the_valid_samples_in_the_last_rows():
    v = np.array([[1.0], [2.0], [np.nan], [4.0], [5.0], [7.0]])
    ok = np.isfinite(v)
    ok[5, 0] = False  # flagged invalid: its value must not count
    got = ls.rolling_mean(v, ok, 2)[:, 0]
    assert np.allclose(got, [1.0, 1.5, 2.0, 4.0, 4.5, 5.0])
    assert np.isnan(ls.rolling_mean(np.array([[np.nan], [np.nan]]), np.zeros((2, 1), bool), 2)).all()
    with pytest.raises(ValueError):
        ls.rolling_mean(v, ok, 0)


def test_rolling_mean_is_causal():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 3))
    ok = np.ones_like(v, bool)
    a = ls.rolling_mean(v, ok, 7)
    v[30:] += 100.0
    b = ls.rolling_mean(v, ok, 7)
    assert np.array_equal(a[:30], b[:30]) and not np.allclose(a[30:], b[30:])


def _two_sensors(after: list[tuple[float, float]]) -> np.ndarray:
    """40 commissioning rows: sensor 0 alternates 0 / 2 (level 1, sample spread 1), sensor 1
    sits at 10 (no spread: the floor decides); then the given rows."""
    head = np.column_stack([np.tile([0.0, 2.0], 20), np.full(40, 10.0)])
    return np.vstack([head, np.array(after, float).reshape(-1, 2)])


def test_scores_by_hand_max_and_rms():
    x = _two_sensors([(5.0, 13.0)])
    ok = np.ones_like(x, bool)
    # length 1: sensor 0 spread 1 (z = 4), sensor 1 spread 0 floored at 0.1 x 10 = 1 (z = 3);
    # over the commissioning rows every row's worst |z| is 1 (sensor 0), so the 99th percentile is 1
    got_max = ls.scores(x, ok, 40, 1, "max", 0.1)
    got_rms = ls.scores(x, ok, 40, 1, "rms", 0.1)
    assert got_max[-1] == pytest.approx(4.0)
    # rms over the commissioning rows is sqrt((1 + 0) / 2), the reference it is divided by
    assert got_rms[-1] == pytest.approx(np.sqrt((16 + 9) / 2) / np.sqrt(0.5))
    with pytest.raises(ValueError, match="aggregate"):
        ls.scores(x, ok, 40, 1, "mean", 0.1)
    with pytest.raises(ValueError, match="commissioning rows"):
        ls.scores(x, ok, 5, 5, "max", 0.1)


def _fault_recording() -> Recording:
    """Commissioning (40 rows), 10 rows at the level, 20 rows with sensor 0 at 6, 10 at the level."""
    x = _two_sensors([(1.0, 10.0)] * 10 + [(6.0, 10.0)] * 20 + [(1.0, 10.0)] * 10)
    labels = np.zeros(len(x), np.int8)
    labels[50:70] = 1
    s = Series(timestamps=np.arange(len(x), dtype=float), values=x, valid=np.ones_like(x, bool), labels=labels,
               channels=["a", "b"])
    return Recording("v/1.csv", s)


KNOBS = {"length": 5, "aggregate": "max", "floor_rel": 1e-3, "k": 2.0}


def test_score_recordings_counts_the_test_rows_by_hand():
    # 5-row means of the alternating head are 0.8 or 1.2: spread 0.2, |z| = 1 everywhere there.
    # At the level the first test rows still hold head rows: |z| 0 or 1, under k = 2. The first
    # fault row's mean is (4 + 6) / 5 = 2: z = 5, so every fault row alerts; the mean keeps a
    # fault row for 4 rows after the fault (the last: (6 + 4) / 5 = 2, z = 5), then 0.
    [(knobs, per)] = ls.score_recordings([_fault_recording()], commission=40, settings=[KNOBS])
    c = per["v/1.csv"]
    assert knobs == KNOBS
    assert (c.tp, c.fp, c.tn, c.fn) == (20, 4, 16, 0)
    # k = 6: the first fault row (z = 5) no longer alerts; the second ((3 + 12) / 5 = 3: z = 10)
    # does; after the fault the means are 5, 4, 3, 2 (z = 20, 15, 10, 5): three rows alert
    [(_, per)] = ls.score_recordings([_fault_recording()], commission=40, settings=[{**KNOBS, "k": 6.0}])
    c = per["v/1.csv"]
    assert (c.tp, c.fp, c.tn, c.fn) == (19, 3, 17, 1)


def test_phases_split_the_alerting_rows_by_hand():
    p = ls.phases([_fault_recording()], KNOBS, commission=40)
    assert p == {"before_fault": 0.0, "fault": 1.0, "after_fault": 0.4}


def test_rows_without_data_have_no_score_and_never_alert():
    x = _two_sensors([(np.nan, np.nan)] * 6 + [(1.0, 10.0)])
    got = ls.scores(x, np.isfinite(x), 40, 5, "max", 1e-3)
    assert np.isnan(got[44:46]).all() and np.isfinite(got[-1])
    assert not ls.alerts(got, 0.0)[44:46].any()


def test_the_grid_lists_every_combination_once():
    g = ls.grid()
    assert len(g) == np.prod([len(v) for v in ls.GRID.values()])
    assert len({tuple(sorted(k.items())) for k in g}) == len(g)


def _skab_file(path, rows: int, fault: tuple[int, int] | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sensors = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature", "Thermocouple",
               "Voltage", "Volume Flow RateRMS"]
    x = rng.normal(0.0, 1.0, (rows, len(sensors))) + np.arange(1, len(sensors) + 1) * 10.0
    y = np.zeros(rows, int)
    if fault:
        x[fault[0]:fault[1], 2] += 3.0
        y[fault[0]:fault[1]] = 1
    lines = ["datetime;" + ";".join(sensors) + ";anomaly;changepoint"]
    for i in range(rows):
        t = f"2020-03-01 {10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
        lines.append(f"{t};" + ";".join(f"{v:.4f}" for v in x[i]) + f";{float(y[i])};0.0")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_the_command_on_a_small_skab_shaped_folder(tmp_path, capsys):
    _skab_file(tmp_path / "anomaly-free" / "anomaly-free.csv", 2400, None, 1)
    _skab_file(tmp_path / "valve1" / "0.csv", 900, (560, 760), 2)
    _skab_file(tmp_path / "other" / "1.csv", 900, (560, 760), 3)
    out = tmp_path / "ls.json"
    assert ls.main([str(tmp_path), "--far-budget", "10", "--save", str(out)]) == 0
    text = capsys.readouterr().out
    for part in ("CEILING", "LEAVE-ONE-FOLDER-OUT", "HARNESS PICKS (4 pieces"):  # 1 piece x 4 fault draws
        assert part in text
    saved = json.loads(out.read_text())
    assert saved["settings"] == len(ls.grid())
    pick = saved["harness_picks"]["10"]
    # a 3-sigma step on one sensor of white noise for 200 rows: the picked setting finds it
    assert pick["skab"]["tp"] > 0 and set(pick["phases_skab"]) == {"before_fault", "fault", "after_fault"}


def test_the_command_without_a_skab_folder_is_an_error_not_a_traceback(tmp_path, capsys):
    assert ls.main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing: no such file" in err


def test_the_command_refuses_a_budget_outside_0_to_100(tmp_path):
    with pytest.raises(SystemExit):
        ls.main([str(tmp_path), "--far-budget", "0"])
