"""Board files: every shipped board loads and validates; broken ones fail with errors that
name the file and the key; and (QEMU) every emulated board boots our firmware, sends and
receives on its console UART, exits through semihosting, and runs SysTick at the rate its
board file claims (measured, not assumed)."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from aiot.testing import requires_arm, requires_qemu
from aiot import paths
from aiot.target.boards import get_board, list_boards, load_board_file
from aiot.errors import ToolkitError

FIX = Path(__file__).parent / "fixtures" / "boards"
BOARD_FILES = sorted(paths.BOARDS.glob("*.toml"))
EMULATED = [b.name for b in list_boards() if b.emulated]
# The six QEMU boards the toolkit supports (the evaluation matrix runs on all of them).
QEMU_BOARDS = {"mps2-an385", "mps2-an386", "mps2-an500", "mps2-an505", "netduinoplus2", "microbit"}


# --- every shipped board file ------------------------------------------------------------


@pytest.mark.parametrize("path", BOARD_FILES, ids=[p.stem for p in BOARD_FILES])
def test_board_file_loads_and_is_consistent(path: Path) -> None:
    b = load_board_file(path)
    assert b.name == path.stem, "the board name must match its file name (aiot --board uses the file name)"
    assert b.description
    assert b.cpu_hz > 0 and b.flash.length > 0 and b.ram.length > 0
    assert b.stack_bytes % 8 == 0 and b.stack_bytes <= b.ram.length // 2
    # Flash and RAM must not overlap: the linker would place .data over code.
    assert b.flash.origin + b.flash.length <= b.ram.origin or b.ram.origin + b.ram.length <= b.flash.origin
    if b.emulated:
        assert b.qemu_machine and b.systick_hz
    defs = b.defines()
    assert defs["AIOT_BOARD_NAME"] == f'"{b.name}"'
    assert defs["AIOT_SEMIHOSTING"] == ("1" if b.emulated else "0")


def test_the_six_qemu_boards_are_shipped() -> None:
    assert QEMU_BOARDS <= set(EMULATED)


def test_armv6m_board_has_no_fpu_flags() -> None:
    b = get_board("microbit")
    assert b.cpu_flags() == ["-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"]
    assert b.stack_bytes == 2048  # from the board file, not the 4 KiB default
    assert "_stack_size = 0x800;" in b.linker_script()


def test_an505_links_at_the_secure_aliases() -> None:
    # The M33 resets in Secure state with VTOR_S = 0x10000000: the vector table must be there.
    b = get_board("mps2-an505")
    assert b.flash.origin == 0x10000000 and b.ram.origin == 0x38000000
    assert b.uart_base == 0x50200000
    assert "ORIGIN = 0x10000000" in b.linker_script()


# --- broken board files --------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture, needles",
    [
        ("missing_core.toml", ["missing_core.toml", "'core'"]),
        ("unknown_core.toml", ["unknown_core.toml", "core = 'cortex-m99'", "cortex-m33"]),
        ("unknown_family.toml", ["unknown_family.toml", "family = 'pic32'", "stm32"]),
        ("bad_toml.toml", ["bad_toml.toml", "not valid TOML", "line 14"]),
        ("missing_uart_base.toml", ["missing_uart_base.toml", "'uart.base'"]),
        ("emulated_without_qemu.toml", ["emulated_without_qemu.toml", "'qemu.machine'"]),
        ("m0_with_fpu.toml", ["m0_with_fpu.toml", "fpu", "cortex-m0"]),
        ("bad_stack.toml", ["bad_stack.toml", "stack_bytes", "100"]),
    ],
)
def test_bad_board_file_names_file_and_key(fixture: str, needles: list[str]) -> None:
    with pytest.raises(ToolkitError) as ei:
        load_board_file(FIX / fixture)
    text = str(ei.value)
    for needle in needles:
        assert needle in text, f"{needle!r} not in error: {text}"


def _variant(tmp_path: Path, old: str, new: str, stem: str = "variant") -> Path:
    """good.toml with one line changed, written to tmp_path/<stem>.toml."""
    text = (FIX / "good.toml").read_text()
    assert old in text, old
    out = tmp_path / f"{stem}.toml"
    out.write_text(text.replace(old, new, 1))
    return out


@pytest.mark.parametrize(
    "old, new, needles",
    [
        ("cpu_hz = 25_000_000", 'cpu_hz = "fast"', ["cpu_hz must be an integer", "'fast'"]),
        ("cpu_hz = 25_000_000", "cpu_hz = -1", ["cpu_hz must be an integer >= 1", "-1"]),
        ("cpu_hz = 25_000_000", "cpu_hz = 0", ["cpu_hz must be an integer >= 1"]),
        ("cpu_hz = 25_000_000", "cpu_hz = 2.5e7", ["cpu_hz must be an integer", "25000000.0"]),
        ("base = 0x40004000", 'base = "x"', ["uart.base must be an integer", "'x'"]),
        ("baud = 115200", 'baud = "x"', ["uart.baud must be an integer", "'x'"]),
        ("baud = 115200", "baud = 0", ["uart.baud must be an integer >= 1"]),
        ('name = "fixture"', "name = 7", ["name must be a string", "7"]),
        ('name = "fixture"', 'name = "../evil"', ["name must be a plain name", "'../evil'"]),
        ('description = "test fixture"', "description = 1", ["description must be a string"]),
        ("emulated = false", 'emulated = "yes"', ["emulated must be true or false", "'yes'"]),
        ('core = "cortex-m4"', 'core = ["cortex-m4"]', ["core must be a string"]),
        ('fpu = "fpv4-sp-d16"', "fpu = 1", ["fpu must be a string"]),
        ('family = "cmsdk"', "family = 7", ["family must be a string"]),
        ('family = "cmsdk"', 'family = "../port/cmsdk"', ["family = '../port/cmsdk'", "no port"]),
        ('family = "cmsdk"', 'family = "cortexm"', ["family = 'cortexm'", "known families"]),
        ("ram   = { origin = 0x20000000, length = 0x00400000 }",
         'ram   = { origin = "0x20000000", length = 0x00400000 }', ["memory.ram.origin must be an integer"]),
        ("ram   = { origin = 0x20000000, length = 0x00400000 }",
         "ram   = { origin = 0x20000000, length = 0 }", ["memory.ram.length must be an integer >= 1"]),
        ("ram   = { origin = 0x20000000, length = 0x00400000 }",
         "ram   = { origin = 0xFFFFFF00, length = 0x00400000 }", ["memory.ram runs past the 32-bit address space"]),
        ("flash = { origin = 0x00000000, length = 0x00400000 }", "flash = 7", ["memory.flash needs integer"]),
        ("[memory]", 'flash = "pyocd"\n[memory]', ["flash must be a table"]),
        ("[uart]", '[flash]\nmethod = 1\n[uart]', ["flash.method must be a string"]),
        ("[memory]", 'defines = 3\n[memory]', ["defines must be a table"]),
        ("emulated = false", 'emulated = true\n[qemu]\nmachine = "mps2-an386"\nsystick_hz = "fast"',
         ["qemu.systick_hz must be an integer"]),
    ],
)
def test_malformed_board_field_names_file_field_and_expectation(tmp_path: Path, old: str, new: str,
                                                                needles: list[str]) -> None:
    src = _variant(tmp_path, old, new)
    with pytest.raises(ToolkitError) as ei:
        load_board_file(src)
    text = str(ei.value)
    for needle in [str(src), *needles]:
        assert needle in text, f"{needle!r} not in error: {text}"


def test_non_utf8_board_file_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "latin1.toml"
    src.write_bytes((FIX / "good.toml").read_bytes().replace(b'"test fixture"', b'"caf\xe9 board"'))
    with pytest.raises(ToolkitError, match="not UTF-8") as ei:
        load_board_file(src)
    assert str(src) in str(ei.value)


def test_board_name_is_a_plain_name_not_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--board is joined onto the boards folder: a path would load any TOML file."""
    boards = tmp_path / "boards"
    boards.mkdir()
    _variant(boards, 'name = "fixture"', 'name = "mine"', stem="mine")
    outside = _variant(tmp_path, 'name = "fixture"', 'name = "evil"', stem="evil")
    monkeypatch.setattr(paths, "BOARDS", boards)
    assert get_board("mine").source == boards / "mine.toml"  # plain names still load from the folder
    for bad in (str(outside.with_suffix("")), "../evil", "sub/mine", "mine.toml", "./mine", "", "mine "):
        with pytest.raises(ToolkitError, match="not a board name") as ei:
            get_board(bad)
        assert "letters, digits, - and _" in str(ei.value)


def test_does_not_fit_shows_bytes_for_a_tiny_ram(tmp_path: Path) -> None:
    from aiot.target.firmware import DoesNotFit

    tiny = load_board_file(_variant(tmp_path, "ram   = { origin = 0x20000000, length = 0x00400000 }",
                                    "ram   = { origin = 0x20000000, length = 16 }"))
    text = str(DoesNotFit(tiny, "RAM", 100))
    assert "than the board's 16 bytes" in text and "0 KB" not in text
    odd = load_board_file(_variant(tmp_path, "ram   = { origin = 0x20000000, length = 0x00400000 }",
                                   "ram   = { origin = 0x20000000, length = 1536 }"))
    assert "than the board's 1,536 bytes" in str(DoesNotFit(odd, "RAM", 8))
    assert "than the board's 4,096 KB" in str(DoesNotFit(tiny, "FLASH", 8))  # 0x400000: whole KB stay KB


@requires_arm
def test_build_for_a_16_byte_ram_board_says_16_bytes(tmp_path: Path) -> None:
    from aiot.target.firmware import DoesNotFit, build

    tiny = load_board_file(_variant(tmp_path, "ram   = { origin = 0x20000000, length = 0x00400000 }",
                                    "ram   = { origin = 0x20000000, length = 16 }"))
    with pytest.raises(DoesNotFit) as ei:
        build(tiny, tmp_path / "fw")
    assert ei.value.region == "RAM" and "the board's 16 bytes" in str(ei.value)


def test_good_fixture_loads() -> None:
    # The broken fixtures are this file with one change each; it must itself be valid.
    assert load_board_file(FIX / "good.toml").core == "cortex-m4"


def test_unknown_board_lists_known_ones() -> None:
    with pytest.raises(ToolkitError) as ei:
        get_board("no-such-board")
    for p in BOARD_FILES:
        assert p.stem in ei.value.hint


def test_misspelled_board_suggests_the_close_one() -> None:
    with pytest.raises(ToolkitError) as ei:
        get_board("microbt")
    assert "did you mean microbit" in ei.value.hint


def test_real_board_cannot_run_in_qemu() -> None:
    real = [b for b in list_boards() if not b.emulated]
    if not real:
        pytest.skip("no real-hardware board files yet")
    with pytest.raises(ToolkitError) as ei:
        real[0].qemu_args()
    assert "aiot flash" in ei.value.hint


# --- QEMU: boot, TX, RX, exit, SysTick rate on every emulated board -----------------------


def _read_until(sock: socket.socket, marker: bytes, deadline: float) -> bytes:
    buf = b""
    while marker not in buf:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(256)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
    return buf


@pytest.fixture(scope="module")
def boardcheck_builds(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from aiot.target.firmware import build

    out = tmp_path_factory.mktemp("boardcheck")
    return {name: build(get_board(name), out / name, app="boardcheck") for name in EMULATED}


@requires_arm
@requires_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("name", EMULATED)
def test_boots_echoes_and_exits_in_qemu(name: str, boardcheck_builds: dict) -> None:
    from aiot.target.qemu import Qemu

    board = get_board(name)
    elf = boardcheck_builds[name].elf  # built with -Wall -Wextra -Werror: warning-free
    with Qemu(board, elf, serial="tcp") as q:
        with socket.create_connection(("127.0.0.1", q.port), timeout=5) as s:
            deadline = time.monotonic() + 15
            head = _read_until(s, b"ready\n", deadline).decode(errors="replace")
            assert f"aiot boot {name}\n" in head, head
            # RX: the port must receive what the host sends (the protocol app depends on it).
            s.sendall(b"ping 123\n")
            tail = _read_until(s, b"echo ping 123\n", deadline).decode(errors="replace")
            assert "echo ping 123\n" in tail, tail
        code, _out, err = q.wait(15)
    assert code == 0, err

    # SysTick rate: the calibration loop ran exactly `instr` instructions, 1 ns each under
    # -icount shift=0, so QEMU's SysTick input clock is ticks / (instr * 1 ns).
    m = re.search(r"calib (\d+) (\d+) (\d+)", head)
    assert m, head
    instr, ticks, tick_hz = map(int, m.groups())
    measured_hz = ticks * 1e9 / instr
    # The two tick reads add a few instructions around the loop: allow 0.1 %.
    assert measured_hz == pytest.approx(board.systick_hz, rel=1e-3), (name, measured_hz)
    assert tick_hz == board.cpu_hz  # what the firmware reports as its tick rate


@requires_arm
@requires_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("name", EMULATED)
def test_protocol_app_answers_info_on_every_board(name: str, tmp_path: Path) -> None:
    """The product firmware (framed protocol app) round-trips INFO and EXIT on each board."""
    from aiot.target.firmware import build
    from aiot.device.hil import open_device

    board = get_board(name)
    res = build(board, tmp_path / "fw")
    with open_device(board=board, elf=res.elf, timeout=2) as dev:
        info = dev.info()
        assert info.board == name
        assert info.cpu_hz == board.cpu_hz
        assert dev.exit(0) == 0


# --- hostile board files (issue 22): a shared board file is data, never code ---------------------

_HOSTILE = [
    # (line of good.toml, its replacement, what the error names)
    ('description = "test fixture"', 'description = "pump\\nexecute_process(COMMAND touch /tmp/pwned)"',
     ["description", "control character"]),
    ('description = "test fixture"', 'description = "x\\r\\n[env:evil]"', ["description", "control character"]),
    ('description = "test fixture"', 'description = "' + "x" * 300 + '"', ["description", "at most 200"]),
    ('emulated = false', 'emulated = false\n[flash]\nplatformio_board = "nucleo_f446re\\nextra_scripts = pre:evil.py"',
     ["flash.platformio_board", "control character"]),
    ('emulated = false', 'emulated = false\n[flash]\nplatformio_platform = "ststm32 ; build_flags = -DX"',
     ["flash.platformio_platform", "letters, digits"]),
    ('emulated = false', 'emulated = false\n[flash]\npyocd_target = "stm32 --script=evil.py"',
     ["flash.pyocd_target", "letters, digits"]),
    ('emulated = false', 'emulated = false\n[flash]\nmsd_label = "../../../etc"', ["flash.msd_label"]),
    ('emulated = false', 'emulated = false\n[defines]\n"X\\n#include </etc/passwd>" = 1', ["defines", "control character"]),
    ('emulated = false', 'emulated = false\n[defines]\n"X Y" = 1', ["defines", "C identifier"]),
    ('emulated = false', 'emulated = false\n[defines]\nAIOT_X = "1\\n#include </etc/passwd>"',
     ["defines.AIOT_X", "control character"]),
    ('emulated = false', 'emulated = false\n[defines]\nAIOT_X = [1, 2]', ["defines.AIOT_X", "a string, integer"]),
    ('emulated = false', 'emulated = false\n[power]\nsource = "DS\\u001b[2J"', ["power.source", "control character"]),
    ('cpu_hz = 25_000_000', 'cpu_hz = 25_000_000_000_000', ["cpu_hz", "<="]),
    ('baud = 115200', 'baud = 1_000_000_000', ["uart.baud", "<="]),
    ('baud = 115200', 'baud = 115200\nusb_ids = ["0483:374B; rm -rf /"]', ["uart.usb_ids", "VID:PID"]),
]


@pytest.mark.parametrize("old, new, needles", _HOSTILE)
def test_a_hostile_board_file_is_refused_naming_the_key(tmp_path: Path, old: str, new: str, needles: list[str]) -> None:
    src = _variant(tmp_path, old, new)
    with pytest.raises(ToolkitError) as e:
        load_board_file(src)
    for needle in needles:
        assert needle in e.value.message, e.value.message
    assert str(src) in e.value.message and e.value.hint
    assert "\n" not in e.value.message and "\x1b" not in e.value.message  # the hostile text is not echoed raw


def test_a_qemu_machine_name_cannot_carry_options(tmp_path: Path) -> None:
    src = _variant(tmp_path, "emulated = false", 'emulated = true\n[qemu]\nmachine = "mps2-an386 -device evil"\n'
                                                 "systick_hz = 25000000")
    with pytest.raises(ToolkitError, match="qemu.machine"):
        load_board_file(src)


def test_every_shipped_board_passes_the_schema() -> None:
    assert len(list_boards()) == len(list(paths.BOARDS.glob("*.toml")))


@pytest.mark.parametrize("value, needles", [('"-O0"', ["app_opt", "'-O0'", "-Os"]), ("3", ["app_opt", "3"]),
                                            ('"-Os -fplugin=x.so"', ["app_opt", "-fplugin"])])
def test_app_opt_takes_only_an_optimisation_level(tmp_path: Path, value: str, needles: list[str]) -> None:
    src = _variant(tmp_path, "emulated = false", f"emulated = false\napp_opt = {value}")
    with pytest.raises(ToolkitError) as ei:
        load_board_file(src)
    for needle in [str(src), *needles]:
        assert needle in str(ei.value), str(ei.value)


def test_app_opt_compiles_the_app_not_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flash-tight board's app_opt (the protocol, the monitor, the port) leaves the engine at
    the build's own level: the inference keeps its speed."""
    from aiot.target import firmware, hostbuild

    b = get_board("nucleo-g071rb")
    assert b.app_opt == "-Os"
    assert get_board("mps2-an386").app_opt is None
    from aiot.codegen import generate

    model = tmp_path / "ae24"
    generate((paths.ROOT / "hil_tests" / "fixtures" / "ae24" / "model.tflite").read_bytes(), model, name="ae24")
    seen: dict[str, list[str]] = {}

    def record(gcc, src, cflags, incs, run, private):
        seen[Path(src).name] = list(cflags)
        return tmp_path / "not-an-object.o"

    monkeypatch.setattr(hostbuild, "cached_object", record)
    srcs, engine = firmware._sources(model, b)
    with pytest.raises(ToolkitError):  # the link of objects that do not exist
        firmware.build(b, tmp_path / "fw", model, jobs=1)
    assert engine and len(seen) == len(srcs)
    for src in srcs:
        want = "-O2" if src in engine else "-Os"
        assert want in seen[src.name] and ({"-O2", "-Os"} - {want}).isdisjoint(seen[src.name]), src


@requires_arm
@pytest.mark.parametrize("name", ["mps2-an386", "mps2-an505"])
def test_firmware_bin_holds_only_what_is_flashed(name: str, boardcheck_builds: dict) -> None:
    """firmware.bin is the flash image: an app without initialised data (an empty .data, whose
    address is RAM's) must not make objcopy pad the image up to RAM (it was 512-640 MB)."""
    board = get_board(name)
    fw = boardcheck_builds[name].bin
    assert 0 < fw.stat().st_size <= board.flash.length
    # the same image when `aiot flash` makes it from the ELF alone
    from aiot.target.flash import _image_next_to

    elf = boardcheck_builds[name].elf
    fw.unlink()
    made = _image_next_to(elf, "binary", ".bin", board)
    assert made == fw and 0 < made.stat().st_size <= board.flash.length
