"""`aiot tune` across several labelled data sets at once (SKAB and TEP, or two installations'
histories): folds side by side, each data set judged by its own figure within its own
false-alarm budget, no file ever scored with settings chosen on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from aiot.cli import main
from aiot.evaluate.crossval import Source, choose_sources, cross_validate, folds_of
from aiot.evaluate.metrics import Confusion as C

TEP_NAMES = [f"test/d{k:02d}.csv" for k in range(22)]


def test_tep_files_are_dealt_into_three_groups_by_fault_number():
    folds = folds_of(TEP_NAMES, "3")
    assert sorted(n for n, g in folds.items() if g == "group1of3") == [f"test/d{k:02d}.csv" for k in range(0, 22, 3)]
    assert sorted(n for n, g in folds.items() if g == "group2of3") == [f"test/d{k:02d}.csv" for k in range(1, 22, 3)]
    assert sorted(n for n, g in folds.items() if g == "group3of3") == [f"test/d{k:02d}.csv" for k in range(2, 22, 3)]


def test_folds_refuse_a_single_group():
    from aiot.errors import ToolkitError

    with pytest.raises(ToolkitError):
        folds_of(TEP_NAMES, "1")


# Two data sets, three settings.
#   skab: s/1, s/2 (judged by pooled F1, FAR budget 10 %)
#   tep: t/d00 (normal throughout), t/d01, t/d02 (judged by mean detection rate, budget 5 %)
# "loud": the best figures on both, but 8 % false alarms on TEP's normal rows: over TEP's 5 %
#   budget, although its FAR pooled over every row (4 + 8 + ... ) would be within 10 %
# "fair": within both budgets
# "quiet": within both budgets, fewer detections
SKAB = {"s/1.csv": None, "s/2.csv": None}


def _scored():
    loud = {"skab:s/1.csv": C(tp=90, fn=10, fp=4, tn=96), "skab:s/2.csv": C(tp=90, fn=10, fp=4, tn=96),
            "tep:t/d00.csv": C(fp=8, tn=92), "tep:t/d01.csv": C(tp=100, fn=0, fp=0, tn=10),
            "tep:t/d02.csv": C(tp=90, fn=10, fp=0, tn=10)}
    fair = {"skab:s/1.csv": C(tp=80, fn=20, fp=5, tn=95), "skab:s/2.csv": C(tp=80, fn=20, fp=5, tn=95),
            "tep:t/d00.csv": C(fp=4, tn=96), "tep:t/d01.csv": C(tp=100, fn=0, fp=0, tn=10),
            # one big fault file found poorly, pooled F1 would hide it; the mean per fault does not
            "tep:t/d02.csv": C(tp=20, fn=80, fp=0, tn=10)}
    quiet = {"skab:s/1.csv": C(tp=50, fn=50, fp=0, tn=100), "skab:s/2.csv": C(tp=50, fn=50, fp=0, tn=100),
             "tep:t/d00.csv": C(fp=0, tn=100), "tep:t/d01.csv": C(tp=60, fn=40, fp=0, tn=10),
             "tep:t/d02.csv": C(tp=60, fn=40, fp=0, tn=10)}
    return [("loud", loud), ("fair", fair), ("quiet", quiet)]


def _sources():
    names = set(_scored()[0][1])
    return [Source("skab", frozenset(n for n in names if n.startswith("skab:")), 0.10, "f1"),
            Source("tep", frozenset(n for n in names if n.startswith("tep:")), 0.05, "detection")]


def test_each_data_set_keeps_its_own_budget_and_figure():
    scored, sources = _scored(), _sources()
    names = set(scored[0][1])
    # loud: TEP false alarms 8 / (100 + 10 + 10) = 6.7 % > 5 %: out, although its FAR over every row
    # (8 + 8) / (200 + 120) = 5 % is within 10 %
    assert sources[1].figure(scored[0][1], names)[1] == pytest.approx(8 / 120)
    # fair: SKAB F1 160 / (160 + (10 + 40) / 2) = 0.865, TEP mean detection (1.0 + 0.2) / 2 = 0.60 -> 0.732
    # quiet: SKAB F1 100 / (100 + 100 / 2) = 0.667, TEP (0.6 + 0.6) / 2 = 0.60 -> 0.633
    assert sources[1].figure(scored[1][1], names)[0] == pytest.approx(0.6)
    assert sources[0].figure(scored[1][1], names)[0] == pytest.approx(160 / 185)
    i, ok = choose_sources(scored, names, sources)
    assert (scored[i][0], ok) == ("fair", True)
    # TEP's budget at 10 % lets loud in: SKAB 180 / (180 + (8 + 20) / 2) = 0.928, TEP (1.0 + 0.9) / 2 = 0.95
    wide = [sources[0], Source("tep", sources[1].files, 0.10, "detection")]
    assert scored[choose_sources(scored, names, wide)[0]][0] == "loud"


def test_no_setting_within_every_budget_is_flagged_not_hidden():
    scored, sources = _scored(), _sources()
    names = set(scored[0][1])
    zero = [Source("skab", sources[0].files, 0.0, "f1"), Source("tep", sources[1].files, 0.0, "detection")]
    i, ok = choose_sources(scored, names, zero)
    assert (scored[i][0], ok) == ("quiet", True)  # the only one without a false alarm anywhere
    quiet = dict(scored[2][1], **{"skab:s/1.csv": C(tp=50, fn=50, fp=1, tn=99)})
    i, ok = choose_sources([scored[0], scored[1], ("quiet", quiet)], names, zero)
    assert (scored[i][0], ok) == ("loud", False)  # none fits: the best mean of the figures, flagged


def test_joint_folds_never_score_a_file_with_settings_chosen_on_it():
    scored, sources = _scored(), _sources()
    folds = {**{f"skab:{n}": f"skab:{n.split('/')[0]}{n[-5]}" for n in SKAB},
             **{f"tep:{n}": f"tep:{g}" for n, g in folds_of(["t/d00.csv", "t/d01.csv", "t/d02.csv"], "3").items()}}
    cv = cross_validate(scored, folds, sources=sources)
    assert len(cv.folds) == 5
    every = set(folds)
    for f in cv.folds:
        assert not set(f.files) & set(f.train_files)
        assert set(f.files) | set(f.train_files) == every
        # the fold's setting is within every budget on the files it was chosen on
        assert f.within_budget and all(r["within_far_budget"] for r in f.train_by_data.values())
    assert sorted(cv.held_out_by_file()) == sorted(every)


def _write_csv(path, header, rows, sep=","):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sep.join(header) + "\n" + "\n".join(sep.join(r) for r in rows) + "\n")


def _skab_like(root, rng):
    """anomaly-free + valve1/valve2/other, one file each: 3 sensors, a level step while labelled."""
    cols = ["datetime", "a", "b", "c"]

    def rows(n, labels=None, shift=0.0, t0=0):
        v = rng.normal(size=(n, 3)) * 0.2 + np.array([5.0, 1.0, -2.0])
        lab = np.zeros(n, int) if labels is None else labels
        v += shift * lab[:, None]
        out = []
        for i in range(n):
            t = t0 + i
            ts = f"2020-03-09 {10 + t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}"
            out.append([ts, *(f"{x:.4f}" for x in v[i]), *([] if labels is None else [f"{lab[i]:.1f}", "0.0"])])
        return out

    _write_csv(root / "anomaly-free" / "anomaly-free.csv", cols, rows(900), ";")
    for folder, shift in (("valve1", 3.0), ("valve2", 1.5), ("other", 2.0)):
        y = np.zeros(640, int)
        y[480:600] = 1
        _write_csv(root / folder / "0.csv", cols + ["anomaly", "changepoint"], rows(640, y, shift), ";")


def _tep_like(root, rng):
    """normal.csv + test/d00..d05: 3 sensors every 3 min, faults from row 160."""
    cols = ["timestamp", "x1", "x2", "x3", "label"]

    def rows(labels, shift):
        v = rng.normal(size=(labels.size, 3)) + shift * labels[:, None]
        return [[str(1000 + 180 * i), *(f"{x:.4f}" for x in v[i]), str(labels[i])] for i in range(labels.size)]

    _write_csv(root / "normal.csv", cols, rows(np.zeros(400, int), 0.0))
    for k, shift in enumerate((0.0, 6.0, 3.0, 0.5, 4.0, 2.0)):
        y = np.zeros(320, int)
        if k:
            y[160:] = 1
        _write_csv(root / "test" / f"d{k:02d}.csv", cols, rows(y, shift))


@pytest.mark.slow
def test_tune_across_two_data_sets_on_the_device(tmp_path, monkeypatch):
    """`aiot tune --labels S --format skab --labels T --format tep` on tiny synthetic sets with a
    four-setting grid: each fold's report names the files its setting was chosen on, none of
    them held out there; each data set's budget is its own; every file is scored once."""
    from aiot.evaluate import tuning

    from aiot.testing import fresh_model_cache

    fresh_model_cache(monkeypatch, tmp_path / "cache")  # models trained here; the compiled C shared
    monkeypatch.setattr(tuning, "MONITOR_GRID", {**tuning.MONITOR_GRID, "alert_margin": (0.75, 2.5), "clear_ratio": (1.0,),
                                                 "fleet_noise_floor": (1.0,), "recover_ratio": (0.0,),
                                                 "score_average": (1,), "level_windows": (0, 1),
                                                 "clear_band": (3,), "spread_score": (0,),
                                                 "residual_score": (0,)})
    rng = np.random.default_rng(5)
    _skab_like(tmp_path / "skab", rng)
    _tep_like(tmp_path / "tep", rng)
    r = CliRunner().invoke(main, ["tune", "--labels", str(tmp_path / "skab"), "--format", "skab",
                                  "--labels", str(tmp_path / "tep"), "--format", "tep", "--far-budget", "10",
                                  "--far-budget", "5", "--jobs", "1", "--no-scenario-gate", "--out", str(tmp_path / "cv")])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert doc["far_budget"] == {"skab": 0.10, "tep": 0.05} and doc["grid_size"] == 4
    assert [f["fold"] for f in doc["folds"]] == ["skab:other", "skab:valve1", "skab:valve2", "tep:group1of3",
                                                 "tep:group2of3", "tep:group3of3"]
    every = {n for f in doc["folds"] for n in f["files"]}
    assert len(every) == 3 + 6 and sum(len(f["files"]) for f in doc["folds"]) == 9  # each file held out once
    for f in doc["folds"]:
        assert not set(f["files"]) & set(f["chosen_on"]) and set(f["files"]) | set(f["chosen_on"]) == every
        figs = f["chosen_on_other_folds_by_data"]
        assert set(figs) == {"skab", "tep"}
        assert figs["skab"]["far_budget"] == 0.10 and figs["tep"]["far_budget"] == 0.05
        if f["within_far_budget"]:
            assert all(v["far"] is None or v["far"] <= v["far_budget"] for v in figs.values())
    # every scored row once: SKAB 3 x (640 - 400), TEP 6 x (320 - 100)
    h = doc["held_out"]
    assert h["tp"] + h["fp"] + h["tn"] + h["fn"] == 3 * 240 + 6 * 220
    assert doc["tep_held_out"]["faults"] == 5
    assert "tep:group1of3" in r.output and "held out, every file once" in r.output
