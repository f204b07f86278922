"""Cross-validation on one installation's own labelled history (`aiot tune --labels FILE
--folds incident`): the file's scored rows are cut halfway between its incidents, each part
is a fold, and the models are the installation's own (no normal recording needed), so the
picks are what `aiot commission --alert-settings` ships. Cut points and counts by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from aiot.cli import main
from aiot.evaluate.crossval import folds_of
from aiot.evaluate.metrics import Confusion, confusions_by_part, incident_cuts, part_names

#            0  1  2  3  4  5  6  7  8  9 10 11 12 13 14
LABELS = np.array([0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0])
ALERTS = np.array([0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0])


def test_cuts_fall_halfway_between_incidents():
    # incidents rows 2-3, 8, 12-13: gaps 4..7 and 9..11 -> cut before rows (4 + 8) // 2 = 6 and (9 + 12) // 2 = 10
    assert incident_cuts(LABELS) == [6, 10]
    assert incident_cuts(np.array([0, 1, 1, 0, 0])) == []  # one incident: whole
    assert incident_cuts(np.zeros(5, int)) == []
    assert incident_cuts(np.array([1, 1, 0, 1])) == [2]  # (1 + 1 + 3) // 2


def test_each_part_holds_one_incident_and_the_parts_add_up_to_the_file():
    parts = confusions_by_part("pump.csv", LABELS, ALERTS, incident_cuts(LABELS))
    assert list(parts) == ["pump.csv#incident1of3", "pump.csv#incident2of3", "pump.csv#incident3of3"]
    # rows 0-5: labels 0 0 1 1 0 0, alerts 0 0 0 1 1 0 -> tp 1 (row 3), fn 1 (row 2), fp 1 (row 4), tn 3
    assert parts["pump.csv#incident1of3"] == Confusion(tp=1, fp=1, tn=3, fn=1)
    # rows 6-9: labels 0 0 1 0, alerts 0 1 1 1 -> tp 1, fp 2 (rows 7, 9), tn 1
    assert parts["pump.csv#incident2of3"] == Confusion(tp=1, fp=2, tn=1, fn=0)
    # rows 10-14: labels 0 0 1 1 0, no alert -> fn 2, tn 3
    assert parts["pump.csv#incident3of3"] == Confusion(tp=0, fp=0, tn=3, fn=2)
    assert confusions_by_part("pump.csv", LABELS, ALERTS) == {"pump.csv": Confusion(tp=2, fp=3, tn=7, fn=3)}
    assert part_names("a.csv", 1) == ["a.csv"]
    # every part is its own fold
    assert folds_of(list(parts), "incident") == {n: n for n in parts}


def test_incident_is_a_fold_kind_of_the_cli(tmp_path):
    r = CliRunner().invoke(main, ["tune", "--labels", str(tmp_path), "--folds", "incidents"])
    assert r.exit_code == 2 and "folder, file, incident" in r.output


def _history(path, rng):
    """One pump, 1 s samples, 3 sensors: 900 rows, three labelled faults (a step on one sensor)."""
    n = 900
    v = rng.normal(size=(n, 3))
    y = np.zeros(n, int)
    for a, b in ((300, 380), (520, 600), (740, 820)):
        y[a:b] = 1
        v[a:b, (a // 100) % 3] += 8.0
    rows = [f"{1_700_000_000 + i},{p:.4f},{q:.4f},{r:.4f},{lab}" for i, ((p, q, r), lab) in enumerate(zip(v, y))]
    path.write_text("timestamp,flow,pressure,current,label\n" + "\n".join(rows) + "\n")


def _two_settings_and_a_fresh_cache(tmp_path, monkeypatch) -> None:
    """The per-file grid cut to two settings (margin 3 or 50), models trained into a cache of
    the test's own: the folds, the per-file models and the saved pick are under test, not the grid."""
    from aiot.evaluate import tuning
    from aiot.testing import fresh_model_cache

    fresh_model_cache(monkeypatch, tmp_path / "cache")
    grid = {**tuning.MONITOR_GRID_PER_FILE, "alert_margin": (3.0, 50.0), "fleet_noise_floor": (1.0,),
            "recover_ratio": (0.0,), "score_average": (1,), "level_windows": (1,), "clear_band": (6,),
            "spread_score": (0,), "residual_score": (0,)}
    monkeypatch.setattr(tuning, "MONITOR_GRID_PER_FILE", grid)


@pytest.mark.slow
def test_one_labelled_history_is_cross_validated_incident_by_incident_with_its_own_model(tmp_path, monkeypatch):
    from aiot.alert_settings import load

    _two_settings_and_a_fresh_cache(tmp_path, monkeypatch)
    hist = tmp_path / "pump7-history.csv"
    _history(hist, np.random.default_rng(3))
    out = tmp_path / "cv"
    r = CliRunner().invoke(main, ["tune", "--labels", str(hist), "--format", "generic", "--folds", "incident",
                                  "--far-budget", "40", "--no-scenario-gate", "--jobs", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "one model per file" in r.output
    doc = json.loads((out / "crossval.json").read_text())
    names = [f"pump7-history.csv#incident{k}of3" for k in (1, 2, 3)]
    assert [f["fold"] for f in doc["folds"]] == names and doc["model"] == "per-file"
    # every scored row once: 900 rows, the first 15 % (135) commission the installation
    held = doc["held_out"]
    assert held["tp"] + held["fp"] + held["tn"] + held["fn"] == 900 - 135
    assert held["tp"] + held["fn"] == 3 * 80
    # an 8-sigma step on one sensor at margin 3 is caught (its alert outlives the step by a few windows: the
    # 40 % budget lets it through); margin 50 catches nothing, so no fold chose it
    assert all(f["setting"]["alert_margin"] == 3.0 for f in doc["folds"])
    assert held["tp"] > 0
    # the pick is for one model per installation: what `aiot commission --alert-settings` takes
    [path] = [p for p in out.iterdir() if p.name.startswith("device-per-file-w8-cv-far40")]
    s = load(path)
    s.require_model(path, per_file=True)
    assert s.knobs["alert_margin"] == 3.0
    # labels that mark the failure itself: with a 20 s lead the 20 rows (1 s apart) before each onset are
    # neither normal nor fault in every fold's figures, so the held-out counts lack 3 x 20 rows
    r = CliRunner().invoke(main, ["tune", "--labels", str(hist), "--format", "generic", "--folds", "incident",
                                  "--far-budget", "40", "--no-scenario-gate", "--jobs", "1", "--early-warning", "20s",
                                  "--out", str(tmp_path / "cv-lead")])
    assert r.exit_code == 0, r.output
    lead = json.loads((tmp_path / "cv-lead" / "crossval.json").read_text())
    assert lead["early_warning_s"] == 20.0 and doc["early_warning_s"] == 0.0
    h = lead["held_out"]
    assert h["tp"] + h["fp"] + h["tn"] + h["fn"] == 900 - 135 - 3 * 20
    assert (h["tp"], h["fn"]) == (held["tp"], held["fn"])  # the faulty rows are the same


def test_lead_rows_are_not_counted_in_any_part():
    # a lead of rows 0..1 and 6..7 (before the onsets 2 and 8): left out of parts 1 and 2
    lead = np.zeros(15, bool)
    lead[[0, 1, 6, 7]] = True
    parts = confusions_by_part("pump.csv", LABELS, ALERTS, incident_cuts(LABELS), lead)
    # rows 2-5: labels 1 1 0 0, alerts 0 1 1 0 -> tp 1, fn 1, fp 1, tn 1
    assert parts["pump.csv#incident1of3"] == Confusion(tp=1, fp=1, tn=1, fn=1)
    # rows 8-9: labels 1 0, alerts 1 1 -> tp 1, fp 1 (row 7's alert is a warning, not counted)
    assert parts["pump.csv#incident2of3"] == Confusion(tp=1, fp=1, tn=0, fn=0)
    assert parts["pump.csv#incident3of3"] == Confusion(tp=0, fp=0, tn=3, fn=2)


def test_early_warning_is_for_labelled_data_and_a_duration(tmp_path):
    (tmp_path / "n.csv").write_text("timestamp,a\n0,1\n")
    r = CliRunner().invoke(main, ["tune", "--data", str(tmp_path / "n.csv"), "--early-warning", "1h"])
    assert r.exit_code == 2 and "--early-warning" in r.output and "--labels" in r.output
    r = CliRunner().invoke(main, ["tune", "--labels", str(tmp_path), "--early-warning", "a while"])
    assert r.exit_code == 2 and "12h" in r.output


@pytest.mark.slow
def test_installations_with_their_own_sensors_are_cross_validated_file_by_file(tmp_path, monkeypatch):
    """As aiot evaluate: without a fleet recording each file has its own model, so a folder of
    installations with different sensors is one cross-validation (it stopped on 'sensor
    columns differ')."""
    _two_settings_and_a_fresh_cache(tmp_path, monkeypatch)
    site = tmp_path / "site"
    site.mkdir()
    _history(site / "pump7.csv", np.random.default_rng(3))
    _history(site / "pump8.csv", np.random.default_rng(4))
    lines = (site / "pump8.csv").read_text().splitlines()  # pump8 has no current sensor
    (site / "pump8.csv").write_text("\n".join(",".join(r.split(",")[:3] + r.split(",")[4:]) for r in lines) + "\n")
    r = CliRunner().invoke(main, ["tune", "--labels", str(site), "--format", "generic", "--folds", "file",
                                  "--far-budget", "40", "--no-scenario-gate", "--jobs", "1", "--out", str(tmp_path / "cv")])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert [f["fold"] for f in doc["folds"]] == ["pump7.csv", "pump8.csv"] and doc["model"] == "per-file"
    held = doc["held_out"]
    assert held["tp"] + held["fp"] + held["tn"] + held["fn"] == 2 * (900 - 135)
