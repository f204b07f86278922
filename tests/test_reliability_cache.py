"""Issue 22, item 2: nothing stale, nothing half-written is reused. A kill during the firmware
link must not leave a firmware.elf that later runs take for a build; C generated from another
.tflite than the package's must not be built into firmware."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aiot.errors import ToolkitError
from aiot.target import firmware
from aiot.target.boards import get_board

FIX = Path(__file__).parent / "fixtures" / "tflite"


def _fake_toolchain(monkeypatch, on_link):
    """gcc / objcopy / nm / size stand-ins: compiling writes the object, linking calls
    ``on_link(output path)``; nothing of the real toolchain runs."""
    monkeypatch.setattr(firmware, "require", lambda tool: tool)

    def run(cmd, what):
        if "-c" in cmd:
            Path(cmd[cmd.index("-o") + 1]).write_bytes(b"obj")
            return ""
        if what.startswith("linking"):
            on_link(Path(cmd[cmd.index("-o") + 1]))
            return ""
        if cmd[0].endswith("objcopy"):
            Path(cmd[-1]).write_bytes(b"bin")
            return ""
        if cmd[0].endswith("size"):
            return "   text    data     bss     dec     hex filename\n   100   0   50   150   96 f\n"
        return ""

    monkeypatch.setattr(firmware, "_run", run)


@pytest.mark.parametrize("written", [0, 100])
def test_a_link_killed_part_way_leaves_no_firmware_elf(tmp_path, monkeypatch, written):
    def killed(out: Path):
        out.write_bytes(b"\x7fELF"[:written] + bytes(max(0, written - 4)))  # what ld wrote so far
        raise KeyboardInterrupt  # Ctrl-C / the process killed while ld runs

    _fake_toolchain(monkeypatch, killed)
    with pytest.raises(KeyboardInterrupt):
        firmware.build(get_board("mps2-an386"), tmp_path, None)
    assert not (tmp_path / "firmware.elf").exists()
    assert not (tmp_path / "build.json").exists()


def test_a_complete_build_is_recorded_last(tmp_path, monkeypatch):
    _fake_toolchain(monkeypatch, lambda out: out.write_bytes(b"\x7fELF" + bytes(60)))
    res = firmware.build(get_board("mps2-an386"), tmp_path, None)
    assert res.elf == tmp_path / "firmware.elf" and res.elf.read_bytes().startswith(b"\x7fELF")
    assert json.loads((tmp_path / "build.json").read_text())["elf"] == str(res.elf)
    assert firmware.image_complete(res.elf)
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_a_cached_image_without_its_build_record_is_rebuilt(tmp_path, monkeypatch):
    """An image a killed (pre-atomic) build left in the evaluation's cache: 0 bytes, no
    build.json. firmware_elf() used to return it for ever ("not an ELF file")."""
    from aiot.evaluate import monitor_device

    pkg = _package_with_c(tmp_path)
    built = []

    def killed_build(board, out, model_dir=None, **kw):
        out.mkdir(parents=True, exist_ok=True)
        (out / "firmware.elf").write_bytes(b"")  # the old build's name, written in place
        raise KeyboardInterrupt

    def good_build(board, out, model_dir=None, **kw):
        built.append(out)
        (out / "firmware.elf").write_bytes(b"\x7fELF" + bytes(60))
        (out / "build.json").write_text(json.dumps({"elf": str(out / "firmware.elf")}))

    monkeypatch.setattr(firmware, "build", killed_build)
    with pytest.raises(KeyboardInterrupt):
        monitor_device.firmware_elf(pkg, "mps2-an386", build=True, quiet=True)
    monkeypatch.setattr(firmware, "build", good_build)
    elf = monitor_device.firmware_elf(pkg, "mps2-an386", build=True, quiet=True)
    assert built == [elf.parent]
    assert elf.read_bytes().startswith(b"\x7fELF")


def _package_with_c(tmp_path: Path) -> Path:
    from aiot import codegen

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    shutil.copy(FIX / "good_dense.tflite", pkg / "model.tflite")
    codegen.generate(pkg / "model.tflite", pkg / "c")
    return pkg


def test_building_a_package_whose_c_was_generated_from_another_tflite_stops_with_the_fix(tmp_path, monkeypatch):
    pkg = _package_with_c(tmp_path)
    data = bytearray((pkg / "model.tflite").read_bytes())
    data[-1] ^= 0xFF  # re-quantized: another model, same size; codegen not run again
    (pkg / "model.tflite").write_bytes(bytes(data))

    def must_not_build(cmd, what):
        raise AssertionError(f"built from stale C: {what}")

    monkeypatch.setattr(firmware, "_run", must_not_build)
    monkeypatch.setattr(firmware, "require", lambda tool: tool)
    with pytest.raises(ToolkitError, match="generated from another model") as e:
        firmware.build(get_board("mps2-an386"), tmp_path / "fw", pkg / "c")
    assert f"aiot codegen --package {pkg}" in e.value.hint


def test_half_generated_c_is_refused(tmp_path, monkeypatch):
    """model.h from the new model, model.c still the old one (codegen killed between them)."""
    pkg = _package_with_c(tmp_path)
    text = (pkg / "c" / "model.c").read_text()
    import re

    (pkg / "c" / "model.c").write_text(re.sub(r"crc32 0x[0-9a-f]{8}", "crc32 0x01234567", text, count=1))
    monkeypatch.setattr(firmware, "_run", lambda cmd, what: (_ for _ in ()).throw(AssertionError(what)))
    monkeypatch.setattr(firmware, "require", lambda tool: tool)
    with pytest.raises(ToolkitError, match="model.c and model.h .* different models"):
        firmware.build(get_board("mps2-an386"), tmp_path / "fw", pkg / "c")


def test_aiot_build_of_a_stale_package_names_the_command_that_fixes_it(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from aiot.cli import main

    pkg = _package_with_c(tmp_path)
    data = bytearray((pkg / "model.tflite").read_bytes())
    data[-1] ^= 0xFF
    (pkg / "model.tflite").write_bytes(bytes(data))
    monkeypatch.setattr(firmware, "_run", lambda cmd, what: pytest.fail(f"built from stale C: {what}"))
    r = CliRunner().invoke(main, ["build", "--board", "mps2-an386", "--package", str(pkg), "--out",
                                  str(tmp_path / "fw")])
    assert r.exit_code != 0 and "generated from another model" in r.output
    assert f"aiot codegen --package {pkg}" in r.output
    assert not (tmp_path / "fw" / "firmware.elf").exists()


@pytest.mark.parametrize("channels, capacity", [(8, None), (52, "52"), (64, "64")])
def test_the_evaluation_firmware_holds_every_channel_of_its_model(tmp_path, monkeypatch, channels, capacity):
    """`aiot evaluate --target qemu:BOARD` on a 52-sensor plant (TEP) built the firmware with the
    monitor's default 8 channels and refused every file; the image is now built for the model's
    channel count (the default capacity, and the same image, up to 8)."""
    from aiot.evaluate import monitor_device

    pkg = _package_with_c(tmp_path)
    (pkg / "meta.json").write_text(json.dumps({"fleet_mean": [0.0] * channels, "fleet_std": [1.0] * channels}))
    seen = {}

    def good_build(board, out, model_dir=None, defines=(), **kw):
        seen["defines"] = list(defines)
        (out).mkdir(parents=True, exist_ok=True)
        (out / "firmware.elf").write_bytes(b"\x7fELF" + bytes(60))
        (out / "build.json").write_text(json.dumps({"elf": str(out / "firmware.elf")}))

    monkeypatch.setattr(firmware, "build", good_build)
    monitor_device.firmware_elf(pkg, "mps2-an386", build=True, quiet=True)
    want = [f"AIOT_MONITOR_MAX_CHANNELS={capacity}"] if capacity else []
    assert seen["defines"] == want


def test_an_image_built_for_fewer_channels_is_not_reused(tmp_path, monkeypatch):
    """The image's folder is keyed by the monitor capacity it was built with too: the 8-channel
    image of an earlier run was reused for a 52-channel model (same generated C)."""
    from aiot.evaluate import monitor_device

    pkg = _package_with_c(tmp_path)
    built = []

    def good_build(board, out, model_dir=None, defines=(), **kw):
        built.append(list(defines))
        out.mkdir(parents=True, exist_ok=True)
        (out / "firmware.elf").write_bytes(b"\x7fELF" + bytes(60))
        (out / "build.json").write_text(json.dumps({"elf": str(out / "firmware.elf")}))

    monkeypatch.setattr(firmware, "build", good_build)
    for channels in (8, 52, 52):
        (pkg / "meta.json").write_text(json.dumps({"fleet_mean": [0.0] * channels}))
        monitor_device.firmware_elf(pkg, "mps2-an386", build=True, quiet=True)
    assert built == [[], ["AIOT_MONITOR_MAX_CHANNELS=52"]]  # the third call reuses the second's image
