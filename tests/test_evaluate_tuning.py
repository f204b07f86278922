"""The validation harness that picks the evaluation settings without benchmark test rows:
SKAB-shaped pseudo-installations cut from normal data, with injected, labelled faults."""

from __future__ import annotations

import numpy as np

from aiot.data import Series
from aiot.evaluate.tuning import SHAPE, pseudo_installations


def _normal(rows: int = 2400, channels: int = 3) -> Series:
    rng = np.random.default_rng(7)
    v = 10.0 + rng.standard_normal((rows, channels))
    return Series(np.arange(rows, dtype=float), v, np.ones(v.shape, bool), None, [f"s{i}" for i in range(channels)])


def test_each_piece_has_one_labelled_fault_where_the_shape_says():
    normal = _normal()
    pieces = pseudo_installations(normal)
    f0, f1 = SHAPE[0] + SHAPE[1], SHAPE[0] + SHAPE[1] + SHAPE[2]
    assert len(pieces) == (normal.rows - sum(SHAPE)) // 250 + 1
    for k, rec in enumerate(pieces):
        s = rec.series
        assert s.rows == sum(SHAPE)
        assert s.labels[:f0].sum() == 0 and s.labels[f0:f1].all() and s.labels[f1:].sum() == 0
        clean = normal.slice(250 * k, 250 * k + sum(SHAPE)).values
        changed = np.flatnonzero(np.abs(s.values - clean).max(axis=0) > 0)
        assert sorted(changed.tolist()) == sorted(rec.meta["channels"])
        # no change outside the fault without recovery: commissioning and the rows after it are the normal data
        assert np.array_equal(s.values[:f0], clean[:f0]) and np.array_equal(s.values[f1:], clean[f1:])


def test_recovery_fades_the_fault_out_after_its_label_and_changes_nothing_before():
    normal = _normal()
    plain = pseudo_installations(normal)
    faded = pseudo_installations(normal, recovery=True)
    f1 = SHAPE[0] + SHAPE[1] + SHAPE[2]
    for p, r in zip(plain, faded):
        assert np.array_equal(p.series.labels, r.series.labels)
        assert np.array_equal(p.series.values[:f1], r.series.values[:f1])  # same faults up to the label's end
        c = r.meta["channels"][0]
        after = np.abs(r.series.values[f1:, c] - p.series.values[f1:, c])
        if r.meta["kind"] in ("step", "ramp"):  # the offset left at the end decays to (nearly) nothing
            # row f1 carries the full offset (2..5 sigma), then it decays with a 30..120-row time constant
            assert after[0] > 1.0
            assert after[-1] <= after[0] * np.exp(-(len(after) - 1) / 120.0) * 1.001
            assert after[-1] >= after[0] * np.exp(-(len(after) - 1) / 30.0) * 0.999
        else:  # extra noise fades: the first rows after the fault are noisier than the last
            assert after[:20].mean() > after[-20:].mean()


def test_phase_rates_split_alert_rows_around_the_labelled_fault():
    from aiot.evaluate.tuning import phase_rates

    # piece 1: 4 normal, 3 faulty, 5 normal rows; piece 2: 2 normal, 2 faulty, 2 normal
    lab1 = np.array([0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0])
    al1 = np.array([1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0])
    lab2 = np.array([0, 0, 1, 1, 0, 0])
    al2 = np.array([0, 0, 1, 1, 1, 0])
    r = phase_rates([(lab1, al1), (lab2, al2)])
    assert r["pre_far"] == 1 / 6  # 1 of 4 + 0 of 2
    assert r["recall"] == 4 / 5  # 2 of 3 + 2 of 2
    assert r["post_far"] == 3 / 7  # 2 of 5 + 1 of 2


def test_phase_rates_refuse_a_piece_without_fault():
    import pytest

    from aiot.evaluate.tuning import phase_rates

    with pytest.raises(ValueError, match="without a labelled fault"):
        phase_rates([(np.zeros(5, int), np.zeros(5, int))])


def test_every_monitor_grid_setting_is_a_valid_monitor_config():
    """The grid's knobs (and the remount-off value that was tried) pass the C check_config."""
    from aiot import monitor as M
    from aiot.evaluate.monitor_device import FLOOR_KNOB, PCA_KNOB, monitor_knobs
    from aiot.evaluate.tuning import monitor_grid

    grid = monitor_grid()
    # margins x floors x (clear = alert, or clear 0.75 x alert with recovering off or 0.7) x score averaging x
    # (energy, level 1 or 3 with spread off or on and residual 0, 1, 2 or 3 with the autoencoder, or
    # residual 4 with the linear model of the window means at 99 % or 99.7 % of their variance) x band
    assert len(grid) == 4 * 2 * (1 + 2) * 3 * (1 + 2 * 2 * (4 + 2)) * 2
    # every axis is always written, its off value too: a setting stays itself when a header default moves
    # (the shipped defaults are the cross-validation's pick, docs/monitor.md)
    assert {k["alert_margin"] for k in grid} == {2.0, 2.5, 3.0, 3.5}
    assert {k["clear_band"] for k in grid} == {3, 6}
    assert {k["recover_ratio"] for k in grid} == {0.0, 0.7}
    assert {k["clear_margin"] / k["alert_margin"] for k in grid} == {1.0, 0.75}
    # recovering only where it can act: under a clear level below the alert threshold
    assert all(k["clear_margin"] < k["alert_margin"] for k in grid if k["recover_ratio"])
    assert {k["score_average"] for k in grid} == {1, 4, 8}
    assert {k["level_windows"] for k in grid} == {0, 1, 3}
    assert {k["spread_score"] for k in grid} == {0, 1}
    assert all(k["level_windows"] > 0 for k in grid if k["spread_score"])
    assert {k["residual_score"] for k in grid} == {0, 1, 2, 3, 4}
    assert all(k["level_windows"] > 0 for k in grid if k["residual_score"])
    # the pooled window-mean residual runs with the model of the window means, and only it
    assert all((k["residual_score"] == 4) == (PCA_KNOB in k) for k in grid)
    assert {k[PCA_KNOB] for k in grid if PCA_KNOB in k} == {0.99, 0.997}
    assert all(PCA_KNOB not in k and k["residual_score"] < 4 for k in monitor_grid(per_file=True))
    assert (grid[0]["score_average"], grid[0]["level_windows"], grid[0]["spread_score"], grid[0]["residual_score"]) == (1, 0, 0, 0)
    for knobs in grid + [dict(grid[0], max_recal_step=0.5)]:
        k = {key: v for key, v in knobs.items() if key not in (FLOOR_KNOB, PCA_KNOB)}  # evaluation-side, not C fields
        cfg = M.default_config(8, 8, 1000, **monitor_knobs(8, SHAPE[0]), **k)
        assert cfg.alert_margin == knobs["alert_margin"] and cfg.persist_k == knobs["persist_k"]
        assert abs(cfg.recover_ratio - knobs["recover_ratio"]) < 1e-7
        assert cfg.score_average == knobs["score_average"]
        assert cfg.level_windows == knobs["level_windows"]
        assert cfg.clear_band == knobs["clear_band"]
        assert cfg.spread_score == knobs["spread_score"]
        assert cfg.residual_score == knobs["residual_score"]


def test_level_only_keeps_the_level_shift_settings_of_the_grid():
    from aiot.evaluate.tuning import monitor_grid

    for per_file in (False, True):
        full, level = monitor_grid(per_file), monitor_grid(per_file, level_only=True)
        assert level == [k for k in full if k["level_windows"]]
        # the energy score alone is one of 25 combinations of the fleet grid, of 17 of the per-file one
        assert len(level) * (17 if per_file else 25) == len(full) * (16 if per_file else 24)


def test_the_argparse_entry_point_is_gone_everything_is_aiot_tune():
    # issue 19: one command line (click); python -m aiot.evaluate.tuning no longer runs anything
    import aiot.evaluate.tuning as tuning

    assert not hasattr(tuning, "main") and not hasattr(tuning, "_main")
    src = open(tuning.__file__).read()
    assert "argparse" not in src and "__main__" not in src


def test_cli_level_only_needs_the_monitor_grid(tmp_path):
    from click.testing import CliRunner

    from aiot.cli import main

    normal = tmp_path / "normal.csv"
    normal.write_text("timestamp,a\n0,1\n1,2\n")
    r = CliRunner().invoke(main, ["tune", str(normal), "--target", "reference", "--level-only"])
    assert r.exit_code == 2 and "it goes with --target device" in r.output


def test_cli_without_normal_data_stops_with_a_usage_error():
    from click.testing import CliRunner

    from aiot.cli import main

    r = CliRunner().invoke(main, ["tune", "--recovery"])
    assert r.exit_code == 2 and "recording of normal operation" in r.output and "--labels DATA" in r.output


def test_warmup_slopes_are_least_squares_slopes_of_commissioning_rows_only():
    from aiot.evaluate.tuning import warmup_slopes

    t = np.arange(400, dtype=float)
    v = np.stack([5.0 + 0.01 * t, 2.0 - 0.002 * t, np.full(400, 3.0)], axis=1)
    valid = np.ones(v.shape, bool)
    valid[10:20, 0] = False  # missing samples do not bend the fit
    v[10:20, 0] = 1e6
    a = Series(t, v, valid, np.zeros(400, np.int8), ["s0", "s1", "s2"])
    faulty = Series(t, v.copy(), valid, np.r_[np.zeros(390, np.int8), np.ones(10, np.int8)], ["s0", "s1", "s2"])
    got = warmup_slopes([a, faulty], ["s0", "s1", "s2"])
    assert got.shape == (1, 3)  # the installation with labelled commissioning rows is left out
    assert np.allclose(got[0], [0.01, -0.002, 0.0], atol=1e-9)
    import pytest

    with pytest.raises(ValueError, match="differ"):
        warmup_slopes([a], ["x", "s1", "s2"])
    with pytest.raises(ValueError, match="no installation"):
        warmup_slopes([faulty], ["s0", "s1", "s2"])


def test_warmup_drifts_every_piece_from_its_first_row_and_levels_off():
    normal = _normal(channels=6)
    slope = np.array([[0.01, -0.02, 0.0, 0.005, 0.0, -0.001]])
    plain = pseudo_installations(normal, recovery=True)
    warm = pseudo_installations(normal, recovery=True, warmup=slope)
    t = np.arange(sum(SHAPE), dtype=float)
    checked = 0
    for p, w in zip(plain, warm):
        assert p.meta["channels"] == w.meta["channels"]  # the same faults
        d = w.series.values - p.series.values
        # sigma comes from the drifting commissioning rows, so fault sizes may differ slightly:
        # check a channel the fault left alone (the zero-slope one must not move at all)
        clean = [c for c in range(6) if c not in w.meta["channels"]]
        for c in clean:
            checked += 1
            if slope[0, c] == 0.0:
                assert np.allclose(d[:, c], 0.0)
                continue
            drift = d[:, c] / slope[0, c]  # = tau (1 - exp(-t / tau)) for one tau in 400..1200
            assert drift[0] == 0.0 and np.all(np.diff(drift) > 0)
            lo, hi = 400.0 * (1 - np.exp(-t / 400.0)), 1200.0 * (1 - np.exp(-t / 1200.0))
            assert np.all(drift >= lo - 1e-3) and np.all(drift <= hi + 1e-3)
    assert checked >= 12


def test_warmup_change_is_in_floored_noise_units():
    from aiot.evaluate.tuning import warmup_change

    t = np.arange(400, dtype=float)
    rng = np.random.default_rng(3)
    v = np.stack([100.0 + 0.01 * t + 0.1 * rng.standard_normal(400), 0.001 * rng.standard_normal(400)], axis=1)
    head = Series(t, v, np.ones(v.shape, bool), None, ["warm", "quiet"])
    # fleet: warm sensor at level 100 with spread 10 (relative floor 0.5 x 10 / 100 = 5 % of
    # its level, i.e. 5 units); quiet sensor near 0 with spread 0.2 (absolute floor 0.1)
    got = warmup_change(head, np.array([100.0, 0.0]), np.array([10.0, 0.2]))
    level = v[:, 0].mean()
    want0 = abs(v[-100:, 0].mean() - v[:100, 0].mean()) / (0.05 * level)  # ~3 units over 300 rows / ~5.1
    assert abs(got[0] - want0) < 1e-9
    assert abs(got[1] - abs(v[-100:, 1].mean() - v[:100, 1].mean()) / 0.1) < 1e-9


def test_cli_bad_paths_are_one_line_errors(tmp_path):
    from click.testing import CliRunner

    from aiot.cli import main

    r = CliRunner().invoke(main, ["tune", "--recovery", str(tmp_path / "none.csv")])
    assert r.exit_code == 2 and "does not exist" in r.output and "Traceback" not in r.output
    normal = tmp_path / "normal.csv"
    normal.write_text("timestamp,a,b\n" + "".join(f"{t},{t % 7},{t % 5}\n" for t in range(2400)))
    r = CliRunner().invoke(main, ["tune", "--recovery", "--warmup", str(tmp_path / "no-skab"), str(normal)])
    assert r.exit_code == 2 and "no-skab" in r.output and "does not exist" in r.output and "Traceback" not in r.output


def _three_pieces_and_a_model(tmp_path, monkeypatch):
    """Three SKAB-shaped pieces with injected faults and a small device model of 3 sensors."""
    from aiot.data import Series
    from aiot.data.readers import Dataset
    from aiot.evaluate.monitor_device import device_file_model

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    rng = np.random.default_rng(3)
    n = 2 * sum(SHAPE)
    t = np.arange(n, dtype=np.float64)
    v = np.stack([10 + 0.5 * np.sin(t / 7) + 0.1 * rng.normal(size=n), 5 + 0.2 * rng.normal(size=n),
                  0.3 * rng.normal(size=n)], axis=1)
    normal = Series(timestamps=t, values=v, valid=np.ones_like(v, bool), labels=None, channels=["a", "b", "c"])
    ds = Dataset(pseudo_installations(normal, stride=400)[:3])
    model = device_file_model(normal.head(SHAPE[0]), window=8, epochs=1, seed=0)
    grid = [{"alert_margin": m, "clear_margin": m, "persist_k": 3, "persist_n": 5, **extra}
            for m in (1.0, 2.0, 4.0) for extra in ({}, {"score_average": 4}, {"recover_ratio": 0.7})]
    return ds, model, grid


def test_monitor_grid_scores_the_same_on_one_or_two_processes(tmp_path, monkeypatch):
    """Scoring settings in parallel tasks changes nothing: same confusions, in grid order,
    as one device streamed by hand; so does running the engine for every window instead of
    through the score memo."""
    from aiot.evaluate.metrics import confusion
    from aiot.evaluate.monitor_device import MonitorDevice
    from aiot.evaluate.tuning import score_monitor_files

    ds, model, grid = _three_pieces_and_a_model(tmp_path, monkeypatch)
    serial = score_monitor_files(ds, {(0.0, 0.0): model}, 8, grid, jobs=1)
    parallel = score_monitor_files(ds, {(0.0, 0.0): model}, 8, grid, jobs=2)
    plain = score_monitor_files(ds, {(0.0, 0.0): model}, 8, grid, jobs=1, memo=False)
    assert [k for k, _ in parallel] == grid
    assert [{n: c.as_dict() for n, c in per.items()} for _, per in serial] == \
        [{n: c.as_dict() for n, c in per.items()} for _, per in parallel] == \
        [{n: c.as_dict() for n, c in per.items()} for _, per in plain]
    knobs, per = parallel[4]
    rec = ds.recordings[1]
    d = MonitorDevice(model, 8, "host", knobs)
    d.commission(rec.series.head(SHAPE[0]))
    assert per[rec.name] == confusion(rec.labels[SHAPE[0]:], d.stream(rec.series, SHAPE[0]).alert)
    # the alerts differ between settings, so the comparison above is not between empty results
    assert len({sum(per.values(), type(per[rec.name])()).fp for _, per in parallel}) > 1


def test_the_score_memo_changes_no_output_byte_and_serves_repeated_windows(tmp_path, monkeypatch):
    """Every output of the monitor (score, confidence, state, alert, channels) through the
    score memo equals the plain host build's, setting after setting on one recording, and
    from the second setting on the memo answers windows without running the engine."""
    from aiot.evaluate.monitor_device import MonitorDevice, ScoreMemo

    ds, model, grid = _three_pieces_and_a_model(tmp_path, monkeypatch)
    rec = ds.recordings[0]
    with ScoreMemo(model) as memo:
        for i, knobs in enumerate(grid):
            outs = []
            for m in (None, memo):
                d = MonitorDevice(model, 8, "host", knobs, memo=m)
                d.commission(rec.series.head(SHAPE[0]))
                outs.append(d.stream(rec.series, SHAPE[0]))
            a, b = outs
            assert a.state == b.state and np.array_equal(a.alert, b.alert)
            for f in ("score", "confidence", "channel_scores"):
                assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True), (i, f)
            if i == 0:
                first = memo.counts()
        counts = memo.counts()
    assert first["misses"] > 0 and counts["hits"] > first["hits"] and counts["misses"] < 2 * first["misses"]
