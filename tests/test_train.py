"""Training: determinism, what goes into the package, and argument errors."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

from aiot.data import synth
from aiot.data import load_csv
from aiot.errors import ToolkitError
from aiot.model.train import CALIBRATION_FRACTION, reconstruction_errors, train

pytestmark = pytest.mark.slow  # trains small Keras models (~15 s per module)

W = 4
TRAIN_ROWS = 1800
FAULT = (100, 110)  # labelled fault inside the training part
HOLE = (500, 2)  # (row, channel) of a missing sample inside the training part


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory):
    """One hour of pump data with a labelled fault and a missing sample in the training rows."""
    ds = synth.pump_dataset(seed=5, hours=1)
    s = ds.series
    s.labels[FAULT[0] : FAULT[1]] = 1
    s.values[HOLE] = np.nan
    s.valid[HOLE] = False
    path = tmp_path_factory.mktemp("train") / "tiny.csv"
    synth.write_csv(path, ds)
    return path


@pytest.fixture(scope="module")
def runs(tiny_csv, tmp_path_factory):
    """Same data trained three times: API seed 0, CLI seed 0, API seed 1."""
    from aiot.cli import main

    root = tmp_path_factory.mktemp("pkgs")
    a = train(tiny_csv, root / "a", window=W, epochs=2, seed=0, train_rows=TRAIN_ROWS, progress=False, name="tiny")
    r = CliRunner().invoke(main, ["train", "--data", str(tiny_csv), "--out", str(root / "b"), "--window", str(W),
                                  "--epochs", "2", "--seed", "0", "--train-rows", str(TRAIN_ROWS), "--name", "tiny"])
    assert r.exit_code == 0, r.output
    c = train(tiny_csv, root / "c", window=W, epochs=2, seed=1, train_rows=TRAIN_ROWS, progress=False, name="tiny")
    return a, root / "b", c, r.output


def _weights(pkg_dir):
    import keras

    return keras.models.load_model(pkg_dir / "model.keras", compile=False).get_weights()


def test_training_is_deterministic_for_a_seed(runs):
    a, b_dir, c, _ = runs
    wa, wb, wc = _weights(a.package), _weights(b_dir), _weights(c.package)
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))
    assert not all(np.array_equal(x, y) for x, y in zip(wa, wc))
    ma = json.loads((a.package / "manifest.json").read_text())
    mb = json.loads((b_dir / "manifest.json").read_text())
    assert ma["score"]["threshold"] == mb["score"]["threshold"]
    assert np.array_equal(np.load(a.package / "vectors.npz")["score"], np.load(b_dir / "vectors.npz")["score"])


def test_cli_prints_a_summary(runs):
    out = runs[3]
    assert "threshold" in out and "aiot quantize --package" in out


def test_architecture(runs):
    import keras

    m = keras.models.load_model(runs[0].package / "model.keras", compile=False)
    dense = [l for l in m.layers if isinstance(l, keras.layers.Dense)]
    assert [l.units for l in dense] == [16, 8, 16, 4 * W]
    assert [l.activation.__name__ for l in dense] == ["relu", "relu", "relu", "linear"]
    assert m.input_shape == (None, 4 * W)


def test_manifest_records_normalization_of_normal_training_rows(runs, tiny_csv):
    s = load_csv(tiny_csv)
    m = json.loads((runs[0].package / "manifest.json").read_text())
    rows = s.values[:TRAIN_ROWS][s.labels[:TRAIN_ROWS] == 0]
    assert m["normalization"]["mean"] == pytest.approx(np.nanmean(rows, axis=0).tolist(), rel=1e-6)
    assert m["normalization"]["std"] == pytest.approx(np.nanstd(rows, axis=0).tolist(), rel=1e-5)
    assert m["format"] == 1 and m["name"] == "tiny" and m["window"] == W
    assert m["channels"] == ["vib_rms_1", "vib_rms_2", "motor_current", "temperature"]
    assert m["sample_period_s"] == 1.0
    assert m["training"]["rows"] == TRAIN_ROWS and m["training"]["seed"] == 0 and m["training"]["epochs"] == 2
    assert m["training"]["data_sha256"] == hashlib.sha256(tiny_csv.read_bytes()).hexdigest()
    assert m["model"]["keras"] == "model.keras" and m["model"]["tflite"] is None
    assert m["score"]["kind"] == "mse" and m["score"]["quantile"] == 0.995
    assert m["features"]["layout"] == "time-major" and m["normalization"]["clip"] == 8.0


def test_faulty_and_incomplete_training_windows_are_skipped(runs):
    a = runs[0]
    # windows touching fault rows 100..109 end at rows 100 .. 109 + W-1
    assert a.skipped_fault == FAULT[1] - FAULT[0] + W - 1
    # windows containing row 500 end at rows 500 .. 500 + W-1
    assert a.skipped_incomplete == W
    usable = (TRAIN_ROWS - (W - 1)) - a.skipped_fault - a.skipped_incomplete
    assert a.fit_windows + a.calibration_windows == usable
    assert a.calibration_windows == round(CALIBRATION_FRACTION * usable)


def _windows_by_hand(values, mean, std, end_rows):
    z = np.clip((values - mean) / std, -8, 8)
    return np.stack([z[e - W + 1 : e + 1].reshape(-1) for e in end_rows])


def test_test_vectors_are_held_out_and_match_the_formula(runs, tiny_csv):
    s = load_csv(tiny_csv)
    m = json.loads((runs[0].package / "manifest.json").read_text())
    v = np.load(runs[0].package / "vectors.npz")
    ends = v["end_rows"]
    assert ends.min() - (W - 1) >= TRAIN_ROWS  # no shared sample with training
    assert len(ends) == s.rows - TRAIN_ROWS - (W - 1) - runs[0].test_incomplete
    expect = _windows_by_hand(s.values, np.array(m["normalization"]["mean"]), np.array(m["normalization"]["std"]), ends)
    assert np.allclose(v["x"], expect, atol=1e-5)
    assert np.array_equal(v["labels"], s.labels[ends])
    assert np.array_equal(v["timestamps"], s.timestamps[ends])


def test_threshold_is_the_quantile_of_calibration_scores(runs, tiny_csv):
    import keras

    s = load_csv(tiny_csv)
    a = runs[0]
    m = json.loads((a.package / "manifest.json").read_text())
    mean, std = np.array(m["normalization"]["mean"]), np.array(m["normalization"]["std"])
    ends = np.arange(W - 1, TRAIN_ROWS)
    ok = np.array([s.valid[e - W + 1 : e + 1].all() and not s.labels[e - W + 1 : e + 1].any() for e in ends])
    cal = ends[ok][-a.calibration_windows :]
    x = _windows_by_hand(s.values, mean, std, cal).astype(np.float32)
    model = keras.models.load_model(a.package / "model.keras", compile=False)
    scores = ((x - model.predict(x, verbose=0)) ** 2).mean(axis=1)
    assert m["score"]["threshold"] == pytest.approx(np.quantile(scores, 0.995), rel=1e-4)


def test_reconstruction_errors_by_hand():
    # 2 time steps x 2 channels, time-major: [t0a, t0b, t1a, t1b]
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    y = np.array([[1.0, 0.0, 2.0, 4.0]])  # squared errors 0, 4, 1, 0
    score, per_channel = reconstruction_errors(x, y, channels=2)
    assert score.tolist() == [1.25]
    assert per_channel.tolist() == [[0.5, 2.0]]  # a: (0+1)/2, b: (4+0)/2


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"window": 0}, "--window"),
        ({"epochs": 0}, "--epochs"),
        ({"train_rows": 3}, "--train-rows"),
        ({"train_rows": 10**6}, "--train-rows"),
        ({"quantile": 1.5}, "quantile"),
        ({"hidden": (16, 0)}, "hidden"),
        ({"window": 200, "train_rows": 300}, "training window"),
    ],
)
def test_bad_arguments(tiny_csv, tmp_path, kw, match):
    with pytest.raises(ToolkitError, match=match):
        train(tiny_csv, tmp_path / "p", progress=False, **kw)
    assert not (tmp_path / "p").exists()  # nothing half-written


def test_cli_reports_bad_data_without_traceback(tmp_path):
    from aiot.cli import main

    r = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "p")])
    assert r.exit_code == 2
    assert "nope.csv: no such file" in r.output and "Traceback" not in r.output


def test_all_rows_for_training_leaves_no_test_windows_and_quantize_still_works(tmp_path):
    from aiot.model.quantize import quantize

    ds = synth.pump_dataset(seed=2, hours=1, faults=False, dropout=False)
    res = train(ds.series, tmp_path / "p", window=W, epochs=1, train_rows=ds.series.rows, progress=False)
    assert res.test_windows == 0
    v = np.load(tmp_path / "p" / "vectors.npz")
    assert v["x"].shape == (0, 4 * W) and v["score"].shape == (0,) and v["per_channel"].shape == (0, 4)
    report = quantize(tmp_path / "p", progress=False)
    assert report.source == "training" and report.windows == len(v["x_representative"]) > 0


def test_summary_counts_flagged_test_windows(runs, tiny_csv):
    a = runs[0]
    s = load_csv(tiny_csv)
    v = np.load(a.package / "vectors.npz")
    flagged = v["score"] > a.threshold
    fault = v["labels"] == 1
    clean = np.array([not s.labels[e - W + 1 : e + 1].any() for e in v["end_rows"]])
    assert a.test_fault_windows == fault.sum() > 0
    assert a.test_fault_flagged == (flagged & fault).sum()
    assert a.test_normal_windows == clean.sum() > 0
    assert a.test_normal_flagged == (flagged & clean).sum()
    assert f"{a.test_fault_flagged}/{a.test_fault_windows} fault windows flagged" in a.summary()


def test_out_must_be_a_folder(tiny_csv, tmp_path):
    (tmp_path / "file").write_text("keep me")
    with pytest.raises(ToolkitError, match="exists and is not a folder"):
        train(tiny_csv, tmp_path / "file", progress=False)
    assert (tmp_path / "file").read_text() == "keep me"


def test_cli_rejects_bad_hidden_sizes(tiny_csv, tmp_path):
    from aiot.cli import main

    r = CliRunner().invoke(main, ["train", "--data", str(tiny_csv), "--out", str(tmp_path / "p"), "--hidden", "16,x"])
    assert r.exit_code == 2 and "--hidden" in r.output
    assert not (tmp_path / "p").exists()


def test_out_under_a_file_fails_before_training(tiny_csv, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ToolkitError, match="cannot create the package folder"):
        train(tiny_csv, tmp_path / "file" / "pkg", window=W, train_rows=TRAIN_ROWS, progress=False)


def _pump_with(cells):
    s = synth.pump_dataset(seed=5, hours=1).series
    for (row, col), v in cells.items():
        s.values[row, col] = v
    return s


def test_a_value_too_large_to_normalize_is_named_before_training(tmp_path):
    """A far value its neighbour confirms (two rows in a row: a level, not a spike) is kept, so
    a sensor whose level is beyond float32 is refused, named; an isolated one is left out
    (next test)."""
    import warnings

    s = _pump_with({(700, 2): 1e308, (701, 2): 1e308, (900, 0): -3e200, (901, 0): -3e200})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no numpy overflow chatter on the way
        with pytest.raises(ToolkitError) as e:
            train(s, tmp_path / "pkg", window=W, epochs=1, train_rows=TRAIN_ROWS, progress=False)
    m = e.value.message
    assert "motor_current" in m and "row 700" in m and "1e+308" in m
    assert "vib_rms_1" in m and "row 900" in m and "-3e+200" in m
    assert "vib_rms_2" not in m and "temperature" not in m
    assert "diverged" not in m and e.value.hint
    assert not (tmp_path / "pkg").exists()  # refused before training


def test_an_isolated_value_too_large_to_normalize_is_left_out_of_training_and_said(tmp_path, capsys):
    import warnings

    s = _pump_with({(700, 2): 1e308, (900, 0): -3e200})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        r = train(s, tmp_path / "pkg", window=W, epochs=1, train_rows=TRAIN_ROWS, progress=False)
    err = capsys.readouterr().err
    assert "motor_current: 1 isolated sample" in err and "row 701 (1e+308)" in err
    assert "vib_rms_1: 1 isolated sample" in err and "row 901 (-3e+200)" in err
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert manifest["training"]["rejected_spikes"] == {"vib_rms_1": [900], "motor_current": [700]}
    assert np.isfinite(r.final_loss) and all(np.isfinite(manifest["normalization"]["std"]))
    assert max(manifest["normalization"]["std"]) < 1e3  # the sensors' own spreads, not the garbage's


def test_a_value_too_large_for_float32_after_the_training_rows_is_clipped_quietly(tmp_path):
    import warnings

    s = _pump_with({(TRAIN_ROWS + 300, 1): 1e308})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        r = train(s, tmp_path / "pkg", window=W, epochs=1, train_rows=TRAIN_ROWS, progress=False)
    assert np.isfinite(r.final_loss) and np.isfinite(r.threshold)
    x = np.load(tmp_path / "pkg" / "vectors.npz")["x"]
    assert np.isfinite(x).all() and x.max() == 8.0  # features.CLIP


def test_labels_that_are_not_one_per_row_are_refused_before_training(tmp_path):
    s = synth.pump_dataset(seed=5, hours=1).series
    s.labels = np.zeros(s.rows + 700, np.int8)  # labels of a longer series
    with pytest.raises(ToolkitError, match=f"{s.rows + 700} label\\(s\\) for {s.rows} row"):
        train(s, tmp_path / "pkg", window=W, epochs=1, progress=False)
    assert not (tmp_path / "pkg").exists()


#: Trains one installation's device model (what `aiot evaluate --per-file` and `aiot commission`
#: train) in a fresh process and prints the .tflite's SHA-256. With "busy", another thread of the
#: process draws from Python's process-wide `random` right after training seeds it, as a Dask
#: worker's comm thread does when it sends a result (it samples every payload it may compress with
#: random.randint) while the worker's next task starts training.
_TRAIN_IN_A_FRESH_PROCESS = """
import hashlib, random, sys, threading
from aiot.data import load_csv
from aiot.installation import device_file_model

if sys.argv[2] == "busy":
    seed = random.seed

    def seed_then_another_thread_draws(*a, **k):
        seed(*a, **k)
        t = threading.Thread(target=random.random)
        t.start()
        t.join()

    random.seed = seed_then_another_thread_draws
model = device_file_model(load_csv(sys.argv[1]).head(400), 8, 1, 0, name="pump")
print(hashlib.sha256((model / "model.tflite").read_bytes()).hexdigest())
"""


def test_a_model_is_the_same_in_any_process_whatever_other_threads_draw_from_random(tiny_csv, tmp_path,
                                                                                   monkeypatch):
    """The model trained in a fresh process whose other thread draws from ``random`` ("busy")
    is the one trained here, in a process that has trained other models before (as a Dask
    worker's second task does). The fresh process trains while this one does."""
    import os
    import subprocess
    import sys

    from aiot.installation import device_file_model
    from aiot.testing import fresh_model_cache

    env = {**os.environ, "AIOT_CACHE_DIR": str(tmp_path / "cache-busy"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    busy = subprocess.Popen([sys.executable, "-c", _TRAIN_IN_A_FRESH_PROCESS, str(tiny_csv), "busy"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fresh_model_cache(monkeypatch, tmp_path / "cache-here")  # trained here, not found in the suite's cache
    model = device_file_model(load_csv(tiny_csv).head(400), 8, 1, 0, name="pump")
    here = hashlib.sha256((model / "model.tflite").read_bytes()).hexdigest()
    out, err = busy.communicate(timeout=300)
    assert busy.returncode == 0, err[-3000:]
    assert len(here) == 64 and out.split()[-1] == here
