"""Flash layouts in board files ([memory] flash_sectors, [update], [mcuboot]): every real
board with a flash driver has both, placed in sectors that exist on its part, and the board
loader refuses a layout that cannot work with what is wrong, where, and what to do."""

from __future__ import annotations

import pytest

from aiot import paths
from aiot.errors import ToolkitError
from aiot.lifecycle.firmware import layout_defines, region_sectors, update_board
from aiot.target.boards import get_board, load_board_file
from aiot.target.layout import update_areas
from aiot.testing import board_variant

DRIVER_BOARDS = ["nucleo-f446re", "nucleo-f767zi", "nucleo-g071rb", "nrf52840-dk"]


_variant = board_variant


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


@pytest.mark.parametrize("name", DRIVER_BOARDS)
def test_every_board_with_a_flash_driver_has_both_layouts(name):
    b = get_board(name)
    assert (paths.FIRMWARE / "port" / b.family / "flash.c").is_file()
    assert b.update is not None and b.update.records is not None and b.mcuboot is not None
    assert sum(s.size for s in b.sectors) == b.flash.length
    # the firmware that takes updates links around the areas, its vector table at the boot address
    linked = update_board(b)
    code = (linked.flash.origin, linked.flash.length)
    vectors = (linked.vectors.origin, linked.vectors.length) if linked.vectors else None
    assert (vectors or code)[0] == b.flash.origin
    for name_, area in update_areas(b.update, b.sectors).items():
        assert not _overlap(area, code) and not (vectors and _overlap(area, vectors)), name_


# Sector numbers the flash controller is given (FLASH_CR.SNB / PNB, nRF52 page index),
# read off each part's reference manual, against the table aiot build compiles in.
@pytest.mark.parametrize("name, expect", [
    # RM0390 table 4: sectors 1, 2 are 16 KB at 0x08004000/0x08008000; 6, 7 are 128 KB at 0x08040000/0x08060000
    ("nucleo-f446re", [(0x0, 0x4000, 1), (0x4000, 0x4000, 2), (0x3C000, 0x20000, 6), (0x5C000, 0x20000, 7)]),
    # RM0410 single bank: sectors 2, 3 are 32 KB at 0x08010000/0x08018000; 10, 11 are 256 KB at 0x08180000/0x081C0000
    ("nucleo-f767zi", [(0x0, 0x8000, 2), (0x8000, 0x8000, 3), (0x170000, 0x40000, 10), (0x1B0000, 0x40000, 11)]),
    # RM0444: 2 KB pages; 0x0801C000 is page 56 ... 0x0801F800 page 63
    ("nucleo-g071rb", [(i * 0x800, 0x800, 56 + i) for i in range(8)]),
    # nRF52840: 4 KB pages; 0xE0000 is page 224, the region's 26 pages end at 0xFA000
    ("nrf52840-dk", [(i * 0x1000, 0x1000, 224 + i) for i in range(26)]),
])
def test_the_sector_table_names_the_parts_own_sector_numbers(name, expect):
    assert region_sectors(get_board(name)) == expect
    defs = dict(d.split("=", 1) for d in layout_defines(get_board(name)))
    assert defs["AIOT_UPDATE_SECTORS"].count("{") == len(expect)


def test_f446_update_image_keeps_its_vectors_in_sector_0_and_code_in_sectors_3_to_5():
    b = update_board(get_board("nucleo-f446re"))
    assert (b.vectors.origin, b.vectors.length) == (0x08000000, 0x4000)
    assert (b.flash.origin, b.flash.length) == (0x0800C000, 0x34000)
    ld = b.linker_script()
    assert "BOOT_FLASH (rx) : ORIGIN = 0x08000000, LENGTH = 0x00004000" in ld
    assert 'REGION_ALIAS("VECTORS", BOOT_FLASH)' in ld
    # an ordinary build keeps one region
    assert 'REGION_ALIAS("VECTORS", FLASH)' in get_board("nucleo-f446re").linker_script()


REFUSED = [
    # what is wrong, in the F446's file
    ("nucleo-f446re", "records = [0x08004000, 0x08008000]", "records = [0x08004100, 0x08008000]",
     ["update.records[0]", "0x08004100", "inside sector 1", "sector start"]),
    ("nucleo-f446re", "slot_size = 0x20000\n\n#", "slot_size = 0x18000\n\n#",
     ["update.slots[0]", "ends inside a sector", "whole sectors"]),
    ("nucleo-f446re", "slots = [0x08040000, 0x08060000]", "slots = [0x08040000, 0x08080000]",
     ["update.slots[1]", "not inside the flash"]),
    ("nucleo-f446re", "records = [0x08004000, 0x08008000]", "records = [0x08004000, 0x08004000]",
     ["update", "record 0", "overlaps record 1", "own sectors"]),
    ("nucleo-f446re", "records = [0x08004000, 0x08008000]", "records = [0x08004000, 0x08060000]",
     ["update", "record 1", "overlaps slot 1"]),
    ("nrf52840-dk", "flash_sectors = [[256, 0x1000]]", "flash_sectors = [[226, 0x1000], [4, 0x3000], [18, 0x1000]]",
     ["update.slots", "different sizes", "one size"]),
    ("nucleo-f446re", "records = [0x08004000, 0x08008000]", "records = [0x08000000, 0x08008000]",
     ["record 0", "sector 0", "vector table"]),
    ("nucleo-f446re", "flash_sectors = [[4, 0x4000], [1, 0x10000], [3, 0x20000]]",
     "flash_sectors = [[4, 0x4000], [1, 0x10000], [2, 0x20000]]",
     ["memory.flash_sectors", "add up to 0x60000", "0x80000", "whole flash"]),
    ("nucleo-f446re", "flash_sectors = [[4, 0x4000], [1, 0x10000], [3, 0x20000]]", "",
     ["memory.flash_sectors", "missing", "reference manual"]),
    ("nrf52840-dk", "records = [0x000E0000, 0x000E1000]", "region_base = 0x000E0000\nfirst_sector = 0",
     ["update.region_base", "records = [a, b]"]),
    ("nucleo-g071rb", "records = [0x0801C000, 0x0801C800]\nslots = [0x0801D000, 0x0801E800]\nslot_size = 0x1800",
     "records = [0x08001000, 0x08001800]\nslots = [0x08002000, 0x08011000]\nslot_size = 0xF000",
     ["update", "firmware too little flash", "16 KB of consecutive sectors"]),
    # [mcuboot]
    ("nucleo-f446re", "slot0 = 0x08020000", "slot0 = 0x08021000",
     ["mcuboot.slot0", "inside sector 5", "sector start"]),
    ("nucleo-f446re", "scratch = 0x08060000", "scratch = 0x08010000",
     ["mcuboot.scratch", "64 KB", "smaller than the largest slot sector (128 KB)"]),
    ("nucleo-f446re", "slot1 = 0x08040000", "slot1 = 0x08020000",
     ["mcuboot", "slot0", "overlaps slot1"]),
    ("nucleo-f446re", "boot_size = 0x10000", "boot_size = 0x30000",
     ["mcuboot.boot_size", "before the first slot"]),
    ("nucleo-f446re", "align = 4", "align = 3", ["mcuboot.align", "1, 2, 4, 8, 16, 32"]),
    ("nucleo-g071rb", "slot_size = 0xB800", "slot_size = 0x1800", ["mcuboot.slot_size", "leaves", "more sectors"]),
    ("nucleo-f767zi", "slot1 = 0x08080000", "slot1 = 0x08020000",
     ["mcuboot.slot1", "ends inside a sector"]),
    ("nrf52840-dk", 'swap = "move"', 'swap = "scratch"', ["mcuboot.scratch", "missing"]),
    # swap-move over a slot of 8 KB and 4 KB sectors (a part whose pages are not all one size)
    ("nrf52840-dk", "flash_sectors = [[256, 0x1000]]", "flash_sectors = [[12, 0x1000], [2, 0x2000], [240, 0x1000]]",
     ["mcuboot.swap", "sectors of one size", "scratch"]),
]


@pytest.mark.parametrize("board, old, new, needles", REFUSED, ids=[f"{r[0]}:{r[3][0]}:{i}" for i, r in enumerate(REFUSED)])
def test_a_bad_layout_is_refused_with_what_where_and_what_to_do(tmp_path, board, old, new, needles):
    path = _variant(tmp_path, board, old, new)
    with pytest.raises(ToolkitError) as e:
        load_board_file(path)
    text = str(e.value)
    assert str(path) in e.value.message
    assert e.value.hint and "aiot boards" in e.value.hint
    for n in needles:
        assert n in text, (n, text)


def test_signed_image_with_updates_is_refused_where_the_areas_meet_mcuboots():
    with pytest.raises(ToolkitError) as e:
        update_board(get_board("nucleo-f446re"), signed=True)
    assert "record 0" in e.value.message and "bootloader" in e.value.message
    assert "aiot build --board nucleo-f446re --update-key" in e.value.hint
    # where they do not meet, the image goes into the primary slot
    for name in ("nucleo-f767zi", "nrf52840-dk"):
        b = get_board(name)
        linked = update_board(b, signed=True)
        assert linked.flash.origin == b.mcuboot.slot0 + b.mcuboot.header_size


def test_the_shipped_board_files_all_load():
    for p in sorted(paths.BOARDS.glob("*.toml")):
        load_board_file(p)


def test_aiot_boards_json_shows_the_layouts(tmp_path):
    import json

    from click.testing import CliRunner

    from aiot.cli import main

    r = CliRunner().invoke(main, ["boards", "--json", str(tmp_path / "b.json")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    by_name = {b["name"]: b for b in json.loads((tmp_path / "b.json").read_text())}
    f446 = by_name["nucleo-f446re"]
    assert f446["update"]["records"] == [0x08004000, 0x08008000] and f446["update"]["slot_size"] == 0x20000
    assert f446["mcuboot"]["scratch"] == 0x08060000 and f446["mcuboot"]["image_room"] == 0x20000 - 0x200 - 0x1000
    assert by_name["microbit"]["update"] is None and by_name["microbit"]["mcuboot"] is None
