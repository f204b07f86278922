"""The device firmware built for the host and run in this process: app.c, the monitor, the
protocol and (with a release key) the update service over a simulated flash, behind the
same transport interface as QEMU and serial ports. A host device is a full
:class:`aiot.device.hil.Device`: INFO, PUSH, EVENTS, STATS, and UPDATE_* / REBOOT with the
trial run by the device's own C. Many of them fit in one process (a fleet in a test).

    fw = HostFirmware(model_dir, public_key=pub)
    board = fw.power_on()                     # one device: its own RAM and flash
    with Device(board.transport()) as dev:
        UpdateClient(dev).send(image)

Each device loads its own copy of the library (a ``dlopen`` of one path would share its
statics); a reset (REBOOT) unloads it and loads a fresh copy on the same flash memory, so
RAM starts from zero as after a real reset and the update region keeps what was written.
"""

from __future__ import annotations

import _ctypes
import ctypes
import shutil
import tempfile
import threading
from pathlib import Path

from aiot.errors import ToolkitError
from aiot.paths import FIRMWARE
from aiot.target import hostbuild

HOST_RESET = -2
#: The host build's update region: two 4 KB record sectors, then two slots.
SECTOR_SIZE = 4096
SLOT_SIZE = 64 * 1024


class HostFirmware:
    """The device app compiled for the host (cached), with ``model_dir``'s generated model
    compiled in (None: no model), and the update service when ``public_key`` is given."""

    def __init__(self, model_dir: Path | None = None, *, public_key: bytes | None = None,
                 trial_runs: int | None = None, schema_id: int | None = None, name: str = "host",
                 slot_size: int = SLOT_SIZE, sector_size: int = SECTOR_SIZE, defines: tuple[str, ...] = ()):
        from aiot.codegen import engine_sources

        fw = FIRMWARE
        srcs = [fw / "port" / "host" / "port.c", *sorted((fw / "src" / "protocol").glob("*.c")),
                fw / "src" / "app" / "app.c", fw / "src" / "monitor" / "monitor.c"]
        incs: list[Path] = [fw / "src"]
        defs = [f'AIOT_BOARD_NAME="{name}"', "AIOT_CPU_HZ=1000000u", *defines]
        if model_dir is not None:
            srcs += [Path(model_dir) / "model.c", fw / "src" / "monitor" / "engine_adapter.c"]
            incs.append(Path(model_dir))
        else:
            defs.append("AIOT_NO_MODEL=1")
        self.slot_size, self.sector_size = slot_size, sector_size
        self.updates = public_key is not None
        if self.updates:
            from aiot.lifecycle.crypto_sources import crypto_sources, update_sources

            if len(public_key) != 32:
                raise ToolkitError("the release public key must be 32 bytes (Ed25519)",
                                   hint="make keys with aiot release --new-key")
            crypto = crypto_sources()
            srcs += [*(s for s in update_sources() if s not in srcs), fw / "src" / "update" / "service.c", fw / "src" / "update" / "plan.c",
                     fw / "src" / "update" / "flash_sim.c", *crypto.sources]
            incs += list(crypto.include_dirs)
            # two record sectors, then two slots (the region host_attach_flash gets, in equal sectors)
            areas = (0, sector_size, 2 * sector_size, 2 * sector_size + slot_size)
            defs += ["AIOT_APP_UPDATE", f"AIOT_UPDATE_SECTOR={sector_size}u", f"AIOT_UPDATE_SLOT_SIZE={slot_size}u",
                     "AIOT_UPDATE_AREAS=" + ",".join(f"{a}u" for a in areas),
                     "AIOT_UPDATE_PUBLIC_KEY=" + ",".join(f"0x{b:02x}" for b in public_key), *crypto.defines]
            if trial_runs is not None:
                defs.append(f"AIOT_UPDATE_TRIAL_RUNS={int(trial_runs)}u")
            if schema_id is not None:
                defs.append(f"AIOT_UPDATE_SCHEMA_ID={int(schema_id)}u")
        srcs += engine_sources()  # the compiled-in model and a release's plan both run on them
        self.library = hostbuild.compile_shared(srcs, name="aiot_device_host", include_dirs=incs, defines=defs)

    def power_on(self, name: str = "host") -> "HostBoard":
        """A new device fresh from the factory (erased update region), booted."""
        return HostBoard(self, name)


class HostBoard:
    """One host-built device: its flash (kept over resets) and its current run of the app."""

    def __init__(self, firmware: HostFirmware, name: str):
        self.firmware, self.name = firmware, name
        self.flash_size = 2 * firmware.sector_size + 2 * firmware.slot_size
        self.flash = (ctypes.c_uint8 * self.flash_size)(*([0xFF] * self.flash_size)) if firmware.updates else None
        self._dir = tempfile.TemporaryDirectory(prefix="aiot-host-")
        self._lock = threading.Lock()
        self.boots = 0
        self.link_up = True  # False: the cable is out (every transport write fails; the device runs on)
        self.lib: ctypes.CDLL | None = None
        self._out = ctypes.create_string_buffer(1 << 16)
        self.reset()

    def reset(self) -> None:
        """Power cycle: RAM gone (a fresh copy of the library), flash kept, the app boots."""
        with self._lock:
            if self.lib is not None:
                _ctypes.dlclose(self.lib._handle)
                self.lib = None
            self.boots += 1
            private = shutil.copy(self.firmware.library, Path(self._dir.name) / f"boot{self.boots}.so")
            lib = hostbuild.load(Path(private))
            Path(private).unlink()  # loaded: the copy is not needed on disk any more
            lib.host_feed.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
            lib.host_take.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
            lib.host_take.restype = ctypes.c_size_t
            if self.flash is not None:
                lib.host_attach_flash.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32]
                if lib.host_attach_flash(ctypes.addressof(self.flash), self.flash_size, self.firmware.sector_size, 8):
                    raise ToolkitError("the host port cannot hold this flash region (simulator state or more than 256 sectors)",
                                       hint="enlarge flash_sim in firmware/port/host/port.c")
            self.lib = lib
            code = lib.host_boot()
        if code == HOST_RESET:
            self.reset()

    def feed(self, data: bytes) -> bytes:
        """Bytes in, the device's answer out (a reset after answering boots it again)."""
        with self._lock:
            code = self.lib.host_feed(data, len(data))
            n = self.lib.host_take(self._out, len(self._out))
            out = self._out.raw[:n]
        if code == HOST_RESET:
            self.reset()
        elif code >= 0:
            self.exit_code = code
        return out

    def transport(self) -> "HostTransport":
        if not self.link_up:
            raise ToolkitError(f"host:{self.name}: the link is down", hint="open the device again once its link is back")
        return HostTransport(self)

    def opener(self, transport: type | None = None):
        """A gateway's ``open_source`` for this device: a client after the INFO handshake
        (over ``transport``, a :class:`HostTransport` subclass, to watch or break the link)."""
        def open_source():
            from aiot.device.hil import Device

            link = self.transport() if transport is None else transport(self)
            dev = Device(link, timeout=1.0, retries=0)
            dev.info()
            return dev
        return open_source

    def close(self) -> None:
        with self._lock:
            if self.lib is not None:
                _ctypes.dlclose(self.lib._handle)
                self.lib = None
        self._dir.cleanup()


class HostTransport:
    """The transport interface (aiot.device.hil.Transport) over a :class:`HostBoard`. Closing
    it drops the link only; the device keeps running (and keeps its events)."""

    pipeline_depth = 1

    def __init__(self, board: HostBoard):
        self.board = board
        self.name = f"host:{board.name}"
        self._pending = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed or not self.board.link_up:
            raise ToolkitError(f"{self.name}: the link is {'closed' if self.closed else 'down'}",
                               hint="open the device again once its link is back")
        self._pending += self.board.feed(bytes(data))

    def read(self, timeout: float) -> bytes:
        out, self._pending = bytes(self._pending), bytearray()
        return out

    def diagnose(self) -> str:
        return "the host-built device did not answer: a bug in the firmware C or the host port"

    def close(self) -> None:
        self.closed = True
