"""`aiot build --signed`: firmware linked into the board's MCUboot primary slot (after the
image header) and signed with imgtool; `imgtool verify` accepts it and rejects a tampered
copy. `--update-key` builds the model-update service in and records the model ABI."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner

pytest.importorskip("imgtool")
pytestmark = [pytest.mark.slow,  # each test builds a firmware (~10 s)
              pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")]

from aiot.cli import main  # noqa: E402
from aiot.lifecycle import package as P  # noqa: E402
from aiot.target.boards import get_board, list_boards  # noqa: E402
from aiot.target.layout import TRAILER_ROOM, update_areas  # noqa: E402

MCUBOOT_BOARDS = [b.name for b in list_boards() if b.mcuboot is not None]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two Ed25519 keys for the whole module (each imgtool keygen is a process of its own,
    most of a second): ``boot`` signs and is trusted, ``other`` is any other key."""
    d = tmp_path_factory.mktemp("keys")
    return {"boot": P.generate_key(d / "boot.pem"), "other": P.generate_key(d / "other.pem")}


def _vectors(elf) -> int:
    nm = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    return next(int(line.split()[0], 16) for line in nm.splitlines() if line.endswith(" aiot_vectors"))


def test_every_real_board_with_a_flash_driver_signs():
    assert {"nucleo-f446re", "nucleo-f767zi", "nucleo-g071rb", "nrf52840-dk"} <= set(MCUBOOT_BOARDS)


@pytest.mark.parametrize("board", MCUBOOT_BOARDS)
def test_signed_image_is_linked_in_the_slot_and_verifies(board, tmp_path, keys):
    key = keys["boot"]
    out = tmp_path / "fw"
    r = CliRunner().invoke(main, ["build", "--board", board, "--out", str(out), "--signed", str(key),
                                  "--version", "1.2.3"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lay = get_board(board).mcuboot
    assert _vectors(out / "firmware.elf") == lay.slot0 + lay.header_size  # where MCUboot jumps
    signed = out / "firmware.signed.bin"
    ok, text = P.imgtool_verify(signed, key)
    assert ok and "1.2.3" in text, text
    assert signed.read_bytes()[lay.header_size:].startswith((out / "firmware.bin").read_bytes())
    # the image leaves the slot's trailer (and, with swap-move, the sector MCUboot moves through)
    assert lay.header_size + (out / "firmware.bin").stat().st_size <= lay.slot_size - TRAILER_ROOM - lay.move_sector
    tampered = tmp_path / "tampered.bin"
    data = bytearray(signed.read_bytes())
    data[lay.header_size + 64] ^= 1
    tampered.write_bytes(bytes(data))
    assert not P.imgtool_verify(tampered, key)[0]
    assert not P.imgtool_verify(signed, keys["other"])[0]


def test_signed_firmware_that_takes_model_updates(tmp_path, keys):
    """nucleo-f767zi keeps its [update] areas outside MCUboot's partitions: one image is both
    (signed, in slot0, verified by imgtool) and takes model updates; on the F446 the two
    layouts share sectors and the build is refused before anything is compiled."""
    key = keys["boot"]
    out = tmp_path / "fw"
    r = CliRunner().invoke(main, ["build", "--board", "nucleo-f767zi", "--out", str(out), "--signed", str(key),
                                  "--update-key", str(key)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    b = get_board("nucleo-f767zi")
    assert _vectors(out / "firmware.elf") == b.mcuboot.slot0 + b.mcuboot.header_size
    assert P.imgtool_verify(out / "firmware.signed.bin", key)[0]
    end = b.mcuboot.slot0 + b.mcuboot.header_size + (out / "firmware.bin").stat().st_size
    assert all(end <= a for a, _ in update_areas(b.update, b.sectors).values() if a > b.mcuboot.slot0)
    r = CliRunner().invoke(main, ["build", "--board", "nucleo-f446re", "--out", str(tmp_path / "f446"), "--signed",
                                  str(key), "--update-key", str(key)])
    assert r.exit_code == 2 and "lies in MCUboot's bootloader" in r.output and "--update-key KEY" in r.output


def test_update_build_records_the_model_abi(tmp_path, keys):
    key = keys["boot"]
    out = tmp_path / "fw"
    r = CliRunner().invoke(main, ["build", "--board", "nrf52840-dk", "--out", str(out), "--update-key", str(key)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    built = json.loads((out / "build.json").read_text())
    assert built["model_abi"] == P.MODEL_ABI and built["plan_arena"] == P.PLAN_ARENA
    assert built["device_id"].startswith("uid:")  # INFO reports the nRF52840's FICR DEVICEID


def test_plan_arena_is_the_firmware_default():
    """aiot release checks plans against P.PLAN_ARENA: the update service's own default."""
    import re

    from aiot.paths import FIRMWARE

    src = (FIRMWARE / "src" / "update" / "service.c").read_text()
    assert int(re.search(r"#define AIOT_UPDATE_PLAN_ARENA (\d+)u", src).group(1)) == P.PLAN_ARENA


def test_plan_layers_is_the_firmware_default():
    """aiot release checks plans against P.PLAN_LAYERS: the plan walker's own default."""
    import re

    from aiot.paths import FIRMWARE

    src = (FIRMWARE / "include" / "aiot" / "update.h").read_text()
    assert int(re.search(r"#define AIOT_PLAN_MAX_LAYERS (\d+)u", src).group(1)) == P.PLAN_LAYERS


def test_update_build_sizes_the_plan_arena(tmp_path, keys):
    """aiot build --plan-arena/--plan-layers/--plan-ops: the arena in the image has that
    size, a dense-only build links no conv kernel, and build.json records all three for
    aiot release --firmware."""
    key = keys["boot"]
    out = tmp_path / "fw"
    r = CliRunner().invoke(main, ["build", "--board", "nrf52840-dk", "--out", str(out), "--update-key", str(key),
                                  "--plan-arena", "16001", "--plan-layers", "24", "--plan-ops", "dense"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    built = json.loads((out / "build.json").read_text())
    assert built["plan_arena"] == 16004 and built["plan_layers"] == 24 and built["plan_ops"] == "dense"
    syms = subprocess.run(["arm-none-eabi-nm", "-S", str(out / "firmware.elf")], capture_output=True, text=True,
                          check=True).stdout
    sizes = {line.split()[-1]: int(line.split()[1], 16) for line in syms.splitlines() if len(line.split()) == 4}
    assert sizes["plan_arena"] == 16004
    assert "aiot_fully_connected_s8_wide" in sizes and "aiot_conv2d_s8_wide" not in sizes  # dense: no conv kernels
    refused = CliRunner().invoke(main, ["build", "--board", "nrf52840-dk", "--out", str(tmp_path / "x"),
                                        "--plan-arena", "4096"])
    assert refused.exit_code == 2 and "need --update-key" in refused.output


def test_update_build_without_a_uid_register_gets_its_own_id(tmp_path, keys):
    """mps2-an386 has no unique id register: each update image gets a random id, written
    into the image (INFO reports it) and recorded in build.json."""
    import re

    key = keys["boot"]
    out = tmp_path / "fw"
    r = CliRunner().invoke(main, ["build", "--board", "mps2-an386", "--out", str(out), "--update-key", str(key)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    device_id = json.loads((out / "build.json").read_text())["device_id"]
    assert re.fullmatch(r"build-[0-9a-f]{16}", device_id)
    assert device_id.encode() in (out / "firmware.bin").read_bytes()


def test_board_without_layout_is_refused_with_a_hint(tmp_path, keys):
    key = keys["boot"]
    r = CliRunner().invoke(main, ["build", "--board", "microbit", "--out", str(tmp_path / "fw"), "--signed", str(key)])
    assert r.exit_code == 2 and "no [mcuboot] table" in r.output and "hint" in r.output
