"""Full-int8 quantization: the model is int8 end to end, the stored vectors agree with
tflite-micro, and int8 scores agree with float scores on synthetic pump data."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from aiot.data import synth
from aiot.errors import ToolkitError
from aiot.model.quantize import quantize, rank
from aiot.model.reference import TflmReference
from aiot.model.train import train

pytestmark = pytest.mark.slow  # trains small Keras models (~15 s per module)

W = 8
C = 4


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    """A small package trained on 4 h of synthetic pump data (2 h of training: with less, the
    slow temperature is not covered well enough), then quantized."""
    ds = synth.pump_dataset(seed=0, hours=4)
    d = tmp_path_factory.mktemp("q") / "pkg"
    train(ds.series, d, window=W, epochs=8, seed=0, train_rows=ds.train_rows, progress=False)
    report = quantize(d, progress=False)
    return d, report, ds


def _manifest(d):
    return json.loads((d / "manifest.json").read_text())


def test_model_is_int8_end_to_end(pkg):
    import tensorflow as tf

    d, _, _ = pkg
    ref = TflmReference(d / "model.tflite")
    assert ref.input_details["dtype"] == np.int8 and ref.output_details["dtype"] == np.int8
    assert ref.input_shape == (1, C * W) and ref.output_shape == (1, C * W)
    # introspection only (never used for numbers): every tensor is int8, biases int32
    interp = tf.lite.Interpreter(model_path=str(d / "model.tflite"))
    dtypes = {t["dtype"] for t in interp.get_tensor_details()}
    assert dtypes <= {np.int8, np.int32}
    ops = {o["op_name"] for o in interp._get_ops_details()}
    assert "FULLY_CONNECTED" in ops and not ops & {"QUANTIZE", "DEQUANTIZE"}


def test_manifest_holds_the_model_quant_params_and_hash(pkg):
    d, report, _ = pkg
    m = _manifest(d)
    ref = TflmReference(d / "model.tflite")
    iq, oq = ref.input_details["quantization_parameters"], ref.output_details["quantization_parameters"]
    assert m["model"]["tflite"] == "model.tflite"
    assert m["model"]["input_scale"] == pytest.approx(float(iq["scales"][0]), rel=1e-7)
    assert m["model"]["input_zero_point"] == int(iq["zero_points"][0])
    assert m["model"]["output_scale"] == pytest.approx(float(oq["scales"][0]), rel=1e-7)
    assert m["model"]["output_zero_point"] == int(oq["zero_points"][0])
    assert m["model"]["input_shape"] == [1, C * W]
    assert m["tflite_sha256"] == hashlib.sha256((d / "model.tflite").read_bytes()).hexdigest()
    # the int8 range covers the whole clipped feature domain [-8, 8]
    s, z = m["model"]["input_scale"], m["model"]["input_zero_point"]
    assert (-128 - z) * s <= -7.9 and (127 - z) * s >= 7.9


def test_vectors_match_tflite_micro(pkg):
    d, report, _ = pkg
    m = _manifest(d)["model"]
    v = np.load(d / "vectors.npz")
    x, x_int8 = v["x"], v["x_int8"]
    assert x_int8.dtype == np.int8 and x_int8.shape == x.shape == (report.windows, C * W)
    # independent rounding: trunc(v + copysign(0.5, v)) is round-half-away-from-zero
    q = np.float64(x / np.float32(m["input_scale"]))
    expect = np.clip(np.trunc(q + np.copysign(0.5, q)) + m["input_zero_point"], -128, 127)
    assert np.array_equal(x_int8, expect.astype(np.int8))
    ref = TflmReference(d / "model.tflite")
    pick = np.linspace(0, len(x) - 1, 200).astype(int)
    y = np.stack([ref.invoke(x_int8[i]).reshape(-1) for i in pick])
    assert np.array_equal(v["y_int8"][pick], y)
    recon = (y.astype(np.float64) - m["output_zero_point"]) * m["output_scale"]
    assert np.allclose(v["score_int8"][pick], ((x[pick] - recon) ** 2).mean(axis=1), rtol=1e-5)


def test_int8_scores_agree_with_float_scores(pkg):
    d, report, _ = pkg
    v = np.load(d / "vectors.npz")
    f, q = v["score"].astype(np.float64), v["score_int8"].astype(np.float64)
    assert report.windows == len(f) > 1000 and report.source == "test"
    assert np.corrcoef(f, q)[0, 1] > 0.95
    assert report.pearson == pytest.approx(np.corrcoef(f, q)[0, 1], abs=1e-6)
    assert report.spearman > 0.9
    thr = _manifest(d)["score"]["threshold"]
    same = ((f > thr) == (q > thr)).mean()
    assert same >= 0.98
    assert report.decision_agreement == pytest.approx(same)
    assert report.max_abs_diff == pytest.approx(np.abs(f - q).max(), rel=1e-5)


def test_int8_model_flags_the_faults_not_the_normal_data(pkg):
    d, _, ds = pkg
    v = np.load(d / "vectors.npz")
    thr = _manifest(d)["score"]["threshold"]
    alarm = v["score_int8"] > thr
    ends = v["end_rows"]
    imb = next(i for i in ds.incidents if i.name == "imbalance")
    in_imb = (ends - (W - 1) >= imb.start_row) & (ends < imb.stop_row)
    assert alarm[in_imb].mean() > 0.9
    faulty_row = ds.series.labels.astype(bool)
    normal = np.array([not faulty_row[e - W + 1 : e + 1].any() for e in ends])  # no faulty row at all
    assert alarm[normal].mean() < 0.02


def test_rank_averages_ties():
    assert rank(np.array([10.0, 20.0, 20.0, 5.0])).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_cli_json_and_reproducible_conversion(pkg, tmp_path):
    from aiot.cli import main

    d, report, _ = pkg
    copy = tmp_path / "pkg"
    shutil.copytree(d, copy)
    r = CliRunner().invoke(main, ["quantize", "--package", str(copy), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{"):])
    assert out["windows"] == report.windows and out["decision_agreement"] == report.decision_agreement
    assert (copy / "model.tflite").read_bytes() == (d / "model.tflite").read_bytes()


def test_missing_keras_model(pkg, tmp_path):
    copy = tmp_path / "pkg"
    shutil.copytree(pkg[0], copy)
    (copy / "model.keras").unlink()
    with pytest.raises(ToolkitError, match="model.keras: missing"):
        quantize(copy, progress=False)


def test_vectors_without_calibration_windows(pkg, tmp_path):
    copy = tmp_path / "pkg"
    shutil.copytree(pkg[0], copy)
    np.savez(copy / "vectors.npz", x=np.zeros((2, C * W), np.float32))
    with pytest.raises(ToolkitError, match="x_representative"):
        quantize(copy, progress=False)


def test_cli_missing_package(tmp_path):
    from aiot.cli import main

    r = CliRunner().invoke(main, ["quantize", "--package", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no such package folder" in r.output


def test_manifest_that_disagrees_with_the_model(pkg, tmp_path):
    copy = tmp_path / "pkg"
    shutil.copytree(pkg[0], copy)
    m = _manifest(copy)
    m["window"] = W // 2
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ToolkitError, match="features, the manifest says 4 channels x 4"):
        quantize(copy, progress=False)
    v = dict(np.load(copy / "vectors.npz"))
    v["x"], v["x_representative"] = v["x"][:, : C * W // 2], v["x_representative"][:, : C * W // 2]
    np.savez(copy / "vectors.npz", **v)
    with pytest.raises(ToolkitError, match=r"model input \(None, 32\) does not match the manifest"):
        quantize(copy, progress=False)


def test_summary_warns_when_int8_diverges(pkg):
    import dataclasses

    report = pkg[1]
    good = dataclasses.replace(report, decision_agreement=1.0, spearman=0.99)
    bad = dataclasses.replace(report, decision_agreement=0.9, spearman=0.99)
    assert "warning" not in good.summary() and "warning" in bad.summary()
    assert "warning" in dataclasses.replace(report, decision_agreement=1.0, spearman=0.5).summary()


def test_unreadable_keras_model_and_empty_calibration(pkg, tmp_path):
    copy = tmp_path / "pkg"
    shutil.copytree(pkg[0], copy)
    (copy / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(ToolkitError, match="model.keras: cannot be loaded"):
        quantize(copy, progress=False)
    v = dict(np.load(pkg[0] / "vectors.npz"))
    v["x_representative"] = np.zeros((0, C * W), np.float32)
    np.savez(copy / "vectors.npz", **v)
    with pytest.raises(ToolkitError, match="no training windows to calibrate"):
        quantize(copy, progress=False)


def test_unwritable_tflite(pkg, tmp_path):
    copy = tmp_path / "pkg"
    shutil.copytree(pkg[0], copy)
    (copy / "model.tflite").unlink()
    (copy / "model.tflite").mkdir()
    with pytest.raises(ToolkitError, match="model.tflite: cannot write"):
        quantize(copy, progress=False)
