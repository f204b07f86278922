"""`aiot flash` and `aiot monitor` without hardware: the exact commands each method runs,
and every error path (no probe, unknown probe, several probes, missing pack, missing
drive, missing ELF, emulated board, no serial port), checked through the CLI where the
user sees them. USB discovery is replaced by fakes; nothing here touches a real port."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiot.target import flash as F
from aiot.target.boards import get_board
from aiot.cli import main
from aiot.commands import monitor as MON
from aiot.errors import ToolkitError
from aiot.testing import requires_arm


def _arm_elf(machine: int = 40, *, klass: int = 1) -> bytes:
    """The smallest whole ELF the firmware check accepts (with the defaults): a 52-byte ELF32
    little-endian header (type EXEC, ``machine``, 40 = ARM), one empty 32-byte program header
    right after it (phoff 52), no section headers. Nothing to run, but not arbitrary bytes."""
    import struct

    ident = b"\x7fELF" + bytes([klass, 1, 1]) + bytes(9)  # class, little-endian, ELF version 1
    # type, machine, version, entry, phoff, shoff, flags, ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    header = ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, 0, 52, 0, 0, 52, 32, 1, 40, 0, 0)
    return header + bytes(32)


@pytest.fixture
def elf(tmp_path: Path) -> Path:
    p = tmp_path / "firmware.elf"
    p.write_bytes(_arm_elf())
    p.with_suffix(".bin").write_bytes(b"\x00" * 16)
    return p


@pytest.fixture
def usb(monkeypatch: pytest.MonkeyPatch):
    """Fake host: what probes, serial ports and pyocd targets exist."""
    state = {"probes": [], "ports": [], "targets": {"stm32f767zi", "nrf52840"}}
    monkeypatch.setattr(F, "have_pyocd", lambda: True)
    monkeypatch.setattr(F, "list_probes", lambda: list(state["probes"]))
    monkeypatch.setattr(F, "list_serial_ports", lambda: list(state["ports"]))
    monkeypatch.setattr(F, "pyocd_target_available", lambda t: t in state["targets"])
    return state


class _Runs:
    def __init__(self, rc: int = 0):
        self.calls: list[list[str]] = []
        self.rc = rc

    def __call__(self, cmd, *a, **k):
        self.calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, self.rc)


# --- exact commands ---------------------------------------------------------------------------


def test_pyocd_command_is_exact(elf: Path) -> None:
    b = get_board("nucleo-f767zi")
    assert F.pyocd_command(b, elf) == [sys.executable, "-m", "pyocd", "load", "--target", "stm32f767zi",
                                       "--format", "elf", str(elf)]
    assert F.pyocd_command(b, elf, "0668FF")[-3:] == ["--uid", "0668FF", str(elf)]


def test_flash_runs_pyocd_pinned_to_the_one_probe(usb, elf: Path) -> None:
    usb["probes"] = [F.Probe("066BFF535155878281183623", "STM32 STLink")]
    runs = _Runs()
    cmd = F.flash(get_board("nucleo-f767zi"), elf, run=runs, echo=lambda s: None)
    assert runs.calls == [cmd]
    assert cmd == [sys.executable, "-m", "pyocd", "load", "--target", "stm32f767zi", "--format", "elf",
                   "--uid", "066BFF535155878281183623", str(elf)]


def test_probe_prefix_selects_among_several(usb, elf: Path) -> None:
    usb["probes"] = [F.Probe("0668AAAA", "STM32 STLink"), F.Probe("0669BBBB", "STM32 STLink")]
    runs = _Runs()
    F.flash(get_board("nucleo-f767zi"), elf, probe="0669", run=runs, echo=lambda s: None)
    assert runs.calls[0][-3:] == ["--uid", "0669", str(elf)]
    with pytest.raises(ToolkitError, match="2 debug probes are connected") as ei:
        F.flash(get_board("nucleo-f767zi"), elf, run=runs, echo=lambda s: None)
    assert "0668AAAA" in str(ei.value) and "0669BBBB" in str(ei.value)
    assert len(runs.calls) == 1  # nothing ran for the ambiguous case


def test_user_command_and_platformio_commands(elf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    b = get_board("nucleo-f446re")
    flash_tbl = {**b.extra["flash"], "command": "st-flash --reset write {bin} 0x08000000"}
    b2 = dataclasses.replace(b, extra={**b.extra, "flash": flash_tbl})
    assert F.user_command(b2, elf) == ["st-flash", "--reset", "write", str(elf.with_suffix(".bin")), "0x08000000"]
    monkeypatch.setattr(F, "_pio", lambda: "pio")
    assert F.platformio_command(b, tmp_path / "proj") == ["pio", "run", "-d", str(tmp_path / "proj"), "-e",
                                                         "nucleo-f446re", "-t", "upload"]
    assert F.platformio_command(b, tmp_path, "/dev/ttyACM0")[-2:] == ["--upload-port", "/dev/ttyACM0"]


def test_user_command_unknown_field(elf: Path) -> None:
    import dataclasses

    b = get_board("nucleo-f446re")
    b2 = dataclasses.replace(b, extra={**b.extra, "flash": {**b.extra["flash"], "command": "x {image}"}})
    with pytest.raises(ToolkitError, match="unknown field 'image'"):
        F.user_command(b2, elf)


def _f446_drive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty NODE_F446RE USB drive where flash looks for drives (AIOT_MSD_ROOTS)."""
    drive = tmp_path / "media" / "NODE_F446RE"
    drive.mkdir(parents=True)
    monkeypatch.setenv("AIOT_MSD_ROOTS", str(tmp_path / "media"))
    return drive


def test_msd_copies_the_image_to_the_drive(elf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drive = _f446_drive(tmp_path, monkeypatch)
    cmd = F.flash(get_board("nucleo-f446re"), elf, method="msd", echo=lambda s: None)
    assert cmd == ["cp", str(elf.with_suffix(".bin")), f"{drive}/"]
    assert (drive / "firmware.bin").read_bytes() == elf.with_suffix(".bin").read_bytes()


# --- error paths through the CLI -----------------------------------------------------------------


def _cli(args: list[str]):
    return CliRunner().invoke(main, args)


def test_no_probe_fails_fast_listing_what_it_found(usb, elf: Path) -> None:
    usb["ports"] = [F.SerialPortInfo("/dev/ttyUSB0", "CP2102", "10C4:EA60")]
    r = _cli(["flash", "--board", "nucleo-f767zi", "--elf", str(elf)])
    assert r.exit_code == 2
    assert "no debug probe found for nucleo-f767zi" in r.output
    assert "/dev/ttyUSB0 (CP2102, USB 10C4:EA60)" in r.output  # what it did see
    assert "--with msd" in r.output and "udev" in r.output


def test_unknown_probe_lists_the_connected_ones(usb, elf: Path) -> None:
    usb["probes"] = [F.Probe("0668AAAA", "STM32 STLink")]
    r = _cli(["flash", "--board", "nucleo-f767zi", "--elf", str(elf), "--probe", "DEAD"])
    assert r.exit_code == 2
    assert "debug probe 'DEAD' is not connected" in r.output and "0668AAAA (STM32 STLink)" in r.output


def test_missing_pack_target_says_how_to_get_it(usb, elf: Path) -> None:
    r = _cli(["flash", "--board", "nucleo-f446re", "--elf", str(elf)])
    assert r.exit_code == 2
    assert "no built-in target 'stm32f446retx'" in r.output
    assert "pyocd pack install stm32f446re" in r.output


def test_missing_elf_and_emulated_board(usb, tmp_path: Path) -> None:
    r = _cli(["flash", "--board", "nucleo-g071rb", "--elf", str(tmp_path / "nope.elf")])
    assert r.exit_code == 2 and "firmware not found" in r.output and "aiot build --board nucleo-g071rb" in r.output
    r = _cli(["flash", "--board", "netduinoplus2", "--elf", str(tmp_path / "x.elf")])
    assert r.exit_code == 2 and "runs in QEMU" in r.output and "aiot run --board netduinoplus2" in r.output


def test_msd_drive_missing_lists_drives(elf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "media" / "USBSTICK").mkdir(parents=True)
    monkeypatch.setenv("AIOT_MSD_ROOTS", str(tmp_path / "media"))
    r = _cli(["flash", "--board", "nucleo-f446re", "--elf", str(elf), "--with", "msd"])
    assert r.exit_code == 2 and "NODE_F446RE USB drive is not mounted" in r.output and "USBSTICK" in r.output


def test_flash_tool_failure_is_reported_with_the_command(usb, elf: Path) -> None:
    usb["probes"] = [F.Probe("0668AAAA", "STM32 STLink")]
    with pytest.raises(ToolkitError, match="failed \\(exit code 1\\)") as ei:
        F.flash(get_board("nucleo-f767zi"), elf, run=_Runs(rc=1), echo=lambda s: None)
    assert "pyocd load" in ei.value.hint


def test_dry_run_prints_the_command(usb, elf: Path) -> None:
    r = _cli(["flash", "--board", "nucleo-f767zi", "--elf", str(elf), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert f"-m pyocd load --target stm32f767zi --format elf {elf}" in r.output


def test_pyocd_missing_points_to_the_extra(monkeypatch: pytest.MonkeyPatch, elf: Path) -> None:
    monkeypatch.setattr(F, "have_pyocd", lambda: False)
    with pytest.raises(ToolkitError, match="pyocd is not installed") as ei:
        F.flash(get_board("nucleo-f767zi"), elf)
    assert "aiot-toolkit[boards]" in ei.value.hint


@pytest.mark.skipif(not F.have_pyocd(), reason="pyocd not installed (pip install '.[boards]')")
def test_real_pyocd_sees_no_probe_here_and_knows_builtin_targets() -> None:
    # The real discovery path, on a machine with no board attached: an empty list, fast.
    assert F.pyocd_target_available("stm32f767zi") and F.pyocd_target_available("nrf52840")
    assert isinstance(F.list_probes(), list)


# --- monitor: port resolution and the session ---------------------------------------------------


def test_monitor_without_port_lists_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(F, "list_serial_ports", lambda: [F.SerialPortInfo("/dev/ttyS0", "n/a", None)])
    r = _cli(["monitor", "--board", "nucleo-f446re"])
    assert r.exit_code == 2 and "no serial port found for nucleo-f446re" in r.output and "/dev/ttyS0" in r.output
    r = _cli(["monitor", "--port", "/dev/ttyACM9"])
    assert r.exit_code == 2 and "/dev/ttyACM9 does not exist" in r.output and "dialout" in r.output


def test_monitor_picks_the_board_port_by_usb_id() -> None:
    ports = [F.SerialPortInfo("/dev/ttyUSB0", "CP2102", "10C4:EA60"),
             F.SerialPortInfo("/dev/ttyACM0", "STM32 STLink", "0483:374B")]
    assert MON.resolve_port(None, "nucleo-f446re", lambda: ports) == "/dev/ttyACM0"
    with pytest.raises(ToolkitError, match="2 candidate serial ports"):
        MON.resolve_port(None, None, lambda: ports)
    assert MON.resolve_port("socket://127.0.0.1:1", None, lambda: []) == "socket://127.0.0.1:1"


def test_monitor_session_shows_info_state_and_events(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiot.device import hil
    from aiot.monitor import Event

    class FakeInfo:
        board, firmware_version, proto_major, proto_minor, cpu_hz = "nucleo-f446re", "0.1.0", 1, 0, 180e6
        has_model, has_monitor, model_name, input_bytes, output_bytes = False, True, "", 0, 0

    batches = [[], [Event(12345, 7, "ALERT_RAISED", 2, (2,), 3, "ANOMALY", 4.25)]]

    class FakeDevice:
        def __init__(self, transport, **kw):
            self.polls = 0

        def info(self):
            return FakeInfo()

        def stats(self):
            return {"configured": True, "monitor": {"phase": "ARMED", "state": "NORMAL"}}

        def events(self):
            return batches.pop(0) if batches else []

        def iter_events(self, journal=None):  # what aiot monitor uses: each event before its ack
            return iter(self.events())

        def reset_link_counters(self):
            pass

        def link_report(self):
            return None

    monkeypatch.setattr(hil, "Device", FakeDevice)

    class T:
        name = "fake"

        def read(self, timeout):
            return b""

    lines: list[str] = []
    shown = MON.run_monitor(T(), duration=0.3, interval=0.05, raw=False, echo=lines.append)
    assert shown == 1
    assert lines[0].startswith("device nucleo-f446re: firmware 0.1.0, protocol 1.0, 180 MHz")
    assert "-- monitor: ARMED / NORMAL" in lines
    ev = [ln for ln in lines if "ALERT_RAISED" in ln]
    assert ev == ["[    12.345 s] #7     ALERT_RAISED     ch 2         severity 3  state ANOMALY  value 4.25"]


def test_an_event_line_shows_the_devices_confidence_when_it_has_one():
    from aiot.commands.monitor import format_event
    from aiot.monitor import Event

    sure = Event(12345, 7, "ALERT_RAISED", 2, (2,), 3, "ANOMALY", 4.25, confidence=0.968)
    assert format_event(sure).endswith("state ANOMALY  value 4.25  confidence 0.968")
    assert "confidence" not in format_event(Event(0, 0, "COMMISSIONED", None, (), 0, "NORMAL", 0.0))


@pytest.mark.qemu
def test_monitor_on_qemu_device_and_raw_fallback(tmp_path: Path) -> None:
    """Against real firmware over QEMU's UART socket: the protocol app is identified, and a
    firmware that does not speak the protocol (boardcheck) has its raw output shown."""
    from aiot.testing import have_arm_toolchain, have_qemu

    if not (have_arm_toolchain() and have_qemu()):
        pytest.skip("needs arm-none-eabi-gcc and qemu-system-arm")
    from aiot.target.firmware import build
    from aiot.device.hil import SerialTransport
    from aiot.target.qemu import Qemu

    b = get_board("microbit")
    for app, want in (("device", "device microbit: firmware"), ("boardcheck", "aiot boot microbit")):
        elf = build(b, tmp_path / app, app=app).elf
        with Qemu(b, elf, serial="tcp") as q:
            t = SerialTransport(q.url, b.baud)
            lines: list[str] = []
            try:
                MON.run_monitor(t, duration=0.5, interval=0.2, raw=False, echo=lines.append, timeout=1.0)
            finally:
                t.close()
        text = "\n".join(lines)
        assert want in text, text


def test_platformio_flash_needs_an_exported_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiot.target.export import export_project

    r = _cli(["flash", "--board", "nucleo-f446re", "--with", "platformio"])
    assert r.exit_code == 2 and "needs an exported project" in r.output and "aiot export --board nucleo-f446re" in r.output
    proj = export_project(get_board("nucleo-f446re"), "platformio", tmp_path / "fw-pio")
    monkeypatch.setattr(F, "_pio", lambda: "pio")
    runs = _Runs()
    cmd = F.flash(get_board("nucleo-f446re"), tmp_path / "unused.elf", method="platformio", project_dir=proj,
                  run=runs, echo=lambda s: None)
    assert runs.calls == [cmd] == [["pio", "run", "-d", str(proj), "-e", "nucleo-f446re", "-t", "upload"]]


# --- the image must be for this board -------------------------------------------------------------


def _built_for(elf: Path, board: str) -> Path:
    """Write the build.json `aiot build` leaves next to its ELF."""
    import json

    (elf.parent / "build.json").write_text(json.dumps({"board": board, "elf": str(elf),
                                                       "bin": str(elf.with_suffix(".bin")), "size": {}}))
    return elf


def test_flash_refuses_an_elf_built_for_another_board(usb, elf: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    _built_for(elf, "mps2-an386")
    drive = _f446_drive(tmp_path, monkeypatch)
    r = _cli(["flash", "--board", "nucleo-f446re", "--elf", str(elf), "--with", "msd"])
    assert r.exit_code == 2, r.output
    assert "built for mps2-an386, not nucleo-f446re" in r.output and "aiot build --board nucleo-f446re" in r.output
    assert "flashed" not in r.output and list(drive.iterdir()) == []
    # Every method that takes the ELF, dry runs included; nothing runs.
    usb["probes"] = [F.Probe("0668AAAA", "STM32 STLink")]
    runs = _Runs()
    b = get_board("nucleo-f767zi")
    with pytest.raises(ToolkitError, match="built for mps2-an386, not nucleo-f767zi"):
        F.flash(b, elf, method="pyocd", run=runs, echo=lambda s: None)
    with pytest.raises(ToolkitError, match="built for mps2-an386"):
        F.flash(b, elf, method="pyocd", dry_run=True, run=runs, echo=lambda s: None)
    b2 = dataclasses.replace(b, extra={**b.extra, "flash": {**b.extra["flash"], "command": "st-flash write {bin} 0x08000000"}})
    with pytest.raises(ToolkitError, match="built for mps2-an386"):
        F.flash(b2, elf, method="command", run=runs, echo=lambda s: None)
    assert runs.calls == []


def test_flash_takes_an_elf_built_for_this_board_or_without_a_record(elf: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    drive = _f446_drive(tmp_path, monkeypatch)
    _built_for(elf, "nucleo-f446re")
    F.flash(get_board("nucleo-f446re"), elf, method="msd", echo=lambda s: None)
    assert (drive / "firmware.bin").is_file()
    # A build.json about another ELF in the folder is no record of this one.
    other = elf.with_name("mine.elf")
    other.write_bytes(elf.read_bytes())
    other.with_suffix(".bin").write_bytes(b"\x01" * 16)
    _built_for(elf, "mps2-an386")
    F.flash(get_board("nucleo-f446re"), other, method="msd", echo=lambda s: None)
    assert (drive / "mine.bin").read_bytes() == b"\x01" * 16


# --- the image must be a whole ARM ELF ------------------------------------------------------------


@pytest.fixture
def touched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every probe, port, pack, drive or tool look-up flash makes, by name (each finds something)."""
    calls: list[str] = []

    def record(name: str, result):
        def fake(*a, **k):
            calls.append(name)
            return result
        return fake

    monkeypatch.setattr(F, "have_pyocd", record("have_pyocd", True))
    monkeypatch.setattr(F, "list_probes", record("list_probes", [F.Probe("0668AAAA", "STM32 STLink")]))
    monkeypatch.setattr(F, "list_serial_ports", record("list_serial_ports", []))
    monkeypatch.setattr(F, "pyocd_target_available", record("pyocd_target_available", True))
    monkeypatch.setattr(F, "require", record("require", "arm-none-eabi-objcopy"))
    monkeypatch.setattr(F, "find_msd", record("find_msd", (None, [])))
    return calls


_NOT_FIRMWARE = [  # (what is given as the ELF, what the message says, what the hint says)
    ("folder", "a folder, not a firmware file", "give the .elf inside it, or build one: aiot build --board"),
    (b"#!/bin/sh\necho not firmware\n", "not an ELF file (it starts b'#!/b'", "e.g. aiot build --board"),
    (_arm_elf(62), "an ELF file, but not 32-bit little-endian ARM firmware", "rebuild it: aiot build --board"),
    (_arm_elf(40, klass=2), "not 32-bit little-endian ARM firmware", "rebuild it: aiot build --board"),
    (_arm_elf()[:60], "truncated ELF (60 bytes; its headers reach byte 84)",
     "copy it again, or rebuild it: aiot build --board"),
]


def _not_firmware(tmp_path: Path, content) -> Path:
    p = tmp_path / "firmware.elf"
    if content == "folder":
        p.mkdir()
    else:
        p.write_bytes(content)
    return p


@pytest.mark.parametrize("content, says, hint", _NOT_FIRMWARE,
                         ids=["folder", "not-elf", "x86-64", "elf64", "truncated"])
def test_flash_refuses_what_is_not_an_arm_elf_before_any_probe_or_tool(touched: list[str], tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       content, says, hint) -> None:
    import dataclasses

    bad = _not_firmware(tmp_path, content)
    drive = _f446_drive(tmp_path, monkeypatch)
    r = _cli(["flash", "--board", "nucleo-f446re", "--elf", str(bad), "--with", "msd"])
    assert r.exit_code == 2, r.output
    assert says in r.output and str(bad) in r.output and f"{hint} nucleo-f446re" in r.output
    assert "Traceback" not in r.output and "flashed" not in r.output
    assert list(drive.iterdir()) == [] and not bad.with_suffix(".bin").exists()
    # Every method that takes the ELF, dry runs included: the same error, and nothing is looked up or run.
    b = get_board("nucleo-f767zi")
    command = {**b.extra["flash"], "command": "st-flash write {bin} 0x08000000"}
    b2 = dataclasses.replace(b, extra={**b.extra, "flash": command})
    runs = _Runs()
    for board, method, dry_run in ((b, "pyocd", False), (b, "pyocd", True), (b2, "command", False),
                                   (b2, "command", True), (b, "msd", True)):
        with pytest.raises(ToolkitError) as ei:
            F.flash(board, bad, method=method, dry_run=dry_run, run=runs, echo=lambda s: None)
        assert says in ei.value.message and ei.value.hint.endswith(f"{hint} nucleo-f767zi"), (method, dry_run)
    assert runs.calls == [] and touched == []


def test_flash_checks_the_elf_before_the_board_it_was_built_for(touched: list[str], tmp_path: Path) -> None:
    # Not firmware at all is the first thing to fix, whatever build.json says.
    bad = _built_for(_not_firmware(tmp_path, b"not an elf"), "mps2-an386")
    with pytest.raises(ToolkitError, match="not an ELF file"):
        F.flash(get_board("nucleo-f767zi"), bad, method="pyocd", dry_run=True)
    # A whole ARM ELF built for another board is still refused, as before.
    bad.write_bytes(_arm_elf())
    with pytest.raises(ToolkitError, match="built for mps2-an386, not nucleo-f767zi"):
        F.flash(get_board("nucleo-f767zi"), bad, method="pyocd", dry_run=True)
    assert touched == []


def test_platformio_refuses_a_project_exported_for_another_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiot.target.export import export_project

    proj = export_project(get_board("nucleo-f767zi"), "platformio", tmp_path / "fw-pio")
    monkeypatch.setattr(F, "_pio", lambda: "pio")
    runs = _Runs()
    with pytest.raises(ToolkitError, match="exported for nucleo-f767zi, not nucleo-f446re"):
        F.flash(get_board("nucleo-f446re"), tmp_path / "unused.elf", method="platformio", project_dir=proj,
                run=runs, echo=lambda s: None)
    assert runs.calls == []


# --- the .bin / .hex next to the ELF ----------------------------------------------------------------


def _tiny_arm_elf(tmp_path: Path, words: tuple[int, ...]) -> Path:
    """A real (if tiny) ARM ELF whose loadable image is ``words``, little-endian."""
    asm = tmp_path / "tiny.s"
    asm.write_text(".section .text\n" + "".join(f".word 0x{w:08x}\n" for w in words))
    obj, elf = tmp_path / "tiny.o", tmp_path / "tiny.elf"
    subprocess.run(["arm-none-eabi-as", "-o", str(obj), str(asm)], check=True, capture_output=True)
    subprocess.run(["arm-none-eabi-ld", "-Ttext=0x08000000", "-e", "0x08000000", "-o", str(elf), str(obj)],
                   check=True, capture_output=True)
    return elf


@requires_arm
def test_msd_makes_a_missing_or_stale_bin_from_the_elf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    elf = _tiny_arm_elf(tmp_path, (0x12345678, 0xCAFEF00D))
    drive = _f446_drive(tmp_path, monkeypatch)
    assert not elf.with_suffix(".bin").exists()
    F.flash(get_board("nucleo-f446re"), elf, method="msd", echo=lambda s: None)
    assert (drive / "tiny.bin").read_bytes() == bytes.fromhex("78563412 0df0feca")
    # A .bin older than the ELF is another build's image: remade, not copied.
    stale = elf.with_suffix(".bin")
    stale.write_bytes(b"old image")
    os.utime(stale, (elf.stat().st_mtime - 60,) * 2)
    F.flash(get_board("nucleo-f446re"), elf, method="msd", echo=lambda s: None)
    assert (drive / "tiny.bin").read_bytes() == bytes.fromhex("78563412 0df0feca")


@requires_arm
def test_msd_refuses_a_truncated_real_elf_before_objcopy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = _tiny_arm_elf(tmp_path, (0x12345678,))
    drive = _f446_drive(tmp_path, monkeypatch)
    trunc = tmp_path / "trunc.elf"
    for cut, says in ((40, "not 32-bit little-endian ARM firmware (built for another CPU, or cut short)"),
                      (1000, f"truncated ELF (1000 bytes; its headers reach byte {real.stat().st_size})")):
        trunc.write_bytes(real.read_bytes()[:cut])
        r = _cli(["flash", "--board", "nucleo-f446re", "--elf", str(trunc), "--with", "msd"])
        assert r.exit_code == 2, r.output
        assert says in r.output and "aiot build --board nucleo-f446re" in r.output
        assert "Traceback" not in r.output and "objcopy" not in r.output
        assert list(drive.iterdir()) == [] and not trunc.with_suffix(".bin").exists()


@requires_arm
def test_msd_with_an_elf_objcopy_cannot_convert_and_no_bin_says_what_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elf = tmp_path / "nosections.elf"
    elf.write_bytes(_arm_elf())  # a whole ARM ELF header, but no sections for objcopy to write out
    drive = _f446_drive(tmp_path, monkeypatch)
    r = _cli(["flash", "--board", "nucleo-f446re", "--elf", str(elf), "--with", "msd"])
    assert r.exit_code == 2, r.output
    assert "could not make nosections.bin" in r.output and "aiot build --board nucleo-f446re" in r.output
    assert "Traceback" not in r.output and "FileNotFoundError" not in r.output
    assert list(drive.iterdir()) == [] and not elf.with_suffix(".bin").exists()


def test_missing_bin_without_objcopy_says_how_to_make_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elf = tmp_path / "nobin.elf"
    elf.write_bytes(_arm_elf())
    (tmp_path / "media" / "NODE_F446RE").mkdir(parents=True)
    monkeypatch.setenv("AIOT_MSD_ROOTS", str(tmp_path / "media"))

    def no_tool(tool: str) -> str:
        raise ToolkitError(f"'{tool}' was not found on PATH", hint="install it")

    monkeypatch.setattr(F, "require", no_tool)
    with pytest.raises(ToolkitError, match="nobin.bin is missing next to") as ei:
        F.flash(get_board("nucleo-f446re"), elf, method="msd", echo=lambda s: None)
    assert "arm-none-eabi-objcopy" in str(ei.value) and "aiot build --board nucleo-f446re" in ei.value.hint


def test_monitor_raw_shows_output_without_newlines_in_pieces_as_it_arrives() -> None:
    import time

    class Endless:  # a device streaming text that never ends a line
        name = "fake"

        def read(self, timeout):
            time.sleep(0.001)
            return b"A" * 1000

        def diagnose(self):
            return ""

        def close(self):
            pass

    lines: list[str] = []
    t0 = time.monotonic()
    MON.run_monitor(Endless(), duration=0.5, interval=0.1, raw=True, echo=lines.append)
    assert time.monotonic() - t0 < 2.0
    assert len(lines) > 10  # shown while it streams, not as one line at the end
    assert max(len(line) for line in lines) < MON.RAW_LINE_MAX + 1000
    assert set("".join(lines)) == {"A"}


class _PrintsThenDrops:
    """A device that printed ``text`` and then dropped the link: reads give the text, then
    fail; writes fail after the first ``writes_ok`` (a socket whose other end closed)."""

    name = "fake"

    def __init__(self, text: bytes, writes_ok: int = 99):
        self.text, self.writes_ok = text, writes_ok

    def write(self, data):
        self.writes_ok -= 1
        if self.writes_ok < 0:
            raise ToolkitError("writing to fake failed: broken pipe")

    def read(self, timeout):
        data, self.text = self.text, b""
        if not data:
            raise ToolkitError("fake closed the connection")
        return data

    def diagnose(self):
        return ""

    def close(self):
        pass


def test_monitor_shows_what_the_device_sent_before_the_link_went_down() -> None:
    """Raw mode lost the last line when it had no newline yet (a crash message cut short);
    a session whose link went down before INFO was answered showed none of what came."""
    lines: list[str] = []
    with pytest.raises(ToolkitError, match="closed the connection"):
        MON.run_monitor(_PrintsThenDrops(b"BOOT v9\nHardFault at 0x0800"), duration=5, interval=0.1, raw=True,
                        echo=lines.append)
    assert lines == ["BOOT v9", "HardFault at 0x0800"]
    lines.clear()
    with pytest.raises(ToolkitError, match="broken pipe"):
        MON.run_monitor(_PrintsThenDrops(b"BOOT v9\nHardFault at 0x0800", writes_ok=1), duration=5, interval=0.1,
                        raw=False, echo=lines.append)
    assert lines == ["-- fake sent this before the link went down --", "BOOT v9\nHardFault at 0x0800"]


@pytest.mark.parametrize("missing, says", [("pack", "pyocd has no built-in target 'stm32f767zi'"),
                                           ("pyocd", "pyocd is not installed")])
def test_a_dry_run_shows_the_command_and_notes_what_flashing_would_stop_on(monkeypatch, elf: Path, missing, says):
    monkeypatch.setattr(F, "have_pyocd", lambda: missing != "pyocd")
    monkeypatch.setattr(F, "pyocd_target_available", lambda target: False)
    r = _cli(["flash", "--board", "nucleo-f767zi", "--elf", str(elf), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert f"-m pyocd load --target stm32f767zi --format elf {elf}" in r.output
    assert f"note: {says}" in r.output and "before flashing:" in r.output
    with pytest.raises(ToolkitError, match=says):  # a real flash still stops on it, before any probe
        F.flash(get_board("nucleo-f767zi"), elf, run=_Runs(), echo=lambda s: None)
