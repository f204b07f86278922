"""The model as data: the PLAN section (aiot.lifecycle.plan) walked by
firmware/src/update/plan.c with the engine's kernels gives tflite-micro's bytes exactly,
and the loader refuses damaged plans instead of reading outside them."""

from __future__ import annotations

import ctypes
import struct

import numpy as np
import pytest

from aiot.codegen import engine_sources
from aiot.lifecycle import plan as L
from aiot.lifecycle.crypto_sources import update_sources  # noqa: F401  (same C tree)
from aiot.paths import FIRMWARE, ROOT
from aiot.target import hostbuild

AE24 = ROOT / "hil_tests" / "fixtures" / "ae24"


@pytest.fixture(scope="module")
def walker():
    so = hostbuild.compile_shared([FIRMWARE / "src" / "update" / "plan.c", *engine_sources()], name="aiot_plan")
    lib = hostbuild.load(so)
    lib.aiot_plan_load.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p]
    lib.aiot_plan_invoke.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    return lib


class Plan:
    def __init__(self, lib, data: bytes, arena_cap: int = 4096):
        self.lib = lib
        self.buf = ctypes.create_string_buffer(data, len(data) + 16)
        self.addr = (ctypes.addressof(self.buf) + 15) // 16 * 16  # 16-aligned copy, as a slot is
        ctypes.memmove(self.addr, data, len(data))
        self.state = ctypes.create_string_buffer(64 * 1024)
        self.rc = lib.aiot_plan_load(self.addr, len(data), arena_cap, self.state)
        self.arena = (ctypes.c_int8 * arena_cap)()
        self.head = L.HEADER.unpack_from(data)

    def run(self, x: np.ndarray) -> np.ndarray:
        _, _, _, _, in_off, out_off, n_in, n_out, *_ = self.head
        out = []
        for row in np.asarray(x, np.int8).reshape(len(x), -1):
            ctypes.memmove(ctypes.addressof(self.arena) + in_off, row.tobytes(), n_in)  # refill before every run
            assert self.lib.aiot_plan_invoke(self.state, self.arena) == 0
            out.append(np.frombuffer(bytes(self.arena)[out_off : out_off + n_out], np.int8))
        return np.stack(out)


def test_plan_is_bit_exact_with_tflite_micro(walker):
    from aiot.model.reference import TflmReference

    tfl = (AE24 / "model.tflite").read_bytes()
    x = np.load(AE24 / "vectors.npz")["x_int8"].reshape(-1, 24)
    p = Plan(walker, L.build_plan(tfl))
    assert p.rc == 0
    np.testing.assert_array_equal(p.run(x), TflmReference(tfl).run(x).reshape(len(x), -1))


def test_damaged_plans_are_refused(walker):
    data = bytearray(L.build_plan((AE24 / "model.tflite").read_bytes()))
    assert Plan(walker, bytes(data)).rc == 0
    assert Plan(walker, bytes(data), arena_cap=8).rc == 11  # TOO_LARGE: arena does not fit
    bad_magic = bytearray(data)
    bad_magic[0] ^= 1
    assert Plan(walker, bytes(bad_magic)).rc == 8
    assert Plan(walker, bytes(data[:100])).rc == 8  # layer records cut off
    first = L.HEADER.size
    for field_off, value in [(20, len(data)), (24, 0xFFFFFFF0), (12, 10_000), (16, 4094), (6, 60_000)]:
        broken = bytearray(data)
        struct.pack_into("<I" if field_off >= 12 else "<H", broken, first + field_off, value)
        assert Plan(walker, bytes(broken)).rc != 0, f"layer field at +{field_off} = {value} accepted"
    rng = np.random.default_rng(3)
    for _ in range(300):  # random damage: refused or still in bounds, never a crash
        broken = bytearray(data)
        for pos in rng.integers(0, L.HEADER.size + 4 * L.LAYER.size, 3):
            broken[int(pos)] = int(rng.integers(0, 256))
        Plan(walker, bytes(broken))


def test_unsupported_ops_are_named():
    """A convolutional model (MLPerf Tiny keyword spotting, when the shared models are on
    this machine) is refused by name, not serialized wrongly."""
    from pathlib import Path

    from aiot.errors import ToolkitError

    kws = Path("/work/shared/models/mlperf-tiny/kws_ref_model.tflite")
    if not kws.is_file():
        pytest.skip("MLPerf Tiny models not on this machine")
    with pytest.raises(ToolkitError, match="FULLY_CONNECTED layers only"):
        L.build_plan(kws.read_bytes())


def test_mlperf_anomaly_autoencoder_plan_is_bit_exact(walker):
    """MLPerf Tiny's anomaly-detection autoencoder (10 dense layers, 640 inputs) as data."""
    from pathlib import Path

    from aiot.model.reference import TflmReference

    ad = Path("/work/shared/models/mlperf-tiny/ad01_int8.tflite")
    if not ad.is_file():
        pytest.skip("MLPerf Tiny models not on this machine")
    tfl = ad.read_bytes()
    data = L.build_plan(tfl)
    p = Plan(walker, data, arena_cap=L.HEADER.unpack_from(data)[3])
    assert p.rc == 0
    x = np.random.default_rng(0).integers(-128, 128, (8, p.head[6]), dtype=np.int8)
    np.testing.assert_array_equal(p.run(x), TflmReference(tfl).run(x).reshape(len(x), -1))
