"""The device's update logic (firmware/src/update) built for the host and driven through
ctypes, over a simulated NOR flash that can lose power at any erase or program.

    dev = SimulatedDevice(public_key=pub, slot_size=64 * 1024)
    dev.boot()
    dev.update(signed_bytes, chunk=256)   # begin, chunks, finish; returns the reason code
    dev.boot(); dev.trial_report(0)       # reboot into the trial, confirm it
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import lru_cache

from aiot.errors import ToolkitError
from aiot.lifecycle.crypto_sources import crypto_sources, update_sources
from aiot.paths import FIRMWARE
from aiot.target import hostbuild

NO_SLOT = 0xFF
REASONS = {
    0: "OK", 1: "TRUNCATED", 2: "NOT_IMAGE", 3: "BAD_TLV", 4: "BAD_HASH", 5: "UNSIGNED", 6: "WRONG_KEY",
    7: "BAD_SIGNATURE", 8: "NOT_PACKAGE", 9: "WRONG_ABI", 10: "WRONG_SCHEMA", 11: "TOO_LARGE",
    12: "BAD_OFFSET", 13: "NOT_STARTED", 14: "INCOMPLETE", 15: "FLASH", 16: "BUSY",
    17: "GOLDEN_MISMATCH", 18: "TRIAL_RESET", 19: "SELF_TEST", 20: "SLOT_INVALID",
}
CODES = {v: k for k, v in REASONS.items()}
MAX_SECTIONS = 8


class PkgExpect(ctypes.Structure):
    _fields_ = [("public_key", ctypes.c_void_p), ("abi", ctypes.c_uint32), ("schema_id", ctypes.c_uint32)]


class PkgInfo(ctypes.Structure):
    _fields_ = [
        ("image_bytes", ctypes.c_uint32),
        ("digest", ctypes.c_uint8 * 32),
        ("version", ctypes.c_uint8 * 8),
        ("abi", ctypes.c_uint32), ("schema_id", ctypes.c_uint32), ("model_version", ctypes.c_uint32),
        ("body_offset", ctypes.c_uint32),
        ("section_offset", ctypes.c_uint32 * (MAX_SECTIONS + 1)),
        ("section_length", ctypes.c_uint32 * (MAX_SECTIONS + 1)),
    ]


_ERASE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32)
_PROGRAM = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_uint32)


class Flash(ctypes.Structure):
    """aiot_flash_t (update.h)."""
    _fields_ = [("sector_size", ctypes.c_uint32), ("program_align", ctypes.c_uint32), ("erase", _ERASE),
                ("program", _PROGRAM), ("map", ctypes.c_void_p), ("ctx", ctypes.c_void_p)]


class Record(ctypes.Structure):
    _fields_ = [
        ("magic", ctypes.c_uint32), ("seq", ctypes.c_uint32),
        ("active", ctypes.c_uint8), ("state", ctypes.c_uint8), ("trial", ctypes.c_uint8),
        ("trial_boots", ctypes.c_uint8), ("last_reason", ctypes.c_uint8), ("reverted_slot", ctypes.c_uint8),
        ("reserved", ctypes.c_uint8 * 2),
        ("slot_bytes", ctypes.c_uint32 * 2), ("slot_digest", (ctypes.c_uint8 * 8) * 2),
        ("reserved2", ctypes.c_uint32), ("crc", ctypes.c_uint32),
    ]


class Layout(ctypes.Structure):
    _fields_ = [("record_addr", ctypes.c_uint32 * 2), ("slot_addr", ctypes.c_uint32 * 2), ("slot_size", ctypes.c_uint32)]


class Update(ctypes.Structure):
    _fields_ = [
        ("flash", ctypes.c_void_p), ("layout", Layout), ("expect", PkgExpect),
        ("max_trial_boots", ctypes.c_uint8), ("trial_runs_needed", ctypes.c_uint32),
        ("rec", Record), ("rec_copy", ctypes.c_uint8), ("rx_active", ctypes.c_uint8), ("rx_slot", ctypes.c_uint8),
        ("rx_total", ctypes.c_uint32), ("rx_next", ctypes.c_uint32), ("trial_runs", ctypes.c_uint32),
    ]


#: AIOT_UPDATE_SANITIZE=1 builds the library with AddressSanitizer + UBSan (the process
#: must then run with libasan preloaded: tests/test_lifecycle_package.py does that).
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g")


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    import os

    crypto = crypto_sources()
    sanitize = os.environ.get("AIOT_UPDATE_SANITIZE") == "1"
    path = hostbuild.compile_shared(
        [*update_sources(), FIRMWARE / "src" / "update" / "flash_sim.c", *crypto.sources],
        name="aiot_update_asan" if sanitize else "aiot_update",
        include_dirs=crypto.include_dirs,
        defines=crypto.defines,
        extra_flags=SANITIZE_FLAGS if sanitize else (),
    )
    lib = hostbuild.load(path)
    lib.aiot_pkg_verify.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(PkgExpect), ctypes.POINTER(PkgInfo)]
    lib.aiot_update_reason_text.restype = ctypes.c_char_p
    lib.aiot_update_running.restype = ctypes.c_uint8
    lib.aiot_update_write.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_uint32,
                                      ctypes.POINTER(ctypes.c_uint32)]
    lib.aiot_update_begin.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.aiot_update_trial_report.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.aiot_flash_sim_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32,
                                        ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32]
    lib.aiot_flash_sim_cut.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    if lib.aiot_update_sizeof() != ctypes.sizeof(Update) or ctypes.sizeof(Record) != 48 \
            or lib.aiot_flash_sizeof() != ctypes.sizeof(Flash):
        raise ToolkitError("aiot_update_t layout differs between update.h and aiot.lifecycle.device",
                           hint="update the ctypes mirror in toolkit/aiot/lifecycle/device.py")
    return lib


def reason_text(code: int) -> str:
    return library().aiot_update_reason_text(code).decode()


@dataclass
class Verdict:
    code: int
    name: str
    text: str
    digest: bytes
    model_version: int


def _exact_copy(data: bytes):
    """``data`` in a malloc block of exactly its size: under AddressSanitizer a read past
    the end then hits a redzone (Python's own buffers live in larger arenas)."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    p = libc.malloc(max(1, len(data)))
    ctypes.memmove(p, data, len(data))
    return p, libc.free


def verify(image: bytes, public_key: bytes, *, abi: int = 1, schema_id: int = 0) -> Verdict:
    """Run the device's package check on ``image``."""
    import os

    lib = library()
    key = ctypes.create_string_buffer(bytes(public_key), 32)
    exp = PkgExpect(ctypes.cast(key, ctypes.c_void_p), abi, schema_id)
    info = PkgInfo()
    if os.environ.get("AIOT_UPDATE_SANITIZE") == "1":
        buf, free = _exact_copy(bytes(image))
        try:
            code = lib.aiot_pkg_verify(ctypes.cast(buf, ctypes.c_char_p), len(image), ctypes.byref(exp), ctypes.byref(info))
        finally:
            free(buf)
    else:
        code = lib.aiot_pkg_verify(bytes(image), len(image), ctypes.byref(exp), ctypes.byref(info))
    return Verdict(code, REASONS.get(code, str(code)), reason_text(code), bytes(info.digest), info.model_version)


class SimulatedDevice:
    """The update C over a simulated flash that survives "reboots" (a new boot() on the
    same memory) and can lose power at the n-th flash operation."""

    def __init__(self, public_key: bytes, *, slot_size: int = 64 * 1024, sector_size: int = 4096,
                 program_align: int = 8, abi: int = 1, schema_id: int = 0, trial_runs_needed: int = 3,
                 max_trial_boots: int = 1, areas: tuple[int, int, int, int] | None = None,
                 sectors: list[tuple[int, int, int]] | None = None):
        """Default: two record sectors then two slots, all in sectors of ``sector_size``. A
        board's layout instead: ``areas`` (record 0, record 1, slot 0, slot 1 offsets) and
        ``sectors`` (offset, size, number) as aiot.lifecycle.firmware.layout_defines gives them."""
        self.lib = library()
        if areas is None:
            areas = (0, sector_size, 2 * sector_size, 2 * sector_size + slot_size)
        if sectors is None:
            n = (2 * sector_size + 2 * slot_size) // sector_size
            sectors = [(i * sector_size, sector_size, i) for i in range(n)]
        self.size = max(o + n for o, n, _ in sectors)
        self.mem = (ctypes.c_uint8 * self.size)()
        self._sectors = (ctypes.c_uint32 * (3 * len(sectors)))(*(v for s in sectors for v in s))
        self.flash = ctypes.create_string_buffer(self.lib.aiot_flash_sizeof())
        self.sim = ctypes.create_string_buffer(self.lib.aiot_flash_sim_size())
        self.lib.aiot_flash_sim_init(self.flash, self.sim, self.mem, self.size, sector_size, program_align,
                                     self._sectors, len(sectors))
        self._key = ctypes.create_string_buffer(bytes(public_key), 32)
        self.layout = Layout(areas[:2], areas[2:], slot_size)
        self.abi, self.schema_id = abi, schema_id
        self.trial_runs_needed, self.max_trial_boots = trial_runs_needed, max_trial_boots
        self.u = Update()

    # power and boot -------------------------------------------------------------------
    def cut_power_at(self, op: int) -> None:
        """Lose power at the op-th flash operation from now (-1: never). Also powers on."""
        self.lib.aiot_flash_sim_cut(self.sim, op)

    def flash_ops(self) -> int:
        return self.lib.aiot_flash_sim_ops(self.sim)

    def boot(self) -> int:
        """Power on (RAM state lost, flash kept) and run the boot-time update logic."""
        self.u = Update()
        self.u.flash = ctypes.cast(self.flash, ctypes.c_void_p)
        self.u.layout = self.layout
        self.u.expect = PkgExpect(ctypes.cast(self._key, ctypes.c_void_p), self.abi, self.schema_id)
        self.u.trial_runs_needed = self.trial_runs_needed
        self.u.max_trial_boots = self.max_trial_boots
        return self.lib.aiot_update_boot(ctypes.byref(self.u))

    # the flash itself, as the update logic calls it ------------------------------------
    def erase(self, offset: int) -> int:
        """Erase the sector that begins at ``offset``: 0, or -2 when the sector table has none there."""
        f = Flash.from_buffer(self.flash)
        return f.erase(ctypes.addressof(f), offset)

    def program(self, offset: int, data: bytes) -> int:
        """Program ``data`` at ``offset``: 0, or -2 when it is misaligned or leaves the table's sectors."""
        f = Flash.from_buffer(self.flash)
        return f.program(ctypes.addressof(f), offset, bytes(data), len(data))

    # state ------------------------------------------------------------------------------
    def running(self) -> int:
        return self.lib.aiot_update_running(ctypes.byref(self.u))

    def slot_image(self, slot: int) -> bytes:
        start = self.layout.slot_addr[slot]
        return bytes(self.mem[start : start + self.u.rec.slot_bytes[slot]])

    def running_digest(self) -> bytes | None:
        """SHA-256 of the package that runs, re-verified from flash; None = built-in model."""
        slot = self.running()
        if slot == NO_SLOT:
            return None
        v = verify(self.slot_image(slot), bytes(self._key.raw[:32]), abi=self.abi, schema_id=self.schema_id)
        if v.code != 0:
            raise AssertionError(f"slot {slot} runs but does not verify: {v.name}")
        return v.digest

    @property
    def record(self) -> Record:
        return self.u.rec

    # update -----------------------------------------------------------------------------
    def begin(self, total: int) -> int:
        return self.lib.aiot_update_begin(ctypes.byref(self.u), total)

    def write(self, offset: int, data: bytes) -> tuple[int, int]:
        nxt = ctypes.c_uint32(0)
        code = self.lib.aiot_update_write(ctypes.byref(self.u), offset, bytes(data), len(data), ctypes.byref(nxt))
        return code, nxt.value

    def finish(self) -> int:
        return self.lib.aiot_update_finish(ctypes.byref(self.u))

    def trial_report(self, reason: int = 0) -> int:
        return self.lib.aiot_update_trial_report(ctypes.byref(self.u), reason)

    def update(self, image: bytes, chunk: int = 256) -> int:
        """Whole transfer without link trouble: begin, every chunk, finish."""
        code = self.begin(len(image))
        off = 0
        while code == 0 and off < len(image):
            code, off = self.write(off, image[off : off + chunk])
        return code if code else self.finish()
