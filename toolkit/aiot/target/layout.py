"""Flash layouts of a board file: the part's erase sectors, the model-update region
([update]) and the MCUboot partitions ([mcuboot]), checked when the board file loads.

Board files are data written from a reference manual; a layout that cannot work on the
part (an area outside flash, not on erase-unit boundaries, overlapping another area or
the firmware's boot vectors) is refused here with the file, the key, what is wrong and
what to do, never discovered on a device.

    [memory]
    flash_sectors = [[4, 0x4000], [1, 0x10000], [3, 0x20000]]   # count x size, in address order

    [update]                               # real boards: absolute addresses of whole sectors
    records = [0x08004000, 0x08008000]     # the two record copies, one sector each
    slots = [0x08040000, 0x08060000]       # the two model slots, slot_size each
    slot_size = 0x20000

    [mcuboot]
    slot0 = 0x08020000
    slot1 = 0x08040000
    slot_size = 0x20000
    scratch = 0x08060000                   # swap = "scratch" (default when given) or "move"
    header_size = 0x200
    align = 4

Emulated boards keep their update region in a host file ([update] sector_size, slot_size);
their flash has no erase sectors to check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiot.errors import ToolkitError

#: MCUboot image trailer room left at the end of a slot (swap status + magic; imgtool
#: refuses an image that does not leave it). 0x1000 covers the default max-sectors 128.
TRAILER_ROOM = 0x1000
#: Smallest flash range the firmware image may be given (after the reserved areas).
MIN_IMAGE = 0x4000
_SWAPS = ("scratch", "move")


@dataclass(frozen=True)
class Sector:
    number: int   # as the flash controller numbers it (STM32 SNB/PNB, nRF52 page)
    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class UpdateLayout:
    """Two record copies and two slots. ``records``/``slots`` are absolute addresses on a
    real board, None on an emulated one (the region is a host file: records at 0 and
    sector_size, slots after them)."""

    sector_size: int                      # erase unit of the slots (the driver's step)
    slot_size: int
    records: tuple[int, int] | None = None
    slots: tuple[int, int] | None = None

    @property
    def base(self) -> int:
        return min(*self.records, *self.slots) if self.records and self.slots else 0

    def offsets(self) -> tuple[int, int, int, int]:
        """record 0, record 1, slot 0, slot 1 as offsets from ``base`` (what the C takes)."""
        if self.records is None or self.slots is None:
            s = self.sector_size
            return 0, s, 2 * s, 2 * s + self.slot_size
        return tuple(a - self.base for a in (*self.records, *self.slots))  # type: ignore[return-value]


@dataclass(frozen=True)
class McubootLayout:
    slot0: int
    slot1: int
    slot_size: int
    header_size: int
    align: int
    swap: str                  # "scratch" or "move"
    boot_size: int             # MCUboot's own partition, from the start of flash
    scratch: int | None = None
    scratch_size: int = 0
    move_sector: int = 0       # swap-move: the sector size the primary slot must keep free

    @property
    def image_room(self) -> int:
        """Bytes the firmware may take in the primary slot (after the header)."""
        return self.slot_size - self.header_size - TRAILER_ROOM - self.move_sector


def _err(src: Path, key: str, msg: str, hint: str) -> ToolkitError:
    return ToolkitError(f"board file {src}: {key}: {msg}",
                        hint=f"{hint}; after editing, `aiot boards` loads every board file and shows any error")


def _int(table: dict[str, Any], key: str, src: Path, where: str, *, default: Any = None, minimum: int = 0) -> int:
    if key not in table:
        if default is not None:
            return default
        raise _err(src, f"{where}.{key}", "missing", "see docs/lifecycle.md (Slot layouts) for the keys")
    v = table[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum or v >= 1 << 32:
        raise _err(src, f"{where}.{key}", f"must be an integer >= {minimum} below 2^32, got {v!r}",
                   "write it as a hexadecimal address or size, e.g. 0x08040000")
    return v


def _pair(table: dict[str, Any], key: str, src: Path, where: str) -> tuple[int, int]:
    v = table.get(key)
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                         and 0 <= x < 1 << 32 for x in v)):
        raise _err(src, f"{where}.{key}", f"must be a list of two addresses, got {v!r}",
                   f"e.g. {key} = [0x08004000, 0x08008000]")
    return v[0], v[1]


def sectors(memory: dict[str, Any], flash_origin: int, flash_length: int, src: Path) -> tuple[Sector, ...]:
    """``[memory] flash_sectors``: runs of [count, size] in address order, covering flash exactly."""
    runs = memory.get("flash_sectors")
    if runs is None:
        return ()
    hint = "list the part's erase sectors from its reference manual, e.g. [[4, 0x4000], [1, 0x10000], [3, 0x20000]]"
    if not isinstance(runs, list) or not runs:
        raise _err(src, "memory.flash_sectors", f"must be a list of [count, size] pairs, got {runs!r}", hint)
    out: list[Sector] = []
    addr = flash_origin
    for i, run in enumerate(runs):
        if not (isinstance(run, list) and len(run) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                                 and x > 0 for x in run)):
            raise _err(src, f"memory.flash_sectors[{i}]", f"must be [count, size] with positive integers, got {run!r}",
                       hint)
        count, size = run
        if size % 4:
            raise _err(src, f"memory.flash_sectors[{i}]", f"sector size {size:#x} is not a multiple of 4 bytes", hint)
        for _ in range(count):
            out.append(Sector(len(out), addr, size))
            addr += size
            if addr - flash_origin > flash_length:
                break
    total = addr - flash_origin
    if total != flash_length:
        raise _err(src, "memory.flash_sectors", f"the sectors add up to {total:#x} bytes, the flash is "
                   f"{flash_length:#x} (memory.flash.length)", "the sector map must cover the whole flash, no more")
    return tuple(out)


def _sector_at(secs: tuple[Sector, ...], start: int, src: Path, key: str) -> Sector:
    """The sector that begins at ``start``; refused when ``start`` is not a sector boundary."""
    for s in secs:
        if s.start == start:
            return s
    inside = next((s for s in secs if s.start < start < s.end), None)
    where = ", ".join(f"{s.start:#010x}" for s in secs[:12]) + (" ..." if len(secs) > 12 else "")
    what = (f"{start:#010x} is inside sector {inside.number} ({inside.start:#010x}, {inside.size // 1024} KB): "
            "not on an erase-unit boundary") if inside else f"{start:#010x} is outside the flash"
    raise _err(src, key, what, f"start it at a sector start (this part's: {where})")


def _cover(secs: tuple[Sector, ...], start: int, size: int, src: Path, key: str) -> list[Sector]:
    """The sectors [start, start + size) is made of; refused unless it begins and ends on sector boundaries."""
    _sector_at(secs, start, src, key)
    if start + size not in {s.end for s in secs}:
        raise _err(src, key, f"{start:#010x} + {size:#x} ends inside a sector, not on an erase-unit boundary",
                   "make the size cover whole sectors (memory.flash_sectors)")
    return [s for s in secs if start <= s.start < start + size]


def _overlaps(areas: dict[str, tuple[int, int]], src: Path, where: str) -> None:
    names = list(areas)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (s0, n0), (s1, n1) = areas[a], areas[b]
            if s0 < s1 + n1 and s1 < s0 + n0:
                raise _err(src, where, f"{a} ({s0:#010x}+{n0:#x}) overlaps {b} ({s1:#010x}+{n1:#x})",
                           "give every area its own sectors")


def _inside(start: int, size: int, origin: int, length: int, src: Path, key: str) -> None:
    if not (origin <= start and start + size <= origin + length):
        raise _err(src, key, f"{start:#010x}+{size:#x} is not inside the flash ({origin:#010x}+{length:#x})",
                   "use addresses inside [memory] flash")


def update(raw: dict[str, Any], emulated: bool, flash_origin: int, flash_length: int,
           secs: tuple[Sector, ...], src: Path) -> UpdateLayout | None:
    t = raw.get("update")
    if t is None:
        return None
    if not isinstance(t, dict):
        raise _err(src, "update", "must be a table", "see docs/lifecycle.md (Slot layouts)")
    if emulated and "records" not in t:  # a host-file region: no flash addresses to place
        sector = _int(t, "sector_size", src, "update", minimum=1)
        slot = _int(t, "slot_size", src, "update", minimum=1)
        if slot % sector:
            raise _err(src, "update.slot_size", f"{slot:#x} is not a multiple of sector_size {sector:#x}",
                       "a slot is erased sector by sector")
        return UpdateLayout(sector, slot)
    for old in ("region_base", "first_sector", "sector_size"):
        if old in t:
            raise _err(src, f"update.{old}", "is not a key of a real board's [update] (the addresses say where, "
                       "memory.flash_sectors says the erase units)", "write records = [a, b], slots = [c, d], slot_size")
    if not secs:
        raise _err(src, "memory.flash_sectors", "missing: a real board's [update] is checked against the part's "
                   "erase sectors", "add the sector map of the part's reference manual to [memory]")
    records, slots = _pair(t, "records", src, "update"), _pair(t, "slots", src, "update")
    slot_size = _int(t, "slot_size", src, "update", minimum=1)
    areas: dict[str, tuple[int, int]] = {}
    for i, r in enumerate(records):
        _inside(r, 4, flash_origin, flash_length, src, f"update.records[{i}]")
        areas[f"record {i}"] = (r, _sector_at(secs, r, src, f"update.records[{i}]").size)
    units = set()
    for i, s in enumerate(slots):
        _inside(s, slot_size, flash_origin, flash_length, src, f"update.slots[{i}]")
        units |= {c.size for c in _cover(secs, s, slot_size, src, f"update.slots[{i}]")}
        areas[f"slot {i}"] = (s, slot_size)
    if len(units) != 1:
        raise _err(src, "update.slots", f"the slots span sectors of different sizes ({', '.join(hex(u) for u in sorted(units))})",
                   "put both slots in sectors of one size (the driver erases a slot in steps of one sector)")
    _overlaps(areas, src, "update")
    boot = next(s for s in secs if s.start == flash_origin)
    for name, (a, n) in areas.items():
        if a < boot.end and flash_origin < a + n:
            raise _err(src, "update", f"{name} ({a:#010x}) is in sector 0, which holds the firmware's vector table "
                       "(the part boots from it)", "move it to another sector")
    try:
        image_regions(flash_origin, flash_length, list(areas.values()))
    except ToolkitError as e:
        raise _err(src, "update", f"leaves the firmware too little flash: {e.message}", "move the areas so "
                   f"at least {MIN_IMAGE // 1024} KB of consecutive sectors stay free") from None
    return UpdateLayout(units.pop(), slot_size, records, slots)


def mcuboot(raw: dict[str, Any], flash_origin: int, flash_length: int, secs: tuple[Sector, ...],
            src: Path) -> McubootLayout | None:
    t = raw.get("mcuboot")
    if t is None:
        return None
    if not isinstance(t, dict):
        raise _err(src, "mcuboot", "must be a table", "see docs/lifecycle.md (Slot layouts)")
    slot0, slot1 = _int(t, "slot0", src, "mcuboot"), _int(t, "slot1", src, "mcuboot")
    size = _int(t, "slot_size", src, "mcuboot", minimum=1)
    header = _int(t, "header_size", src, "mcuboot", minimum=0x20)
    align = _int(t, "align", src, "mcuboot", default=4, minimum=1)
    if align not in (1, 2, 4, 8, 16, 32):
        raise _err(src, "mcuboot.align", f"{align} is not one imgtool takes", "one of 1, 2, 4, 8, 16, 32: the "
                   "part's flash write unit")
    scratch = _int(t, "scratch", src, "mcuboot") if "scratch" in t else None
    swap = t.get("swap", "scratch" if scratch is not None else "move")
    if swap not in _SWAPS:
        raise _err(src, "mcuboot.swap", f"unknown mode {swap!r}", f"one of {', '.join(_SWAPS)}")
    if swap == "scratch" and scratch is None:
        raise _err(src, "mcuboot.scratch", "missing (swap = \"scratch\")", "give the scratch area's address, "
                   "or use swap = \"move\" when the slots' sectors are all one size")
    areas = {"slot0": (slot0, size), "slot1": (slot1, size)}
    for name, (a, n) in areas.items():
        _inside(a, n, flash_origin, flash_length, src, f"mcuboot.{name}")
    first = min(slot0, slot1, *([scratch] if scratch is not None else []))
    boot_size = _int(t, "boot_size", src, "mcuboot", default=first - flash_origin, minimum=1)
    if boot_size <= 0 or flash_origin + boot_size > first:
        raise _err(src, "mcuboot.boot_size", f"MCUboot's partition ({flash_origin:#010x}+{boot_size:#x}) must lie "
                   f"before the first slot or scratch area ({first:#010x})",
                   "MCUboot runs from the start of flash: put the slots after it")
    areas["bootloader"] = (flash_origin, boot_size)
    scratch_size = move = 0
    if secs:
        units = {name: [s.size for s in _cover(secs, a, n, src, f"mcuboot.{name}")]
                 for name, (a, n) in areas.items() if name != "bootloader"}
        _cover(secs, flash_origin, boot_size, src, "mcuboot.boot_size")
        if swap == "scratch":
            scratch_size = _sector_at(secs, scratch, src, "mcuboot.scratch").size
            biggest = max(max(u) for u in units.values())
            if scratch_size < biggest:
                raise _err(src, "mcuboot.scratch", f"its sector ({scratch_size // 1024} KB) is smaller than the "
                           f"largest slot sector ({biggest // 1024} KB)", "MCUboot swaps through scratch one sector at "
                           "a time: the scratch sector must be at least as large")
            areas["scratch"] = (scratch, scratch_size)
        else:
            if len({*units["slot0"], *units["slot1"]}) != 1:
                raise _err(src, "mcuboot.swap", "swap-move needs the two slots in sectors of one size",
                           "use swap = \"scratch\" with a scratch sector")
            move = units["slot0"][0]
    elif swap == "scratch":
        scratch_size = _int(t, "scratch_size", src, "mcuboot", minimum=1)
        _inside(scratch, scratch_size, flash_origin, flash_length, src, "mcuboot.scratch")
        areas["scratch"] = (scratch, scratch_size)
    _overlaps(areas, src, "mcuboot")
    lay = McubootLayout(slot0, slot1, size, header, align, swap, boot_size, scratch, scratch_size, move)
    if lay.image_room < MIN_IMAGE:
        raise _err(src, "mcuboot.slot_size", f"{size:#x} leaves {max(lay.image_room, 0)} bytes for the firmware",
                   "give the slots more sectors")
    return lay


def mcuboot_areas(m: McubootLayout, flash_origin: int) -> dict[str, tuple[int, int]]:
    """Absolute (start, bytes) of MCUboot's partitions."""
    areas = {"bootloader": (flash_origin, m.boot_size), "slot0": (m.slot0, m.slot_size), "slot1": (m.slot1, m.slot_size)}
    if m.scratch is not None:
        areas["scratch"] = (m.scratch, m.scratch_size)
    return areas


def update_areas(u: UpdateLayout, secs: tuple[Sector, ...]) -> dict[str, tuple[int, int]]:
    """Absolute (start, bytes) of each area of a real board's update region."""
    assert u.records is not None and u.slots is not None
    size = {s.start: s.size for s in secs}
    return {"record 0": (u.records[0], size[u.records[0]]), "record 1": (u.records[1], size[u.records[1]]),
            "slot 0": (u.slots[0], u.slot_size), "slot 1": (u.slots[1], u.slot_size)}


def free_ranges(origin: int, length: int, taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[origin, origin + length) minus ``taken``, as (start, bytes) in address order."""
    out, at = [], origin
    for s, n in sorted(taken):
        if s > at:
            out.append((at, s - at))
        at = max(at, s + n)
    if at < origin + length:
        out.append((at, origin + length - at))
    return out


def image_regions(origin: int, length: int, taken: list[tuple[int, int]]) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """Where a firmware that must keep out of ``taken`` links: (code region, vector region).
    The vector table stays at ``origin`` (where the part boots); the code goes to the largest
    free range, which is the range at ``origin`` itself unless a reserved area cuts it short
    (then the vector region is that first range alone; None when it is the code region)."""
    free = free_ranges(origin, length, taken)
    if not free or free[0][0] != origin:
        raise ToolkitError(f"no free flash at {origin:#010x}, where the part boots",
                           hint="keep sector 0 out of [update] and [mcuboot] areas")
    code = max(free, key=lambda r: r[1])
    if code[1] < MIN_IMAGE:
        raise ToolkitError(f"the largest free flash range ({code[1]:#x} bytes at {code[0]:#010x}) is too small for "
                           "the firmware", hint="give the firmware more sectors in the board file's layout")
    return code, (None if code == free[0] else free[0])
