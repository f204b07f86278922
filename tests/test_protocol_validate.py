"""`aiot validate`: metric arithmetic on hand-made arrays, input selection, error paths, and one
end-to-end run on QEMU."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from aiot.device import protocol as P
from aiot.cli import main
from aiot.commands.validate import compare, load_model_input, make_inputs, timing
from aiot.errors import ToolkitError

from test_protocol_client import INFO, FakeDevice, reply

AE24 = Path(__file__).resolve().parent.parent / "hil_tests" / "fixtures" / "ae24"


def test_compare_hand_computed():
    dev = np.array([[0, 10, -5], [1, 10, -5]], np.int8)
    ref = np.array([[0, 10, -5], [3, 10, -6]], np.int8)
    m = compare(dev, ref, scale=0.5, zero_point=0)
    assert m["vectors"] == 2 and m["mismatched_vectors"] == 1 and m["first_mismatch"] == 1
    assert m["exact_match_pct"] == 50.0
    assert m["exact_bytes_pct"] == pytest.approx(100 * 4 / 6)
    assert m["max_abs_error_q"] == 2 and m["mean_abs_error_q"] == pytest.approx(3 / 6)
    assert m["max_abs_error"] == 1.0                      # 2 steps x 0.5
    assert m["mae"] == pytest.approx(1.5 / 6)            # (1.0 + 0.5) / 6
    assert m["rmse"] == pytest.approx(np.sqrt(1.25 / 6))  # (1 + 0.25) / 6
    ref_norm = np.sqrt(0 + 25 + 6.25 + 2.25 + 25 + 9)     # dequantized reference
    assert m["l2r"] == pytest.approx(np.sqrt(1.25) / ref_norm)
    assert m["error_histogram_q"] == {"-2": 1, "0": 4, "1": 1}
    assert [p["mismatches"] for p in m["per_output"]] == [1, 0, 1]
    assert [p["max_abs_error_q"] for p in m["per_output"]] == [2, 0, 1]


def test_compare_identical_with_zero_point():
    x = np.array([[-128, 127]], np.int8)
    m = compare(x, x.copy(), scale=0.1, zero_point=-128)
    assert m["exact_match_pct"] == 100.0 and m["first_mismatch"] is None and m["l2r"] == 0.0


def test_timing_qemu_and_hardware():
    info = SimpleNamespace(tick_hz=25_000_000)
    qemu = SimpleNamespace(emulated=True, systick_hz=25_000_000, cpu_hz=25_000_000)
    t = timing(np.array([100, 300]), qemu, info)
    assert t["instructions_mean"] == 8000.0  # 200 ticks x 40 ns
    assert t["ms_mean"] == pytest.approx(8000 / 25e6 * 1e3)
    hw = SimpleNamespace(emulated=False, systick_hz=None, cpu_hz=180_000_000)
    t = timing(np.array([180_000]), hw, SimpleNamespace(tick_hz=180_000_000))
    assert t["cycles_mean"] == 180_000 and t["ms_mean"] == pytest.approx(1.0)
    assert t["inferences_per_s"] == pytest.approx(1000.0)


def test_make_inputs():
    stored = np.arange(6, dtype=np.int8).reshape(2, 3)
    xs, used = make_inputs(stored, 5, 3, seed=1)
    assert used == 2 and xs.shape == (5, 3) and xs.dtype == np.int8
    assert np.array_equal(xs[:2], stored)
    assert np.array_equal(make_inputs(stored, 5, 3, seed=1)[0], xs)  # seeded
    assert make_inputs(stored, 1, 3)[1] == 1
    with pytest.raises(ToolkitError, match="3 values, the model takes 4"):
        make_inputs(stored, 5, 4)


def test_load_model_input_errors(tmp_path):
    with pytest.raises(ToolkitError, match="neither a model package"):
        load_model_input(tmp_path)
    shutil.copy(AE24 / "model.tflite", tmp_path / "model.tflite")
    (tmp_path / "vectors.npz").write_bytes(b"not a zip")
    with pytest.raises(ToolkitError, match="unreadable"):
        load_model_input(tmp_path)
    (tmp_path / "vectors.npz").unlink()
    mi = load_model_input(tmp_path)
    assert mi.x_int8.size == 0 and mi.name == tmp_path.name


def test_cli_rejects_bad_count():
    r = CliRunner().invoke(main, ["validate", "--model", str(AE24), "-n", "0"])
    assert r.exit_code == 2 and "-n" in r.output


def test_cli_refuses_a_device_running_another_model(tmp_path):
    fd = FakeDevice(lambda f: reply(f, P.pack_info(INFO)) if f.type == P.Msg.INFO else None)
    try:
        r = CliRunner().invoke(main, ["validate", "--board", "mps2-an386", "--model", str(AE24), "-n", "3",
                                      "--transport", "serial", "--port", fd.url, "--out", str(tmp_path)])
    finally:
        fd.close()
    assert r.exit_code == 2, r.output
    crc = zlib.crc32((AE24 / "model.tflite").read_bytes())
    assert "fake-model" in r.output and "deadbeef" in r.output and f"{crc:08x}" in r.output
    assert "flash the firmware" in r.output


@pytest.mark.qemu
def test_cli_end_to_end_on_qemu(tmp_path):
    if not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")):
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc (make setup)")
    r = CliRunner().invoke(main, ["validate", "--board", "mps2-an386", "--model", str(AE24), "-n", "130",
                                  "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["inputs"] == {"stored": 123, "random": 7, "seed": 0, "features": 24}
    assert rep["metrics"]["vectors"] == 130 and rep["metrics"]["exact_match_pct"] == 100.0
    assert rep["model_hash"] == f"{zlib.crc32((AE24 / 'model.tflite').read_bytes()):08x}"
    assert rep["timing"]["instructions_mean"] > 100 and rep["timing"]["ms_mean"] > 0
    page = (tmp_path / "report.html").read_text()
    # bit-exact: said in words, no chart of zero errors; the image's flash / RAM split is on the page
    parity = page.split("<h2>Parity with tflite-micro</h2>")[1].split("<h2>")[0]
    assert "bit-exact" in page and "All 3,120 outputs byte-identical to tflite-micro" in parity
    assert "<svg" not in parity
    assert rep["firmware"]["flash_total"] > rep["firmware"]["weights"] > 0 and rep["firmware"]["arena"] > 0
    assert f'{rep["firmware"]["flash_total"]:,} B' in page and "tensor arena" in page
    out = np.load(tmp_path / "outputs.npz")
    assert out["device"].shape == (130, 24) and np.array_equal(out["device"], out["reference"])
    assert "exact match      100.00 %" in r.output


@pytest.mark.qemu
def test_cli_validates_every_input_and_output_on_qemu(tmp_path):
    """A model with two inputs and two outputs (the parity suite's): every input streamed,
    every output byte compared with tflite-micro, on mps2-an386 (protocol 1.2)."""
    if not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")):
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc (make setup)")
    pytest.importorskip("tensorflow")
    from test_engine_parity import _recipes, _two_in_two_out_tflite

    two = _two_in_two_out_tflite(_recipes())
    r = CliRunner().invoke(main, ["validate", "--board", "mps2-an386", "--model", str(two), "-n", "24",
                                  "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["device"]["proto_minor"] == 3 and len(rep["device"]["inputs"]) == 2
    assert [t["bytes"] for t in rep["tensors"]["inputs"]] == [t["bytes"] for t in rep["device"]["inputs"]]
    assert sorted(t["bytes"] for t in rep["tensors"]["outputs"]) == [3, 5]
    assert rep["inputs"]["features"] == 42 and rep["metrics"]["vectors"] == 24
    assert rep["metrics"]["exact_match_pct"] == 100.0 and len(rep["metrics"]["per_output"]) == 8
    assert all(t["mismatched_vectors"] == 0 for t in rep["tensors"]["outputs"])
    out = np.load(tmp_path / "outputs.npz")
    assert out["device"].shape == (24, 8) and np.array_equal(out["device"], out["reference"])
    assert len(np.unique(out["device"], axis=0)) > 1  # the outputs follow the inputs


def test_report_page_lists_the_inputs_and_outputs_of_a_model_with_several(tmp_path):
    from aiot.commands.validate import write_html
    from test_reports_render import _validate_report

    ref = np.zeros((3, 8), np.int8)
    dev = ref.copy()
    dev[1, 6] = 1  # the second output differs in one vector
    ticks = np.full(3, 2_000)
    report = _validate_report(dev, ref, ticks)
    report["inputs"]["stored"] = 0
    report["tensors"] = {
        "inputs": [{"name": "window", "shape": [1, 1, 12, 3], "type": "int8", "bytes": 36},
                   {"name": "features", "shape": [1, 6], "type": "int8", "bytes": 6}],
        "outputs": [{"name": "score", "shape": [1, 3], "type": "int8", "bytes": 3, "mismatched_vectors": 0},
                    {"name": "embedding", "shape": [1, 5], "type": "int8", "bytes": 5, "mismatched_vectors": 1}]}
    write_html(tmp_path / "report.html", report, ticks, dev, ref)
    page = (tmp_path / "report.html").read_text()
    table = page.split("<h2>Inputs and outputs</h2>")[1].split("<h2>")[0]
    assert "<td>input 1</td><td>features</td><td>[1, 6]</td><td>int8</td><td class='n'>6</td>" in table
    assert "<td>output 1</td><td>embedding</td><td>[1, 5]</td><td>int8</td><td class='n'>5</td><td class='n'>1</td>" \
        in table
    # one int8 input and one int8 output: nothing to list
    report["tensors"] = {"inputs": report["tensors"]["inputs"][:1], "outputs": report["tensors"]["outputs"][:1]}
    write_html(tmp_path / "one.html", report, ticks, dev, ref)
    assert "Inputs and outputs" not in (tmp_path / "one.html").read_text()


def test_validate_names_a_truncated_model_and_a_missing_path(tmp_path):
    from aiot.commands.validate import load_model_input
    from aiot.errors import ToolkitError

    good = Path(__file__).resolve().parents[1] / "hil_tests" / "fixtures" / "ae24" / "model.tflite"
    assert load_model_input(good).tflite == good.read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(good.read_bytes()[:100])
    with pytest.raises(ToolkitError, match=r"cut.tflite: corrupt or truncated TFLite flatbuffer"):
        load_model_input(cut)
    with pytest.raises(ToolkitError, match=r"nope: no such file or folder"):
        load_model_input(tmp_path / "nope")


@pytest.mark.qemu
def test_cli_validates_a_model_whose_input_and_output_exceed_one_frame(tmp_path):
    """2,000 int8 in and out, 1 KiB frames: INFER_INPUT / INFER_OUTPUT carry them, and every
    output is byte-identical to tflite-micro's."""
    if not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")):
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc (make setup)")
    wide = AE24.parent / "wide2000" / "model.tflite"
    r = CliRunner().invoke(main, ["validate", "--board", "mps2-an386", "--model", str(wide), "-n", "8",
                                  "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["device"]["input_bytes"] == 2000 > rep["device"]["max_payload"] == 1024
    assert rep["inputs"] == {"stored": 6, "random": 2, "seed": 0, "features": 2000}
    assert rep["metrics"]["exact_match_pct"] == 100.0 and rep["link"]["clean"]
    out = np.load(tmp_path / "outputs.npz")
    assert out["device"].shape == (8, 2000) and np.array_equal(out["device"], out["reference"])


def test_compare_float_counts_bits_and_steps_of_the_output_scale(tmp_path):
    # float32 outputs (a float-interface model) match when their bits do: -0.0 is not 0.0
    from aiot.commands.validate import compare_float, write_html
    from test_reports_render import _validate_report

    ref = np.array([[0.5, -1.25, 0.0], [2.0, 3.0, 0.0]], np.float32)
    dev = ref.copy()
    dev[1, 1] = 3.25  # two steps of 0.125
    dev[0, 2] = -0.0
    m = compare_float(dev, ref, 0.125)
    assert m["mismatched_vectors"] == 2 and m["first_mismatch"] == 0 and m["float32"]
    assert m["max_abs_error_q"] == 2 and m["max_abs_error"] == 0.25
    assert m["error_histogram_q"] == {"0": 5, "2": 1}
    assert [p["mismatches"] for p in m["per_output"]] == [0, 1, 1]
    assert m["exact_bytes_pct"] == pytest.approx(100 * 4 / 6) and m["exact_match_pct"] == 0.0
    report = {**_validate_report(dev, ref, np.full(2, 2_200)), "metrics": m, "device": {"output_scale": 0.125}}
    report["inputs"]["stored"] = 0
    write_html(tmp_path / "report.html", report, np.full(2, 2_200), dev, ref)
    page = (tmp_path / "report.html").read_text()
    assert "6 float32 outputs" in page and "2 vectors differ" in page
    assert "<td class='n'>3.25</td><td class='n'>3</td><td class='n'>+2</td>" in page
