"""On-target test suite: the same tests against QEMU boards or a real board on a serial port.

    pytest hil_tests                                   # every emulated board (CI)
    pytest hil_tests --board mps2-an386                # one QEMU board
    pytest hil_tests --board nucleo-f446re --transport serial --port /dev/ttyACM0 \\
                     --firmware build/hil/nucleo-f446re/firmware.elf

Without --firmware the firmware is built for each board from the HIL model
(hil_tests/fixtures/ae24, or --model PKG_OR_TFLITE). With --firmware, the ELF must have been
built from that same model (INFO's model hash is checked) for the parity tests to run.
"""

from __future__ import annotations

import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = HERE / "fixtures" / "ae24"
SOAK_BOARD = "mps2-an386"
_BUILT: dict[str, Path] = {}


def pytest_addoption(parser):
    g = parser.getgroup("aiot hardware-in-the-loop")

    def add(*args, **kw):
        try:
            g.addoption(*args, **kw)
        except ValueError:  # another conftest (e.g. tests/) already defines it
            pass

    add("--board", default=None, help="board to test (default: every emulated board in boards/)")
    add("--transport", default="qemu", choices=["qemu", "serial"], help="qemu or serial (default qemu)")
    add("--port", default=None, help="serial port or pyserial URL for --transport serial")
    add("--baud", type=int, default=None, help="baud rate for --transport serial (default: the board's)")
    add("--firmware", default=None, help="prebuilt firmware ELF (default: build it)")
    add("--model", default=None, help="model package dir or .tflite for the parity tests (default: hil_tests/fixtures/ae24)")
    add("--soak-frames", type=int, default=10_000, help="frames the soak test sends (default 10000)")
    add("--soak-all", action="store_true", help=f"run the soak test on every board, not only {SOAK_BOARD}")


def _board_names(config) -> list[str]:
    if config.getoption("--board"):
        return [config.getoption("--board")]
    if config.getoption("--transport") == "serial":
        raise pytest.UsageError("--transport serial needs --board (which board is on the port?)")
    from aiot import paths

    names = []
    for p in sorted(paths.BOARDS.glob("*.toml")):
        text = p.read_text()
        # Cheap pre-filter; the board fixture loads the file properly (and skips broken ports).
        if "emulated = true" in text or "[qemu]" in text:
            names.append(p.stem)
    return names


def pytest_generate_tests(metafunc):
    if "board" in metafunc.fixturenames:
        names = _board_names(metafunc.config)
        metafunc.parametrize("board", names, indirect=True, scope="session", ids=names)


@pytest.fixture(scope="session")
def transport_kind(pytestconfig) -> str:
    return pytestconfig.getoption("--transport")


@pytest.fixture(scope="session")
def board(request):
    from aiot.target.boards import get_board
    from aiot.errors import ToolkitError

    name = request.param
    try:
        b = get_board(name)
    except ToolkitError as e:
        # A board file whose chip-family port is not written yet: skip, saying so.
        pytest.skip(f"board {name}: {e.message}")
    if request.config.getoption("--transport") == "qemu":
        if not b.emulated or not b.qemu_machine:
            pytest.skip(f"board {name} is not emulated; use --transport serial --port ...")
        if not shutil.which("qemu-system-arm"):
            pytest.skip("qemu-system-arm not installed (make setup)")
    return b


@dataclass
class HilModel:
    tflite: Path
    x_int8: np.ndarray
    crc: int
    name: str


@pytest.fixture(scope="session")
def hil_model(pytestconfig) -> HilModel:
    src = Path(pytestconfig.getoption("--model") or DEFAULT_MODEL)
    tfl = src if src.suffix == ".tflite" else src / "model.tflite"
    vec = tfl.parent / "vectors.npz"
    if not tfl.is_file() or not vec.is_file():
        raise pytest.UsageError(f"--model {src}: needs model.tflite and vectors.npz (with x_int8)")
    x = np.load(vec)["x_int8"]
    data = tfl.read_bytes()
    return HilModel(tfl, x.reshape(len(x), -1), zlib.crc32(data) & 0xFFFFFFFF, src.stem if src.is_dir() else tfl.stem)


@pytest.fixture(scope="session")
def model_c(hil_model) -> Path:
    """Generated C for the HIL model (once per session)."""
    from aiot import paths
    from aiot.codegen import generate

    out = paths.build_dir() / "hil" / f"model-{hil_model.crc:08x}"
    generate(hil_model.tflite, out, name=hil_model.name)  # always: the generator may have changed
    return out


@pytest.fixture(scope="session")
def firmware(board, pytestconfig, model_c) -> Path:
    if pytestconfig.getoption("--firmware"):
        elf = Path(pytestconfig.getoption("--firmware"))
        if not elf.is_file():
            raise pytest.UsageError(f"--firmware {elf}: no such file")
        return elf
    if not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("arm-none-eabi-gcc not installed (make setup)")
    from aiot import paths
    from aiot.target.firmware import build

    # Session fixtures are set up again when pytest moves to the next module with the same
    # board: build each board once per run.
    if board.name not in _BUILT:
        _BUILT[board.name] = build(board, paths.build_dir() / "hil" / board.name, model_c).elf
    return _BUILT[board.name]


def _open(board, firmware, pytestconfig, timeout=2.0):
    from aiot.device.hil import open_device

    return open_device(board=board, elf=firmware, transport=pytestconfig.getoption("--transport"),
                       port=pytestconfig.getoption("--port"), baud=pytestconfig.getoption("--baud"), timeout=timeout)


@pytest.fixture(scope="session")
def device(board, firmware, pytestconfig):
    """One device session per board, shared by the tests (a real board cannot be rebooted
    per test either). Tests leave it answering; test_exit uses its own instance."""
    with _open(board, firmware, pytestconfig) as dev:
        dev.info()
        yield dev


@pytest.fixture
def fresh_device(board, firmware, pytestconfig):
    """A new QEMU instance for tests that end the firmware; skipped on hardware."""
    if pytestconfig.getoption("--transport") != "qemu":
        pytest.skip("needs a fresh device per test: QEMU only")
    with _open(board, firmware, pytestconfig) as dev:
        yield dev


@pytest.fixture
def require_model(device, hil_model):
    info = device.info()
    if not info.has_model:
        pytest.skip("firmware built without a model")
    if info.model_hash != hil_model.crc:
        pytest.skip(f"firmware model hash {info.model_hash:08x} != {hil_model.tflite} ({hil_model.crc:08x}); "
                    "pass the matching --model")
    return info


@pytest.fixture(scope="session", autouse=True)
def _worker_build_dir():
    """Parallel workers build into folders of their own (aiot.testing.worker_build_dir)."""
    from aiot.testing import worker_build_dir

    with worker_build_dir():
        yield
