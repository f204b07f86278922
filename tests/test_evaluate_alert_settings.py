"""Operating points as files: the tuning's pick per FAR budget, saved, and read back by
`aiot evaluate --alert-settings FILE` with every bad field named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiot.errors import ToolkitError
from aiot.evaluate import alert_settings as aset
from aiot.evaluate.device import AlertRule
from aiot.evaluate.metrics import Confusion
from aiot.evaluate.tuning import pick, save_picks

FIX = Path(__file__).parent / "fixtures" / "eval"


def _results():
    # (setting, confusion): FAR 2/100, 8/100, 25/100 with F1 rising as FAR grows
    return [
        ("quiet", Confusion(tp=30, fp=2, tn=98, fn=70)),    # F1 30 / (30 + 36) = 0.4545
        ("middle", Confusion(tp=60, fp=8, tn=92, fn=40)),   # 60 / (60 + 24)   = 0.7143
        ("twin", Confusion(tp=60, fp=8, tn=92, fn=40)),     # the same counts, later in the grid
        ("loud", Confusion(tp=90, fp=25, tn=75, fn=10)),    # 90 / (90 + 17.5) = 0.8372
    ]


def test_pick_is_the_best_f1_within_each_far_budget_and_ties_go_to_the_earlier_setting():
    r = _results()
    assert pick(r, 0.05)[0] == "quiet"
    assert pick(r, 0.10)[0] == "middle"  # not "twin": same F1, later in the grid
    assert pick(r, 0.08)[0] == "middle"  # FAR exactly at the budget is allowed
    assert pick(r, 0.30)[0] == "loud"
    assert pick(r, 0.01)[0] == "loud"  # nothing fits: best F1 overall


def test_a_pick_outside_its_budget_is_flagged_and_never_saved(tmp_path, capsys):
    from aiot.evaluate.tuning import _print_pick

    margin = {"quiet": 3.0, "middle": 2.0, "twin": 2.0, "loud": 1.0}
    results = [({"alert_margin": margin[k]}, c) for k, c in _results()]
    picks = _print_pick(results, 8, 15, lambda k: k, top=2, budgets=(0.01, 0.10))
    out = capsys.readouterr().out
    assert 'NO SETTING of the grid reaches validation FAR <= 1 % (the lowest: 2.00 %, {"alert_margin": 3.0})' in out
    assert out.count("NO SETTING") == 1  # the 10 % budget is met
    from aiot.evaluate.tuning import within_budget

    assert [b for b, _, _ in within_budget(picks)] == [0.10]  # what gets saved and has its phases printed
    paths = save_picks(str(tmp_path), "device", 8, picks, {})
    assert [p.name for p in paths] == ["device-w8-far10.json"]
    assert "not saved: the FAR <= 1 % pick" in capsys.readouterr().out
    assert not (tmp_path / "device-w8-far1.json").exists()


def test_saved_picks_read_back_as_the_same_rule_and_knobs(tmp_path):
    rule = AlertRule(threshold_margin=2.5, smooth=5, recover_ratio=0.7, noise_floor=0.5)
    c = Confusion(tp=60, fp=8, tn=92, fn=40)
    harness = {"harness": {"seeds": 4}}
    [ref] = save_picks(str(tmp_path), "reference", 32, [(0.2, rule, c)], harness)
    knobs = {"alert_margin": 1.5, "clear_margin": 1.5, "persist_k": 3, "persist_n": 5, "fleet_noise_floor": 0.5}
    [dev] = save_picks(str(tmp_path), "device", 8, [(0.08, knobs, c)], harness)
    assert ref.name == "reference-w32-far20.json" and dev.name == "device-w8-far8.json"
    a = aset.load(ref)
    assert (a.target, a.window, a.rule, a.knobs) == ("reference", 32, rule, None)
    assert a.picked_by["far_budget"] == 0.2 and a.picked_by["validation"]["far"] == pytest.approx(0.08)
    assert a.picked_by["harness"] == {"seeds": 4}
    b = aset.load(dev)
    assert (b.target, b.window, b.knobs, b.rule) == ("device", 8, knobs, None)
    assert a.fits("reference") and not a.fits("host") and b.fits("qemu:mps2-an386") and not b.fits("reference")
    # a per-file pick never overwrites the fleet pick of the same budget
    [pf] = save_picks(str(tmp_path), "reference", 32, [(0.2, rule, c)], {"model": "per-file"})
    assert pf.name == "reference-per-file-w32-far20.json" and aset.load(ref).picked_by["harness"] == {"seeds": 4}


def _write(tmp_path, doc) -> Path:
    p = tmp_path / "s.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


GOOD_REF = {"aiot_alert_settings": 1, "target": "reference", "window": 32, "rule": {"threshold_margin": 2.0}}


@pytest.mark.parametrize("doc, message", [
    ("{not json", "not JSON"),
    ({"target": "reference"}, "no 'aiot_alert_settings'"),
    ({**GOOD_REF, "aiot_alert_settings": 7}, "version 7"),
    ({**GOOD_REF, "target": "fpga"}, "'target' is 'fpga'"),
    ({**GOOD_REF, "window": 1}, "'window' is 1"),
    ({**GOOD_REF, "window": "32"}, "'window' is '32'"),
    ({**GOOD_REF, "rule": None}, "needs a 'rule' object"),
    ({**GOOD_REF, "rule": {"threshold_margn": 2.0}}, "unknown rule field(s) threshold_margn"),
    ({**GOOD_REF, "rule": {"smooth": 2.5}}, "'smooth' is 2.5, expected a int"),
    ({**GOOD_REF, "rule": {"raise_after": True}}, "'raise_after' is True"),
    ({**GOOD_REF, "rule": {"smooth": 0}}, "smooth >= 1"),
    ({**GOOD_REF, "rule": {"recover_ratio": 1.5}}, "recover_ratio < 1"),
    ({"aiot_alert_settings": 1, "target": "device", "window": 8}, "needs a 'knobs' object"),
    ({"aiot_alert_settings": 1, "target": "device", "window": 8, "knobs": {"alert_margn": 2}},
     "unknown monitor knob(s) alert_margn"),
    ({"aiot_alert_settings": 1, "target": "device", "window": 8, "knobs": {"alert_margin": "high"}},
     "'alert_margin' is 'high'"),
])
def test_bad_files_name_the_file_and_the_field(tmp_path, doc, message):
    p = _write(tmp_path, doc)
    with pytest.raises(ToolkitError) as e:
        aset.load(p)
    assert message in e.value.message and str(p) in e.value.message


DEVICE = {"aiot_alert_settings": 1, "target": "device", "window": 8}


@pytest.mark.parametrize("knobs, message", [
    # empty: the bare C defaults, a point no tuning picked (it used to run, and alert far less)
    ({}, "'knobs' is empty"),
    ({"fleet_noise_floor": -1}, "'fleet_noise_floor' is -1"),
    ({"fleet_noise_floor": float("nan")}, "'fleet_noise_floor' is nan"),
    ({"fleet_noise_floor": [0.5, 0.5]}, "'fleet_noise_floor' is [0.5, 0.5]"),
    ({"persist_n": -1}, "'persist_n' is -1"),
    ({"recover_ratio": 5}, "'recover_ratio' is 5"),
    ({"alert_margin": 1.0, "clear_margin": 2.0}, "'clear_margin' is 2.0, more than 'alert_margin' 1.0"),
    ({"noise_floor": [0.1, -0.1]}, "'noise_floor' is [0.1, -0.1]"),
    ({"noise_floor": []}, "'noise_floor' is [], expected a number (or one per channel)"),
    ({"noise_floor": [0.1, "x"]}, "'noise_floor' is [0.1, 'x'], expected a number (or one per channel)"),
    ({"alert_margin": [1.0, 2.0]}, "'alert_margin' is [1.0, 2.0], expected a number"),
    ({"persist_k": True}, "'persist_k' is True, expected a number"),
    ({"fleet_noise_floor": "0.5"}, "'fleet_noise_floor' is '0.5', expected one number >= 0"),
    ({"fleet_noise_floor": True}, "'fleet_noise_floor' is True, expected one number >= 0"),
])
def test_bad_device_knobs_name_the_file_and_the_knob(tmp_path, knobs, message):
    p = _write(tmp_path, {**DEVICE, "knobs": knobs})
    with pytest.raises(ToolkitError) as e:
        aset.load(p)
    assert message in e.value.message and str(p) in e.value.message


def test_a_zero_fleet_noise_floor_is_no_floor_and_stays_valid(tmp_path):
    knobs = {"alert_margin": 2.0, "clear_margin": 2.0, "fleet_noise_floor": 0}
    assert aset.load(_write(tmp_path, {**DEVICE, "knobs": knobs})).knobs == knobs


def test_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ToolkitError, match="no such alert-settings file") as e:
        aset.load(tmp_path / "nope.json")
    assert "aiot tune --data NORMAL.csv --out DIR" in e.value.hint


def test_float_fields_take_whole_numbers():
    # JSON writes 2.0 as 2 in some tools: a margin of 2 is still a margin
    assert aset._rule(Path("x"), {"threshold_margin": 2}).threshold_margin == 2


def _cli(tmp_path, *args):
    from aiot.cli import main

    return CliRunner().invoke(main, ["evaluate", "--data", str(FIX / "skab_mini"), "--format", "skab",
                                     "--train-rows", "4", "--out", str(tmp_path / "o"), *args])


def test_cli_refuses_settings_for_another_target_or_window_before_any_work(tmp_path):
    ref = _write(tmp_path, GOOD_REF)
    r = _cli(tmp_path, "--target", "host", "--alert-settings", str(ref))
    assert r.exit_code == 2 and "settings for the reference target, but --target is host" in r.output
    r = _cli(tmp_path, "--target", "reference", "--window", "8", "--alert-settings", str(ref))
    assert r.exit_code == 2 and "picked at window 32, but --window 8 given" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()


def test_cli_refuses_a_pick_made_with_the_other_kind_of_model(tmp_path):
    per_file = _write(tmp_path, {**GOOD_REF, "picked_by": {"model": "per-file"}})
    r = _cli(tmp_path, "--target", "reference", "--alert-settings", str(per_file))
    assert r.exit_code == 2 and "picked with one model per file, but this run uses the fleet model" in r.output
    r = _cli(tmp_path, "--target", "reference", "--per-file", "--alert-settings", str(_write(tmp_path, GOOD_REF)))
    assert r.exit_code == 2 and "picked with the fleet model, but this run uses one model per file" in r.output
    r = _cli(tmp_path, "--per-file", "--target", "reference", "--fleet", str(tmp_path / "f.csv"))
    assert r.exit_code == 2 and "--per-file and --fleet both given" in r.output
    assert not (tmp_path / "o").exists()


def test_cli_refuses_out_of_range_monitor_knobs_naming_the_file(tmp_path):
    bad = _write(tmp_path, {"aiot_alert_settings": 1, "target": "device", "window": 8,
                            "knobs": {"persist_k": 9, "persist_n": 5}})
    r = _cli(tmp_path, "--target", "host", "--alert-settings", str(bad))
    assert r.exit_code == 2 and str(bad) in r.output and "invalid monitor configuration" in r.output
    assert not (tmp_path / "o").exists()


def test_evaluate_runs_with_the_files_rule_and_records_where_it_came_from(tmp_path, monkeypatch, silent_device):
    """A device that never alerts, so only the plumbing is under test: the rule the devices
    get and what report.json says."""
    from aiot.evaluate import pipeline
    from aiot.evaluate import run as run_mod
    from aiot.evaluate.run import evaluate

    monkeypatch.setattr(pipeline, "fleet_package", lambda *a, **k: tmp_path / "no-model")  # no training here
    monkeypatch.setattr(run_mod, "_model_context", lambda package: {"package": str(package)})
    rule = AlertRule(threshold_margin=3.0, smooth=1, raise_after=2, clear_after=2, recover_ratio=0.6)
    c = Confusion(tp=1, fp=1, tn=8, fn=1)
    [path] = save_picks(str(tmp_path), "reference", 2, [(0.3, rule, c)], {"harness": {"seeds": 1}})
    evaluate(data=FIX / "skab_mini", fmt="skab", out=tmp_path / "o", train_rows=4, target="reference", jobs=1,
             alert_settings=path)
    assert silent_device and all((t, r, k) == ("reference", rule, {}) for t, _, r, k, _ in silent_device)
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert doc["settings"]["window"] == 2 and doc["settings"]["rule"] == rule.to_json()
    assert doc["alert_settings"]["file"] == str(path)
    assert doc["alert_settings"]["picked_by"]["far_budget"] == 0.3
    assert len(doc["alert_settings"]["sha256"]) == 64
    html = (tmp_path / "o" / "report.html").read_text()
    assert "picked at a validation FAR budget of 30 %" in html and "validation F1 0.500" in html


def test_tuning_cli_checks_budgets_and_label_combinations(tmp_path):
    from click.testing import CliRunner

    from aiot.cli import main

    normal = tmp_path / "normal.csv"
    normal.write_text("timestamp,a\n0,1\n1,2\n")
    r = CliRunner().invoke(main, ["tune", "--far-budget", "0", str(normal)])
    assert r.exit_code == 2 and "--far-budget" in r.output
    r = CliRunner().invoke(main, ["tune", str(normal), "--labels", str(tmp_path)])
    assert r.exit_code == 2 and "not both" in r.output
    # with --labels, one budget per data set (or one for all): two for one data set is refused
    r = CliRunner().invoke(main, ["tune", "--labels", str(tmp_path), "--far-budget", "5", "--far-budget", "10"])
    assert r.exit_code == 2 and "2 --far-budget for 1 --labels" in r.output


def test_per_file_ignores_the_fleet_recording_and_trains_on_each_files_commissioning_rows(tmp_path, monkeypatch,
                                                                                        silent_device):
    from aiot.evaluate import pipeline
    from aiot.evaluate.run import evaluate

    trained = []

    def file_package(rec, start, settings, cache=None):
        trained.append((rec.name, start))
        (tmp_path / rec.name).mkdir(parents=True)
        (tmp_path / rec.name / "model.tflite").write_bytes(rec.name.encode())
        return tmp_path / rec.name

    monkeypatch.setattr(pipeline, "file_package", file_package)
    # the training is a stand-in here: the 12-row files need not hold what a real model trains on
    monkeypatch.setattr(pipeline, "own_model_rows", lambda window: 2 * window)
    monkeypatch.setattr(pipeline, "fleet_package", lambda *a, **k: pytest.fail("the fleet model was trained"))
    evaluate(data=FIX / "skab_mini", fmt="skab", out=tmp_path / "o", train_rows=4, target="reference", jobs=1,
             window=2, per_file=True)
    assert sorted(trained) == [("valve1/0.csv", 4), ("valve1/10.csv", 4), ("valve1/2.csv", 4)]
    assert sorted(str(pkg) for _, pkg, _, _, _ in silent_device) == sorted(str(tmp_path / n) for n, _ in trained)
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["model"]["kind"] == "per-file"
    # each file's record names its own model
    assert [f["commissioning"]["model"]["package"] for f in rep["files"]] == [
        str(tmp_path / f["file"]) for f in rep["files"]]


@pytest.mark.slow
def test_tuning_end_to_end_saves_one_loadable_pick_per_budget(tmp_path, monkeypatch, capsys):
    """The whole tuning command on a small normal recording (a real model, few pieces): one
    file per budget, each a rule from the grid whose recorded validation FAR fits its budget."""
    import numpy as np

    from aiot.evaluate.tuning import grid

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    rng = np.random.default_rng(1)
    normal = tmp_path / "normal.csv"
    rows = [f"{t},{10 + rng.normal():.4f},{5 + 0.5 * rng.normal():.4f},{rng.normal():.4f}" for t in range(2600)]
    normal.write_text("timestamp,a,b,c\n" + "\n".join(rows) + "\n")
    from click.testing import CliRunner

    from aiot.cli import main

    r = CliRunner().invoke(main, ["tune", "--target", "reference", "--no-recovery", "--seeds", "1", "--window", "8",
                                  "--far-budget", "2", "--far-budget", "30", "--save", str(tmp_path / "picks"),
                                  str(normal)])
    assert r.exit_code == 0, r.output
    out = r.output
    assert "pick at FAR <= 2 %, alert rows:" in out and "pick at FAR <= 30 %, alert rows:" in out
    rules = [r.to_json() for r in grid()]
    for pct in (2, 30):
        s = aset.load(tmp_path / "picks" / f"reference-w8-far{pct}.json")
        assert s.target == "reference" and s.window == 8 and s.rule.to_json() in rules
        by = s.picked_by
        assert by["far_budget"] == pct / 100 and by["model"] == "fleet" and by["harness"]["seeds"] == 1
        assert by["validation"]["far"] <= pct / 100
        assert f"pick at FAR <= {pct} %: {json.dumps(s.rule.to_json())}" in out
