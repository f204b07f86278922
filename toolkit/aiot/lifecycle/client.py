"""Host side of model updates over the framed protocol (UPDATE_BEGIN / CHUNK / FINISH /
STATUS, REBOOT; docs/lifecycle.md): send a signed package in chunks, resume after the
link drops from the offset the device acknowledged, report the device's verdict.

    with open_device(...) as dev:
        up = UpdateClient(dev)
        up.send(image)          # resumes a transfer of the same package if one is under way
        up.reboot()             # the candidate runs on trial from the next boot
"""

from __future__ import annotations

import hashlib
import struct
import time
from dataclasses import dataclass
from typing import Callable

from aiot.errors import ToolkitError

UPDATE_BEGIN, UPDATE_CHUNK, UPDATE_FINISH, UPDATE_STATUS, REBOOT = 0x20, 0x21, 0x22, 0x23, 0x24
NO_SLOT = 0xFF
#: Device reasons (aiot_update_reason_t), their names and what to do about each.
REASONS = {
    0: ("OK", ""), 1: ("TRUNCATED", "the file is cut short: copy the release again"),
    2: ("NOT_IMAGE", "not a signed package: make one with aiot release"),
    3: ("BAD_TLV", "the signature area is damaged: copy the release again"),
    4: ("BAD_HASH", "the package is corrupted: copy the release again"),
    5: ("UNSIGNED", "sign it: aiot release"), 6: ("WRONG_KEY", "sign with the key this device was built with"),
    7: ("BAD_SIGNATURE", "the signature is damaged or forged: use the original release"),
    8: ("NOT_PACKAGE", "not an aiot model package: make one with aiot release"),
    9: ("WRONG_ABI", "the device's firmware cannot run this package: update the firmware first"),
    10: ("WRONG_SCHEMA", "the package is for other sensors than this installation's"),
    11: ("TOO_LARGE", "the package is larger than the device's model slot"),
    12: ("BAD_OFFSET", "send again: aiot update resumes from the device's offset"),
    13: ("NOT_STARTED", "send again"), 14: ("INCOMPLETE", "send again"),
    15: ("FLASH", "the device could not write its flash (or has no update region)"),
    16: ("BUSY", "a trial is running on the device: wait for it to confirm or revert"),
    17: ("GOLDEN_MISMATCH", "the model did not reproduce its golden vectors on this firmware"),
    18: ("TRIAL_RESET", "the device reset during the trial"), 19: ("SELF_TEST", "a self-test failed during the trial"),
    20: ("SLOT_INVALID", "the stored package no longer verifies"),
}


def reason_name(code: int) -> str:
    return REASONS.get(code, (f"reason {code}", ""))[0]


class UpdateRefused(ToolkitError):
    def __init__(self, what: str, code: int, where: str):
        name, hint = REASONS.get(code, (f"reason {code}", "see docs/lifecycle.md"))
        super().__init__(f"{where}: the device refused {what}: {name}", hint=hint or None)
        self.code = code
        self.name = name


class NoUpdates(ToolkitError):
    """The device's firmware takes no model updates (no update service, or no update region)."""


def image_digest(image: bytes) -> bytes:
    """SHA-256 over header + body + protected TLVs, as MCUboot and the device compute it."""
    if len(image) < 32 or struct.unpack_from("<I", image)[0] != 0x96F3B83D:
        raise ToolkitError("not a signed model package (no MCUboot image header)", hint="make one with aiot release")
    hdr, prot, size = struct.unpack_from("<HHI", image, 8)
    return hashlib.sha256(image[: hdr + size + prot]).digest()


@dataclass
class UpdateStatus:
    ready: bool
    running: int          # slot, NO_SLOT = the firmware's built-in model
    trial: bool
    trial_boots: int
    last_reason: int
    reverted_slot: int
    receiving: bool
    boot_result: int
    seq: int
    rx_total: int
    rx_next: int
    abi: int
    schema_id: int
    slot_bytes: tuple[int, int]
    slot_digest: tuple[bytes, bytes]
    rx_digest: bytes
    trial_runs: int
    trial_runs_needed: int
    slot_size: int
    self_test: int
    rx_slot: int
    golden_path: int = 0      # 1 compiled-in model, 2 the package's own plan
    plan_ticks: int = 0       # ticks for the timed golden runs through the plan
    compiled_ticks: int = 0   # ... through the compiled-in model (same vectors)
    timed_runs: int = 0
    serving_plan: bool = False  # the running release's own network (its plan) serves INFER/INFO/monitor

    @classmethod
    def parse(cls, p: bytes) -> "UpdateStatus":
        if len(p) < 74:
            raise ToolkitError(f"UPDATE_STATUS answer of {len(p)} bytes, expected 80", hint="firmware and host differ: rebuild the firmware")
        (ready, running, state, boots, last, reverted, rx_active, boot_result) = p[:8]
        seq, total, nxt, abi, schema, b0, b1 = struct.unpack_from("<7I", p, 8)
        runs, needed, slot_size = struct.unpack_from("<3I", p, 60)
        extra = (p[74], *struct.unpack_from("<III", p, 76), bool(p[75])) if len(p) >= 88 else ()
        return cls(bool(ready), running, state == 1, boots, last, reverted, bool(rx_active), boot_result, seq, total,
                   nxt, abi, schema, (b0, b1), (p[36:44], p[44:52]), p[52:60], runs, needed, slot_size, p[72], p[73],
                   *extra)

    def running_digest(self) -> bytes | None:
        return None if self.running == NO_SLOT else self.slot_digest[self.running]

    def describe(self) -> str:
        if not self.ready:
            return "no update region on this firmware"
        run = "built-in model" if self.running == NO_SLOT else f"slot {self.running} ({self.slot_digest[self.running].hex()})"
        if self.trial and self.trial_boots == 0:
            text = f"slot {self.running} ({self.slot_digest[self.running].hex()}) received and verified; its trial starts at the next boot"
        else:
            text = f"running {run}" + (f", on trial ({self.trial_runs}/{self.trial_runs_needed} runs)" if self.trial else "")
        if self.last_reason:
            text += f"; last trial of slot {self.reverted_slot} reverted: {reason_name(self.last_reason)}"
        return text


class UpdateClient:
    def __init__(self, dev, chunk: int = 512):
        if chunk <= 0 or chunk % 8:
            raise ToolkitError(f"chunk size {chunk} must be a positive multiple of 8 (the flash program unit)")
        self.dev = dev
        self.chunk = min(chunk, (dev.max_payload - 4) // 8 * 8) if getattr(dev, "max_payload", 0) else chunk
        self.resumed_from: int | None = None

    def status(self) -> UpdateStatus:
        from aiot.device.hil import DeviceError

        try:
            f = self.dev.request(UPDATE_STATUS, retry=True)
        except DeviceError as e:
            if e.code != 3:  # UNKNOWN_TYPE: firmware built without the update service
                raise
            raise NoUpdates(f"{self.dev.name}: this firmware takes no model updates (it does not know UPDATE_STATUS)",
                               hint="build and flash firmware with update support: aiot build --board B --update-key "
                                    "KEY.pem, then aiot flash") from e
        return UpdateStatus.parse(f.payload)

    def _result(self, f) -> tuple[int, int]:
        return f.payload[0], struct.unpack_from("<I", f.payload, 4)[0]

    def send(self, image: bytes, progress: Callable[[int, int], None] | None = None) -> UpdateStatus:
        """Transfer and finish; resumes a transfer of the same package that the device holds."""
        digest8 = image_digest(image)[:8]
        st = self.status()
        if not st.ready:
            raise NoUpdates(f"{self.dev.name}: this firmware has no update region",
                               hint="build it with update support: aiot build --update-key KEY.pem")
        where = self.dev.name
        if st.receiving and st.rx_total == len(image) and st.rx_digest == digest8:
            offset = st.rx_next
            self.resumed_from = offset
        else:
            code, offset = self._result(self.dev.request(UPDATE_BEGIN, struct.pack("<I", len(image)) + digest8,
                                                         timeout=5.0 + len(image) / 20_000))
            if code:
                raise UpdateRefused("the transfer", code, where)
            self.resumed_from = None
        while offset < len(image):
            data = image[offset : offset + self.chunk]
            # idempotent by offset: a resend of bytes the device has is only acknowledged
            code, nxt = self._result(self.dev.request(UPDATE_CHUNK, struct.pack("<I", offset) + data, retry=True))
            if code:
                raise UpdateRefused(f"the chunk at offset {offset}", code, where)
            offset = nxt
            if progress:
                progress(offset, len(image))
        code, _ = self._result(self.dev.request(UPDATE_FINISH, timeout=10.0))
        if code:
            raise UpdateRefused("the package", code, where)
        return self.status()

    def reboot(self) -> None:
        """Restart the device (the candidate then runs on trial) and read its INFO again:
        a release carrying its own network serves another model after the reboot."""
        self.dev.request(REBOOT)
        time.sleep(0.05)
        self.dev.info(refresh=True)
