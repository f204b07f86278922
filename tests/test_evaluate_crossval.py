"""Cross-validated choice of alert settings (`aiot tune --labels`): hand-made per-file
confusions whose folds, picks and held-out counts are worked out by hand."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from aiot.cli import main
from aiot.errors import ToolkitError
from aiot.evaluate.crossval import choose, cross_validate, folds_of
from aiot.evaluate.metrics import Confusion as C

# three files in two folders; two settings:
#   "A" is excellent on a/1 and a/2 but floods b/1 with false alarms
#   "B" is fair everywhere
SCORED = [
    ("A", {"a/1.csv": C(tp=9, fp=0, tn=90, fn=1), "a/2.csv": C(tp=9, fp=1, tn=89, fn=1),
           "b/1.csv": C(tp=10, fp=60, tn=30, fn=0)}),
    ("B", {"a/1.csv": C(tp=6, fp=2, tn=88, fn=4), "a/2.csv": C(tp=6, fp=2, tn=88, fn=4),
           "b/1.csv": C(tp=6, fp=2, tn=88, fn=4)}),
]


def test_folds_by_folder_and_by_file():
    names = ["valve1/0.csv", "valve2/3.csv", "other/1.csv", "valve1/2.csv"]
    assert folds_of(names, "folder") == {"valve1/0.csv": "valve1", "valve2/3.csv": "valve2",
                                         "other/1.csv": "other", "valve1/2.csv": "valve1"}
    assert folds_of(names, "file") == {n: n for n in names}


def test_choose_best_f1_within_the_budget_else_best_f1_flagged():
    # on a/*: A pooled tp 18 fp 1 tn 179 fn 2 -> F1 18/19.5 = 0.923, FAR 1/180; B: 12/(12+6) = 0.667
    i, c, ok = choose(SCORED, {"a/1.csv", "a/2.csv"}, 0.10)
    assert (i, ok, (c.tp, c.fp, c.tn, c.fn)) == (0, True, (18, 1, 179, 2))
    # on everything with a 1 % budget: A's FAR 61/270, B's 6/270 = 2.2 %: none fits -> best F1 (A, 28/(28+31)
    # = 0.475 vs B 18/(18+9) = 0.667) -> B, flagged outside the budget
    i, c, ok = choose(SCORED, {"a/1.csv", "a/2.csv", "b/1.csv"}, 0.01)
    assert (i, ok) == (1, False)


def test_leave_one_folder_out_never_scores_a_file_with_settings_chosen_on_it():
    cv = cross_validate(SCORED, folds_of(["a/1.csv", "a/2.csv", "b/1.csv"], "folder"), 0.10)
    by = {f.name: f for f in cv.folds}
    # fold a: chosen on b/1 alone: A's FAR 60/90 > 10 %, B's 2/90 -> B; held out = B on a/1 + a/2
    assert by["a"].setting == 1 and (by["a"].test.tp, by["a"].test.fp, by["a"].test.fn) == (12, 4, 8)
    # fold b: chosen on a/*: A; held out = A on b/1: the flood shows, as it must
    assert by["b"].setting == 0 and (by["b"].test.tp, by["b"].test.fp, by["b"].test.tn) == (10, 60, 30)
    h = cv.held_out
    assert (h.tp, h.fp, h.tn, h.fn) == (22, 64, 206, 8)
    assert h.f1 == pytest.approx(22 / (22 + 36)) and h.far == pytest.approx(64 / 270)
    # the settings to ship: chosen on all files (A's pooled FAR 61/270 = 22.6 % is over budget -> B)
    assert cv.final == 1 and cv.final_within_budget
    assert set(cv.held_out_by_file()) == {"a/1.csv", "a/2.csv", "b/1.csv"}


def test_one_fold_is_refused_with_the_way_out():
    with pytest.raises(ToolkitError) as e:
        cross_validate(SCORED, {"a/1.csv": "a", "a/2.csv": "a", "b/1.csv": "a"}, 0.1)
    assert "--folds file" in e.value.hint


def test_tune_labels_without_a_normal_recording_says_it_trains_one_model_per_file_and_what_is_too_short(tmp_path):
    # no normal recording: one model per file on its own commissioning rows (tests/test_tune_incident_folds.py);
    # a 2-row file has too few of them, and the error says how many it takes
    (tmp_path / "x.csv").write_text("timestamp,a,label\n0,1,0\n1,2,1\n")
    r = CliRunner().invoke(main, ["tune", "--labels", str(tmp_path), "--format", "generic"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "no normal recording" in r.output and "one model per file" in r.output
    assert "at least 63 commissioning rows" in r.output


def test_one_window_only_for_the_harness(tmp_path):
    normal = tmp_path / "normal.csv"
    normal.write_text("timestamp,a\n0,1\n1,2\n")
    r = CliRunner().invoke(main, ["tune", str(normal), "--window", "8", "--window", "16"])
    assert r.exit_code == 2 and "several go with --labels" in r.output


@pytest.mark.slow
def test_tune_labels_end_to_end_on_a_small_tep_shaped_folder(tmp_path, monkeypatch):
    """Every file is scored once, held out, at a window chosen inside the folds; the saved
    settings load for aiot evaluate at that window."""
    import json

    import numpy as np

    from aiot.evaluate import alert_settings

    from aiot.testing import fresh_model_cache

    fresh_model_cache(monkeypatch, tmp_path / "cache")  # models trained here; the compiled C shared
    rng = np.random.default_rng(0)
    root = tmp_path / "tep"

    def write(path, labels, shift):
        path.parent.mkdir(parents=True, exist_ok=True)
        v = rng.normal(size=(labels.size, 3)) + shift * labels[:, None]
        rows = [f"{1000 + 180 * i},{a:.4f},{b:.4f},{c:.4f},{y}" for i, ((a, b, c), y) in enumerate(zip(v, labels))]
        path.write_text("timestamp,x1,x2,x3,label\n" + "\n".join(rows) + "\n")

    write(root / "normal.csv", np.zeros(400, int), 0.0)
    for k, shift in ((0, 0.0), (1, 6.0), (2, 3.0)):
        y = np.zeros(300, int)
        if k:
            y[160:] = 1
        write(root / "test" / f"d{k:02d}.csv", y, shift)
    r = CliRunner().invoke(main, ["tune", "--labels", str(root), "--format", "tep", "--folds", "file",
                                  "--target", "reference", "--window", "4", "--window", "8", "--far-budget", "5",
                                  "--save", str(tmp_path / "cv")])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert [f["fold"] for f in doc["folds"]] == ["test/d00.csv", "test/d01.csv", "test/d02.csv"]
    held = doc["held_out"]
    # every scored row once: 3 files x (300 - 100 commissioning rows)
    assert held["tp"] + held["fp"] + held["tn"] + held["fn"] == 3 * 200
    assert sum(f["held_out"]["tp"] for f in doc["folds"]) == held["tp"]
    assert all(f["setting"]["window"] in (4, 8) for f in doc["folds"])
    [path] = [p for p in (tmp_path / "cv").iterdir() if p.name.startswith("reference-w")]
    s = alert_settings.load(path)
    assert s.window == doc["settings"]["window"] and s.picked_by["validation"]["kind"] == "cross-validated, held out"
    assert "held out, every file once" in r.output and "TEP held out" in r.output


def test_two_data_sets_are_one_cross_validation_with_their_folds_side_by_side(monkeypatch, capsys):
    # SKAB-like a/1, a/2, b/1 (SCORED above) by folder, and a TEP-like folder by file, the same
    # two settings: folds skab:a, skab:b, tep:test/d00.csv, tep:test/d01.csv
    from aiot.evaluate import crossval

    tep = [("A", {"test/d00.csv": C(fp=50, tn=50), "test/d01.csv": C(tp=90, fn=10, fp=5, tn=5)}),
           ("B", {"test/d00.csv": C(fp=1, tn=99), "test/d01.csv": C(tp=60, fn=40, fp=0, tn=10)})]
    parts = {"skab": SCORED, "tep": tep}

    def fake_score(data, fmt, target, windows, jobs, level_only, csv_options, fixed_knobs=None, folds_by="folder",
                   per_file=False, fleet=None, early_warning_s=0.0):
        part = parts[fmt]
        return [((8, {"s": k}), per) for k, per in part], sorted(part[0][1]), 100, "fleet", None

    monkeypatch.setattr(crossval, "_score", fake_score)
    doc = crossval.run(["S", "T"], ["skab", "tep"], "device", (8,), 0.10, ["folder", "file"], None,
                       scenario_gate=False)  # the stand-in settings are no monitor knobs (tests/test_tune_gate.py)
    assert [f["fold"] for f in doc["folds"]] == ["skab:a", "skab:b", "tep:test/d00.csv", "tep:test/d01.csv"]
    # fold tep:test/d00.csv, chosen on the rest, each data set within its own budget (10 % for both here):
    # A's SKAB FAR 61 / 270 = 22.6 % is over it; B's SKAB 6 / 270 and TEP 0 / 10 are within -> B
    d00 = doc["folds"][2]
    assert d00["setting"] == {"window": 8, "s": "B"}
    assert d00["held_out"]["fp"] == 1 and d00["held_out"]["tn"] == 99
    by = doc["held_out_by_data"]
    # with the TEP files among those choices are made on, A's false alarms there (55 of 110 normal rows,
    # over TEP's budget) rule it out for both SKAB folds too: B everywhere, SKAB TP 6 + 6 + 6
    assert set(by) == {"skab", "tep"} and by["skab"]["tp"] == 18
    assert doc["tep_held_out"]["faults"] == 1  # only the TEP files enter TEP's figures
    assert "tep: F1" in capsys.readouterr().out
