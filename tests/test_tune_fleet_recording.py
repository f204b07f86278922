"""`aiot tune --labels SITE --format generic --fleet NORMAL.csv`: a user's own labelled
recordings cross-validated with the fleet model of their fleet's normal recording (as `aiot
evaluate --fleet` runs it), so the pick is one `aiot commission --fleet-data` takes. Without
--fleet, generic labelled data gets one model per file (tests/test_tune_incident_folds.py)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aiot.cli import main
from aiot.testing import requires_arm


def _unit(path, start: int, rows: int = 1100, broken: tuple[int, int] | None = (700, 850)) -> None:
    """Rows ``start``.. of the 12-sensor plant of test_fleet_linear_model, labelled; ``broken``:
    sensor s5 off its relations over those rows, labelled 1 there."""
    from test_fleet_linear_model import plant_csv

    plant_csv(path, rows, start, broken, labelled=True)


def _normal(path, rows: int = 1100) -> None:
    from test_fleet_linear_model import plant_csv

    plant_csv(path, rows)


@pytest.mark.slow
@requires_arm
def test_labelled_recordings_with_the_fleets_normal_recording_pick_for_the_fleet_model(tmp_path, monkeypatch):
    from aiot.alert_settings import load
    from aiot.data import sha256_file
    from aiot.evaluate import tuning
    from aiot.testing import fresh_model_cache

    fresh_model_cache(monkeypatch, tmp_path / "cache")
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    # two settings keep it fast: the fleet recording's way through, not the grid, is under test
    grid = {**tuning.MONITOR_GRID, "alert_margin": (2.5, 50.0), "clear_ratio": (0.75,), "fleet_noise_floor": (1.0,),
            "recover_ratio": (0.0,), "score_average": (1,), "level_windows": (1,), "clear_band": (3,),
            "spread_score": (1,), "residual_score": (4,), "fleet_pca_variance": (0.99,)}
    monkeypatch.setattr(tuning, "MONITOR_GRID", grid)
    site = tmp_path / "site"
    for k, start in enumerate((1100, 2200, 3300)):
        _unit(site / f"unit{k + 1}.csv", start)
    _normal(tmp_path / "normal.csv")
    out = tmp_path / "cv"
    r = CliRunner().invoke(main, ["tune", "--labels", str(site), "--format", "generic", "--folds", "file",
                                  "--fleet", str(tmp_path / "normal.csv"), "--far-budget", "40",
                                  "--no-scenario-gate", "--jobs", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "one model per file" not in r.output
    doc = json.loads((out / "crossval.json").read_text())
    assert doc["model"] == "fleet" and doc["grid_size"] == 2
    assert doc["fleet_recording"] == {"path": str(tmp_path / "normal.csv"),
                                      "sha256": sha256_file(tmp_path / "normal.csv")}
    # s5 off its relations is caught at margin 2.5, never at 50: every fold chose 2.5
    assert all(f["setting"]["alert_margin"] == 2.5 for f in doc["folds"]) and doc["held_out"]["tp"] > 0
    [path] = [p for p in out.iterdir() if p.name.startswith("device-w8-cv-far40")]
    pick = load(path)
    pick.require_model(path, per_file=False)
    assert pick.knobs["fleet_pca_variance"] == 0.99 and pick.picked_by["fleet_recording"] == doc["fleet_recording"]

    # the pick, on a board: the installation's first 165 rows (generic data commissions on 15 %)
    r = CliRunner().invoke(main, ["commission", "--data", str(site / "unit1.csv"), "--rows", "165",
                                  "--fleet-data", str(tmp_path / "normal.csv"), "--alert-settings", str(path),
                                  "--board", "mps2-an386", "--out", str(tmp_path / "unit1")])
    assert r.exit_code == 0, r.output
    made = json.loads((tmp_path / "unit1" / "commission.json").read_text())
    assert made["model"]["kind"] == "fleet" and made["alert_settings"]["knobs"] == pick.knobs


@pytest.mark.parametrize("args, message", [
    (["--per-file"], "--fleet and --per-file"),
    (["--fleet", "NORMAL"], "2 --fleet for 1 --labels"),
])
def test_a_fleet_recording_that_does_not_fit_the_request_is_a_usage_error(tmp_path, args, message):
    _unit(tmp_path / "site" / "unit1.csv", 0, rows=300)
    _normal(tmp_path / "normal.csv", rows=300)
    args = [str(tmp_path / "normal.csv") if a == "NORMAL" else a for a in args]
    r = CliRunner().invoke(main, ["tune", "--labels", str(tmp_path / "site"), "--format", "generic",
                                  "--fleet", str(tmp_path / "normal.csv"), *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output


def test_the_harness_takes_no_fleet_recording(tmp_path):
    _normal(tmp_path / "normal.csv", rows=300)
    r = CliRunner().invoke(main, ["tune", "--data", str(tmp_path / "normal.csv"), "--fleet",
                                  str(tmp_path / "normal.csv")])
    assert r.exit_code == 2 and "--fleet goes with --labels" in r.output, r.output


def test_a_fleet_recording_without_the_files_sensors_is_refused_before_any_model(tmp_path, monkeypatch):
    from aiot.testing import fresh_model_cache

    fresh_model_cache(monkeypatch, tmp_path / "cache")
    _unit(tmp_path / "site" / "unit1.csv", 0, rows=300)
    _normal(tmp_path / "normal.csv", rows=300)
    lines = (tmp_path / "normal.csv").read_text().splitlines()
    (tmp_path / "normal.csv").write_text("\n".join(",".join(l.split(",")[:-1]) for l in lines) + "\n")
    r = CliRunner().invoke(main, ["tune", "--labels", str(tmp_path / "site"), "--format", "generic",
                                  "--fleet", str(tmp_path / "normal.csv"), "--no-scenario-gate"])
    assert r.exit_code == 2 and "normal.csv" in r.output and "s11" in r.output and "Traceback" not in r.output
    assert not any((tmp_path / "cache").rglob("model.tflite"))
