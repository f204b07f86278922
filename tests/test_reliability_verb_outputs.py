"""Issue 22: every verb with --out writes its folder as aiot evaluate does (aiot.outputs): a run
killed part-way leaves the previous run's files whole, a second run into a folder in use is
refused naming the first, and the folder's files share one run id. The expensive step of a
verb (training, calibration) is replaced by a stand-in that writes the same files; the writing
itself is the verb's own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aiot import outputs
from aiot.cli import main

FIX = Path(__file__).parent / "fixtures"
MODEL = FIX / "tflite" / "good_dense.tflite"


def _contents(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith(".aiot")}


def _die_while_writing(monkeypatch, part: str) -> None:
    """The process dies while it writes the file whose name contains ``part``: half of it is
    on disk, then KeyboardInterrupt (what Ctrl-C or a kill leaves)."""
    real_text, real_bytes = Path.write_text, Path.write_bytes

    def write_text(self, data, *a, **k):
        if part in self.name:
            real_text(self, data[: len(data) // 2], *a, **k)
            raise KeyboardInterrupt
        return real_text(self, data, *a, **k)

    def write_bytes(self, data):
        if part in self.name:
            real_bytes(self, data[: len(data) // 2])
            raise KeyboardInterrupt
        return real_bytes(self, data)

    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def _csv(path: Path, rows: int = 64) -> Path:
    t = np.arange(rows)
    lines = ["timestamp,a,b"] + [f"{i},{np.sin(i / 5):.4f},{np.cos(i / 7):.4f}" for i in t]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def fake_training(monkeypatch):
    """aiot train's and aiot quantize --keras's expensive steps: the files they write, from
    their arguments, no TensorFlow."""
    from aiot.model import keras_package, quantize, train

    class Result:
        def summary(self):
            return "trained (stand-in)"

    def fake_train(series, out, *, epochs, **kw):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.keras").write_bytes(b"keras %d" % epochs)
        (out / "vectors.npz").write_bytes(b"vectors %d" % epochs)
        (out / "manifest.json").write_text(json.dumps({"epochs": epochs}))
        return Result()

    def fake_package(keras_model, series, out, *, quantile, **kw):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.keras").write_bytes(keras_model.read_bytes())
        (out / "manifest.json").write_text(json.dumps({"quantile": quantile}))

    class Report:
        def to_json(self):
            return {}

        def summary(self):
            return "quantized (stand-in)"

    def fake_quantize(package, progress=True):
        manifest = json.loads((Path(package) / "manifest.json").read_text())
        q = manifest.get("quantile", manifest.get("epochs"))
        if q is None:
            from aiot.errors import ToolkitError

            raise ToolkitError(f"{Path(package) / 'manifest.json'}: no quantile", hint="re-run `aiot train`")
        (Path(package) / "model.tflite").write_bytes(b"tflite %r" % q)
        (Path(package) / "manifest.json").write_text(json.dumps({**manifest, "quantized": True}))
        return Report()

    monkeypatch.setattr(train, "train", fake_train)
    monkeypatch.setattr(keras_package, "package_keras", fake_package)
    monkeypatch.setattr(quantize, "quantize", fake_quantize)


def _verbs(tmp_path: Path) -> dict:
    """Per verb: (arguments of a first run, of a second run that writes other contents, the
    file the kill falls in)."""
    data = _csv(tmp_path / "pump.csv")
    keras = tmp_path / "mine.keras"
    keras.write_bytes(b"a keras model")
    return {
        "train": (["train", "--data", str(data), "--epochs", "1"],
                  ["train", "--data", str(data), "--epochs", "2"], "manifest.json"),
        "quantize --keras": (["quantize", "--keras", str(keras), "--data", str(data), "--quantile", "0.99"],
                             ["quantize", "--keras", str(keras), "--data", str(data), "--quantile", "0.9"],
                             "model.tflite"),
        "quantize --package": (["quantize", "--package"], ["quantize", "--package"], "model.tflite"),
        "codegen": (["codegen", "--model", str(MODEL), "--name", "first"],
                    ["codegen", "--model", str(MODEL), "--name", "second"], "model.h"),
        "codegen --format tflm": (["codegen", "--format", "tflm", "--model", str(MODEL), "--name", "m"],
                                  ["codegen", "--format", "tflm", "--model", str(FIX / "tflite" / "two_inputs.tflite"),
                                   "--name", "m"], "m_data.cc"),
        "export": (["export", "--board", "mps2-an386", "--format", "cmake"],
                   ["export", "--board", "mps2-an385", "--format", "cmake"], "link.ld"),
        "scenarios generate": (["scenarios", "generate", "--count", "2", "--hours", "12"],
                               ["scenarios", "generate", "--count", "2", "--hours", "12", "--seed", "7"],
                               "labels.json"),
    }


VERBS = ["train", "quantize --keras", "quantize --package", "codegen", "codegen --format tflm", "export", "scenarios generate"]


def _prepare(args: list[str], out: Path) -> None:
    """What a verb's folder holds before its first run: for quantize --package, what aiot
    train wrote (the package folder is quantize's output too); for the others nothing."""
    if args[-1] == "--package" and not (out / "manifest.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.keras").write_bytes(b"keras")
        (out / "manifest.json").write_text(json.dumps({"epochs": 3}))


def _run(args: list[str], out: Path):
    _prepare(args, out)
    if args[-1] == "--package":
        return CliRunner().invoke(main, [*args, str(out)])
    return CliRunner().invoke(main, [*args, "--out", str(out)])


@pytest.mark.parametrize("verb", VERBS)
def test_a_run_killed_while_writing_leaves_the_previous_outputs_whole(tmp_path, monkeypatch, fake_training, verb):
    first, second, dies_in = _verbs(tmp_path)[verb]
    out = tmp_path / "out"
    res = _run(first, out)
    assert res.exit_code == 0, res.output
    before = _contents(out)
    assert before and any(dies_in in n for n in before)
    _die_while_writing(monkeypatch, dies_in)
    res = _run(second, out)
    assert res.exit_code != 0
    monkeypatch.undo()
    assert _contents(out) == before
    assert not list(out.glob(outputs.STAGING_PREFIX + "*"))


@pytest.mark.parametrize("verb", VERBS)
def test_a_killed_first_run_leaves_nothing(tmp_path, monkeypatch, fake_training, verb):
    first, _, dies_in = _verbs(tmp_path)[verb]
    out = tmp_path / "out"
    _prepare(first, out)
    before = _contents(out) if out.exists() else {}
    _die_while_writing(monkeypatch, dies_in)
    res = _run(first, out)
    assert res.exit_code != 0
    monkeypatch.undo()
    assert (_contents(out) if out.exists() else {}) == before


@pytest.mark.parametrize("verb", VERBS)
def test_a_second_run_into_a_folder_in_use_is_refused_naming_the_first(tmp_path, fake_training, verb):
    first, second, _ = _verbs(tmp_path)[verb]
    out = tmp_path / "out"
    assert _run(first, out).exit_code == 0
    before = _contents(out)
    with outputs.OutputRun(out, "the first run"):
        res = _run(second, out)
    assert res.exit_code != 0
    assert "is being written by another run" in res.output and "the first run" in res.output
    assert _contents(out) == before


@pytest.mark.parametrize("verb", VERBS)
def test_the_folder_files_share_one_run_id(tmp_path, fake_training, verb):
    first, second, _ = _verbs(tmp_path)[verb]
    out = tmp_path / "out"
    assert _run(first, out).exit_code == 0
    res = _run(second, out)
    assert res.exit_code == 0, res.output
    rec = outputs.verify(out)
    assert sorted(rec["files"]) == sorted(_contents(out))
    assert str(outputs.STAGING_PREFIX) not in res.output  # says where the files are, not where they were staged


def test_scenarios_evaluate_adds_its_report_beside_the_generated_suite(tmp_path, monkeypatch):
    """The documented pair (generate, then evaluate --out into the same folder): the report
    is added, the scenarios stay, and the folder's record holds both."""
    from aiot.evaluate import scenarios as ev

    monkeypatch.setattr(ev, "run_suite", lambda *a, **k: {"stand-in": True})
    monkeypatch.setattr(ev, "format_report", lambda report: "report (stand-in)")
    monkeypatch.setattr(ev, "acceptance_failures", lambda report: [])
    out = tmp_path / "out"
    gen = _verbs(tmp_path)["scenarios generate"][0]
    assert _run(gen, out).exit_code == 0
    suite = _contents(out)
    res = _run(["scenarios", "evaluate", "--count", "1"], out)
    assert res.exit_code == 0, res.output
    after = _contents(out)
    assert {n: after[n] for n in suite} == suite
    assert json.loads(after["scenario_report.json"]) == {"stand-in": True}
    assert sorted(outputs.verify(out)["files"]) == sorted(after)


def test_an_error_names_the_output_folder_not_its_staging_folder(tmp_path, fake_training):
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    res = CliRunner().invoke(main, ["quantize", "--package", str(out)])
    assert res.exit_code != 0
    assert f"{out / 'manifest.json'}: no quantile" in res.output and outputs.STAGING_PREFIX not in res.output
    assert json.loads((out / "manifest.json").read_text()) == {}


def test_aiot_build_stages_its_image_and_records_where_it_is(tmp_path, monkeypatch):
    """A real build (arm-none-eabi-gcc): a second build killed while it writes build.json
    leaves the first whole; a build into a folder in use is refused; build.json names the
    image in the folder, where the run record finds it."""
    out = tmp_path / "fw"
    first = ["build", "--board", "mps2-an386"]
    res = _run(first, out)
    assert res.exit_code == 0, res.output
    before = _contents(out)
    _die_while_writing(monkeypatch, "build.json")
    assert _run([*first, "--opt", "-O0"], out).exit_code != 0
    monkeypatch.undo()
    assert _contents(out) == before
    with outputs.OutputRun(out, "the first run"):
        res = _run(first, out)
    assert res.exit_code != 0 and "the first run" in res.output
    assert _contents(out) == before
    rec = outputs.verify(out)
    doc = json.loads((out / "build.json").read_text())
    assert doc["elf"] == str(out / "firmware.elf") and doc["bin"] == str(out / "firmware.bin")
    assert "firmware.elf" in rec["files"] and "build.json" in rec["files"]
    assert outputs.STAGING_PREFIX not in (out / "build.json").read_text()


@pytest.fixture
def fake_installation_model(tmp_path, monkeypatch):
    """aiot commission's training and firmware build replaced by stand-ins that write what they
    write (a model folder; firmware.elf, firmware.bin and build.json naming them)."""
    from aiot import installation
    from aiot.target import firmware

    def model(head, window, epochs, seed, noise_floor=0.0, name="installation", **kw):
        d = tmp_path / "models" / f"{name}-{epochs}"
        (d / "c").mkdir(parents=True, exist_ok=True)
        (d / "c" / "model.c").write_text(f"/* model {epochs} */\n")
        (d / "model.tflite").write_bytes(b"tflite %d" % epochs)
        c = len(head.channels)
        (d / "meta.json").write_text(json.dumps({"noise_floor": noise_floor, "fleet_mean": [0.0] * c,
                                                 "fleet_std": [1.0] * c}))
        return d

    class Size:
        def __init__(self):
            self.flash_total, self.ram_total = 1000, 100

    def build(board, out_dir, model_dir=None, **kw):
        out_dir = Path(out_dir)
        elf, binf = out_dir / "firmware.elf", out_dir / "firmware.bin"
        elf.write_bytes((model_dir / "model.c").read_bytes())
        binf.write_bytes(b"bin")
        (out_dir / "build.json").write_text(json.dumps({"elf": str(elf), "bin": str(binf)}))
        return firmware.BuildResult(board=board.name, elf=elf, bin=binf, size=Size())

    monkeypatch.setattr(installation, "device_file_model", model)
    monkeypatch.setattr(firmware, "build", build)


def test_aiot_commission_writes_its_installation_whole_or_not_at_all(tmp_path, monkeypatch, fake_installation_model):
    data = _csv(tmp_path / "pump7.csv", rows=200)
    out = tmp_path / "pump7"
    first = ["commission", "--data", str(data), "--rows", "120", "--window", "8", "--board", "mps2-an386",
             "--epochs", "1"]
    res = _run(first, out)
    assert res.exit_code == 0, res.output
    before = _contents(out)
    assert {"commission.json", "firmware.elf", "build.json", "c/model.c"} <= set(before)
    second = [*first[:-1], "2"]
    with pytest.MonkeyPatch.context() as mp:
        _die_while_writing(mp, "commission.json")
        assert _run(second, out).exit_code != 0
    assert _contents(out) == before
    with outputs.OutputRun(out, "the first run"):
        res = _run(second, out)
    assert res.exit_code != 0 and "the first run" in res.output
    assert _contents(out) == before
    assert _run(second, out).exit_code == 0
    doc = json.loads((out / "commission.json").read_text())
    assert doc["elf"] == str(out / "firmware.elf")
    assert (out / "firmware.elf").read_text() == "/* model 2 */\n"
    assert sorted(outputs.verify(out)["files"]) == sorted(_contents(out))


@pytest.mark.slow
@pytest.mark.qemu
def test_aiot_validate_writes_its_report_whole_or_not_at_all(tmp_path):
    """Real runs on QEMU: a validation killed while it writes report.html leaves the previous
    report whole; one into a folder in use is refused; the firmware it built is recorded where
    it is."""
    import shutil

    if not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")):
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc (make setup)")
    model = Path(__file__).resolve().parent.parent / "hil_tests" / "fixtures" / "ae24"
    out = tmp_path / "v"
    first = ["validate", "--board", "mps2-an386", "--model", str(model), "-n", "3"]
    res = _run(first, out)
    assert res.exit_code == 0, res.output
    before = _contents(out)
    assert {"report.json", "report.html", "outputs.npz", "fw/firmware.elf"} <= set(before)
    with pytest.MonkeyPatch.context() as mp:
        _die_while_writing(mp, "report.html")
        assert _run([*first[:-1], "4"], out).exit_code != 0
    assert _contents(out) == before
    with outputs.OutputRun(out, "the first run"):
        res = _run(first, out)
    assert res.exit_code != 0 and "the first run" in res.output
    assert _contents(out) == before
    assert json.loads((out / "fw" / "build.json").read_text())["elf"] == str(out / "fw" / "firmware.elf")
    assert sorted(outputs.verify(out)["files"]) == sorted(before)


@pytest.mark.slow
@pytest.mark.qemu
def test_aiot_bench_writes_each_model_folder_and_its_json_whole(tmp_path, monkeypatch):
    """A real bench of a small model on QEMU: its firmware folder (build/bench/BOARD/MODEL) and
    --json are written whole or not at all; a bench into a folder in use is refused."""
    import shutil

    if not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")):
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc (make setup)")
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "bench.json"
    args = ["bench", "--board", "mps2-an386", "--model", str(MODEL), "--runs", "10", "--json", str(report)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    folder = next((tmp_path / "build" / "bench").glob("*/good_dense"))
    before, json_before = _contents(folder), report.read_bytes()
    assert "c/model.c" in before and outputs.verify(folder)
    with pytest.MonkeyPatch.context() as mp:
        _die_while_writing(mp, "model.h")  # the second run dies generating the model's C
        assert CliRunner().invoke(main, args).exit_code != 0
    assert _contents(folder) == before
    with pytest.MonkeyPatch.context() as mp:
        _die_while_writing(mp, "bench.json")  # or while writing the report
        assert CliRunner().invoke(main, [*args[:-2], "--json", str(report)]).exit_code != 0
    assert report.read_bytes() == json_before and [p.name for p in tmp_path.glob(".bench.json*")] == []
    with outputs.OutputRun(folder, "the first run"):
        res = CliRunner().invoke(main, args)
    assert res.exit_code != 0 and "the first run" in res.output


def test_aiot_run_builds_its_firmware_whole_and_one_run_at_a_time(tmp_path, monkeypatch):
    """aiot run builds into build/fw/BOARD as aiot build does: refused while another run holds
    the folder (before compiling anything), else staged and moved in whole, build.json naming
    the image where it is."""
    from types import SimpleNamespace

    from aiot.device import hil
    from aiot.errors import ToolkitError
    from aiot.model import package
    from aiot.target import firmware

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    vectors = {"x_int8": np.zeros((1, 4), np.int8)}
    monkeypatch.setattr(package, "load_package", lambda p: SimpleNamespace(path=Path(p), vectors=lambda: vectors))
    built = []

    def build(board, out_dir, model_dir=None, **kw):
        built.append(Path(out_dir))
        elf, binf = Path(out_dir) / "firmware.elf", Path(out_dir) / "firmware.bin"
        elf.write_bytes(b"elf")
        binf.write_bytes(b"bin")
        (Path(out_dir) / "build.json").write_text(json.dumps({"elf": str(elf), "bin": str(binf)}))
        return SimpleNamespace(elf=elf, bin=binf)

    def no_device(**kw):
        raise ToolkitError(f"stand-in: no device (elf {kw['elf']})")

    monkeypatch.setattr(firmware, "build", build)
    monkeypatch.setattr(hil, "open_device", no_device)
    out = tmp_path / "build" / "fw" / "mps2-an386"
    args = ["run", "--board", "mps2-an386", "--package", str(tmp_path / "pkg")]
    with outputs.OutputRun(out, "the first run"):
        res = CliRunner().invoke(main, args)
    assert res.exit_code != 0 and "is being written by another run" in res.output and "the first run" in res.output
    assert built == []
    res = CliRunner().invoke(main, args)
    assert "stand-in: no device" in res.output and f"elf {out / 'firmware.elf'})" in res.output
    assert built and built[0] != out  # staged, then moved in
    assert (out / "firmware.elf").read_bytes() == b"elf"
    assert json.loads((out / "build.json").read_text())["elf"] == str(out / "firmware.elf")
    assert sorted(outputs.verify(out)["files"]) == sorted(_contents(out))


def test_aiot_tune_out_is_refused_while_another_run_holds_the_folder(tmp_path, monkeypatch):
    """aiot tune --out writes its picks under the folder's lock: a second run is refused at its
    start, before any training, naming the first."""
    from aiot.evaluate import tuning

    data = _csv(tmp_path / "normal.csv", rows=400)
    out = tmp_path / "picks"
    called = []
    monkeypatch.setattr(tuning, "tune", lambda *a, **k: called.append(a) or 0)
    with outputs.OutputRun(out, "the first run"):
        res = _run(["tune", "--data", str(data), "--target", "reference"], out)
    assert res.exit_code != 0 and "is being written by another run" in res.output and "the first run" in res.output
    assert called == []
    res = _run(["tune", "--data", str(data), "--target", "reference"], out)
    assert res.exit_code == 0, res.output
    assert called and called[0][0] == str(data)


def test_aiot_commission_fleet_registers_its_images_in_the_registry_and_holds_the_folder(tmp_path,
                                                                                        fake_installation_model):
    """--fleet commissions into a registry folder: each image is recorded in registry.json (the
    lifecycle registry, what aiot models reads; the releases already there stay), a failed
    installation is listed and the command exits 1; a second run while one holds the folder is
    refused naming it and changes nothing."""
    from aiot.data import sha256_file
    from aiot.lifecycle.registry import Registry

    site = tmp_path / "site"
    site.mkdir()
    _csv(site / "pump1.csv", rows=200)
    (site / "pump2.csv").write_text("timestamp,a,b\n0,1,2\n1,1,2\n")  # two rows: nothing to learn from
    out = tmp_path / "registry"
    out.mkdir()
    (out / "pump-ae-1.0.0.bin").write_bytes(b"a signed release")
    (out / "registry.json").write_text(json.dumps({"releases": {"pump-ae-1.0.0": {
        "file": "pump-ae-1.0.0.bin", "abi": 1, "parent": None, "gate": None}}, "devices": {}}))
    args = ["commission", "--fleet", "--data", str(site), "--board", "mps2-an386", "--rows", "120", "--window", "8",
            "--epochs", "1"]
    res = _run(args, out)
    assert res.exit_code == 1, res.output
    assert "pump2" in res.output and "FAILED" in res.output
    reg = Registry(out)
    assert list(reg.releases()) == ["pump-ae-1.0.0"] and (out / "pump-ae-1.0.0.bin").is_file()
    [(name, img)] = reg.images().items()
    assert name == "pump1" and img["board"] == "mps2-an386" and img["elf"] == "pump1/firmware.elf"
    assert img["elf_sha256"] == sha256_file(out / img["elf"]) and img["bin_sha256"] == sha256_file(out / img["bin"])
    assert img["model_sha256"] == json.loads((out / img["commission"]).read_text())["model"]["sha256"]
    assert img["data_sha256"] == sha256_file(site / "pump1.csv")
    assert not (out / "index.json").exists()  # one registry format
    listed = CliRunner().invoke(main, ["models", "list", "--registry", str(out)])
    assert listed.exit_code == 0, listed.output
    assert "pump-ae-1.0.0" in listed.output
    assert "image pump1" in listed.output and img["model_sha256"][:12] in listed.output
    before = _contents(out)
    with outputs.OutputRun(out, "the first run"):
        res = _run(args, out)
    assert res.exit_code != 0 and "is being written by another run" in res.output and "the first run" in res.output
    assert _contents(out) == before
