"""The scenario gate of `aiot tune --labels`: a fold may only pick settings that keep the seeded
scenario suite's acceptance (every fault, no false alert, every gap NO_DATA). Hand-made
per-file confusions and a stand-in suite whose verdicts are written here, so the picks and the
number of suite runs are worked out by hand."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aiot.cli import main
from aiot.evaluate import crossval
from aiot.evaluate import scenarios as ev
from aiot.evaluate.crossval import Source, cross_validate
from aiot.evaluate.metrics import Confusion as C

# Three files in two folders, three settings as the device grid makes them, (window, knobs):
#   "loose" (margin 2.0) is the best everywhere; "mid" (2.5) next; "tight" (3.0) last.
LOOSE = (8, {"alert_margin": 2.0, "clear_margin": 2.0, "fleet_noise_floor": 1.0})
MID = (8, {"alert_margin": 2.5, "clear_margin": 2.5, "fleet_noise_floor": 1.0})
MID_FLOOR = (8, {"alert_margin": 2.5, "clear_margin": 2.5, "fleet_noise_floor": 0.25})
TIGHT = (8, {"alert_margin": 3.0, "clear_margin": 3.0, "fleet_noise_floor": 1.0})


def _per(tp):
    return {"a/1.csv": C(tp=tp, fp=1, tn=89, fn=10 - tp), "a/2.csv": C(tp=tp, fp=1, tn=89, fn=10 - tp),
            "b/1.csv": C(tp=tp, fp=1, tn=89, fn=10 - tp)}


SCORED = [(LOOSE, _per(9)), (MID, _per(8)), (MID_FLOOR, _per(7)), (TIGHT, _per(6))]
FOLDS = {"a/1.csv": "a", "a/2.csv": "a", "b/1.csv": "b"}
SOURCES = [Source("all", frozenset(FOLDS), 0.10)]


def _suite_by_margin(verdicts: dict[float, dict], calls: list):
    """A stand-in for the seeded suite: its report's totals depend on alert_margin only; the
    gate gets the report's acceptance failures, as from the real suite."""

    def suite(knobs):
        calls.append(dict(knobs))
        t = {"faults": 15, "faults_detected": 15, "false_alerts": 0, "long_gaps": 59,
             "long_gaps_reported_no_data": 59, **verdicts.get(knobs.get("alert_margin"), {})}
        return ev.acceptance_failures({"detectors": {"host": {"total": t}}})

    return suite


def test_scenario_knobs_apply_the_monitor_settings_and_not_the_evaluation_ones():
    applied, other = ev.scenario_knobs({"alert_margin": 2.0, "clear_margin": 2.0, "persist_k": 3, "persist_n": 5,
                                        "level_windows": 1, "clear_band": 6, "spread_score": 1, "recover_ratio": 0.7,
                                        "score_average": 4, "fleet_noise_floor": 1.0, "window": 8,
                                        "commission_samples": 200, "calibration_windows": 25,
                                        "max_drift_rate": {"pump_temp": 0.5}})
    assert applied == {"alert_margin": 2.0, "clear_margin": 2.0, "persist_k": 3, "persist_n": 5, "level_windows": 1,
                       "clear_band": 6, "spread_score": 1, "recover_ratio": 0.7, "score_average": 4}
    # the evaluation's floors, the installation's shape and per-sensor values by name stay out
    assert set(other) == {"fleet_noise_floor", "window", "commission_samples", "calibration_windows",
                          "max_drift_rate"}
    # one value for every sensor applies to the suite's sensors too
    assert ev.scenario_knobs({"max_drift_rate": 0.5})[0] == {"max_drift_rate": 0.5}


def test_gate_runs_the_suite_once_per_combination_of_applicable_knobs():
    calls = []
    gate = ev.ScenarioGate(suite=_suite_by_margin({2.0: {"false_alerts": 8}}, calls))
    assert gate.failures(LOOSE[1]) == ["8 false alert(s)"]
    assert gate.failures(MID[1]) == [] and gate.failures(MID_FLOOR[1]) == []  # differ in the floor only
    assert gate.failures(LOOSE[1]) == ["8 false alert(s)"]
    assert calls == [{"alert_margin": 2.0, "clear_margin": 2.0}, {"alert_margin": 2.5, "clear_margin": 2.5}]
    assert gate.runs == 2


def test_gate_names_a_setting_the_suites_monitor_refuses():
    gate = ev.ScenarioGate(suite=lambda knobs: ev.acceptance_failures(ev.run_suite(2, knobs=knobs)))  # refused before any scenario runs
    [why] = gate.failures({"persist_k": 9, "persist_n": 5})
    assert why.startswith("refused on the suite's installation") and "persist_k" in why


def test_each_fold_walks_its_ranking_down_to_the_first_setting_that_passes_the_gate():
    calls = []
    gate = ev.ScenarioGate(suite=_suite_by_margin({2.0: {"false_alerts": 8}}, calls))
    cv = cross_validate(SCORED, FOLDS, sources=SOURCES, gate=lambda s: gate.failures(s[1]))
    # every fold ranks LOOSE first (F1 9/10 recall), then MID: LOOSE has 8 false alerts on the suite
    assert [f.setting for f in cv.folds] == [1, 1] and cv.final == 1
    for f in cv.folds:
        assert f.gated_out == [(0, ["8 false alert(s)"])]
        assert f.within_budget and f.gate_passed
    assert cv.final_gated_out == [(0, ["8 false alert(s)"])]
    # two suite runs for the whole cross-validation: margin 2.0 and 2.5, each once
    assert gate.runs == 2 and len(calls) == 2
    # the held-out figure is MID's on every file
    assert (cv.held_out.tp, cv.held_out.fn) == (24, 6)


def test_without_the_gate_the_best_setting_is_picked():
    cv = cross_validate(SCORED, FOLDS, sources=SOURCES)
    assert [f.setting for f in cv.folds] == [0, 0] and cv.final == 0
    assert all(f.gated_out == [] for f in cv.folds)


def test_gate_outranks_the_budget_and_none_passing_is_flagged_not_hidden():
    # only TIGHT passes, and it is over the FAR budget (its false alarms raised): still the pick, flagged
    over = [(k, per) for k, per in SCORED[:3]] + [(TIGHT, {n: C(tp=6, fp=30, tn=60, fn=4) for n in FOLDS})]
    gate = ev.ScenarioGate(suite=_suite_by_margin({2.0: {"false_alerts": 8}, 2.5: {"faults_detected": 14}}, []))
    cv = cross_validate(over, FOLDS, sources=SOURCES, gate=lambda s: gate.failures(s[1]))
    assert cv.final == 3 and not cv.final_within_budget and cv.final_gate_passed
    assert [i for i, _ in cv.final_gated_out] == [0, 1, 2]
    # no setting passes: the ungated pick, flagged
    none = ev.ScenarioGate(suite=_suite_by_margin({m: {"false_alerts": 1} for m in (2.0, 2.5, 3.0)}, []))
    cv = cross_validate(SCORED, FOLDS, sources=SOURCES, gate=lambda s: none.failures(s[1]))
    assert cv.final == 0 and not cv.final_gate_passed


def _scored(data, fmt, target, windows, jobs, level_only, csv_options, fixed_knobs=None, folds_by="folder",
            per_file=False, fleet=None, early_warning_s=0.0):
    """crossval._score's stand-in: the hand-made SCORED, the fleet model (its recording not said)."""
    return [(k, per) for k, per in SCORED], sorted(FOLDS), 100, "fleet", None


def test_crossval_json_and_the_fold_table_say_what_was_gated_out_and_why(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(crossval, "_score", _scored)
    calls = []
    gate = ev.ScenarioGate(suite=_suite_by_margin({2.0: {"false_alerts": 8}}, calls))
    doc = crossval.run(["S"], ["skab"], "device", (8,), 0.10, ["folder"], tmp_path / "cv", scenario_gate=gate)
    saved = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert saved["scenario_gate"]["on"] is True and saved["scenario_gate"]["suite_runs"] == 2
    for f in saved["folds"]:
        assert f["setting"]["alert_margin"] == 2.5
        assert f["gated_out"] == [{"setting": {"window": 8, **LOOSE[1]}, "scenario_suite": ["8 false alert(s)"]}]
    assert saved["settings"]["alert_margin"] == 2.5 and saved["settings_gated_out"][0]["scenario_suite"]
    out = capsys.readouterr().out
    assert ("gated out by the seeded scenarios (knobs that differ from the pick): alert_margin 2.0, "
            "clear_margin 2.0: 8 false alert(s)") in out
    assert doc["scenario_gate"]["on"] is True


def test_no_scenario_gate_turns_it_off_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(crossval, "_score", _scored)
    doc = crossval.run(["S"], ["skab"], "device", (8,), 0.10, ["folder"], None, scenario_gate=False)
    assert doc["scenario_gate"]["on"] is False and doc["settings"]["alert_margin"] == 2.0
    assert all("gated_out" not in f for f in doc["folds"])


@pytest.mark.parametrize("flag, expected", [([], True), (["--no-scenario-gate"], False)])
def test_cli_gate_is_on_by_default(monkeypatch, tmp_path, flag, expected):
    seen = {}
    monkeypatch.setattr(crossval, "run", lambda *a, **k: seen.update(k) or {})
    (tmp_path / "d").mkdir()
    r = CliRunner().invoke(main, ["tune", "--labels", str(tmp_path / "d"), *flag])
    assert r.exit_code == 0, r.output
    assert seen["scenario_gate"] is expected


def test_no_scenario_gate_is_for_labels_on_the_device(tmp_path):
    normal = tmp_path / "normal.csv"
    normal.write_text("timestamp,a\n0,1\n1,2\n")
    r = CliRunner().invoke(main, ["tune", "--data", str(normal), "--no-scenario-gate"])
    assert r.exit_code == 2 and "--no-scenario-gate" in r.output and "--labels" in r.output


def test_the_real_gate_runs_the_suite_with_the_int8_and_the_float_model():
    """Both are acceptance runs (test_scenarios.py). With the residual term the score depends
    on the model: this setting passes with the int8 model and raises one false alert with the
    float one (measured 7 Dec, with RECAL_GAIN; the earlier example, margins 3 / 3 and
    residual_score 1, was a gain remount read as an offset and now passes with both), so it
    must not pass the gate."""
    pytest.importorskip("tensorflow")
    from aiot.evaluate.scenarios import ScenarioGate

    knobs = {"alert_margin": 2.5, "clear_margin": 2.5, "persist_k": 3, "persist_n": 5, "recover_ratio": 0.0,
             "score_average": 1, "level_windows": 3, "clear_band": 6, "spread_score": 1, "residual_score": 2}
    assert ScenarioGate().failures(knobs) == ["float model: 1 false alert(s)"]
    assert "int8 and float" in ScenarioGate().describe()["suite"]
