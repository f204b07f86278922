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
    so = hostbuild.compile_shared([FIRMWARE / "src" / "update" / "plan.c", *engine_sources()], name="aiot_plan",
                                  defines=["AIOT_PLAN_ALL_OPS"])
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
        self.head = L.HEADER.unpack_from(data) if len(data) >= L.HEADER.size else None

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


def test_version_1_plan_still_loads_and_is_bit_exact(walker):
    """A plan written by the first format (FULLY_CONNECTED records of 48 bytes, kept as a
    fixture from the release that wrote it) loads and runs as before."""
    from aiot.model.reference import TflmReference

    v1 = (ROOT / "tests" / "fixtures" / "plan_v1_ae24.bin").read_bytes()
    assert L.HEADER.unpack_from(v1)[1] == 1
    tfl = (AE24 / "model.tflite").read_bytes()
    x = np.load(AE24 / "vectors.npz")["x_int8"].reshape(-1, 24)
    p = Plan(walker, v1)
    assert p.rc == 0
    np.testing.assert_array_equal(p.run(x), TflmReference(tfl).run(x).reshape(len(x), -1))


def test_damaged_version_1_plans_are_refused(walker):
    data = bytearray((ROOT / "tests" / "fixtures" / "plan_v1_ae24.bin").read_bytes())
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


def _records(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, kind, bytes) of each version 2 record, read by the format's own rules."""
    out, pos = [], L.HEADER.size
    for _ in range(L.HEADER.unpack_from(data)[2]):
        kind, size = struct.unpack_from("<HH", data, pos)
        out.append((pos, kind, size))
        pos += size
    return out


def _refused_or_in_bounds(walker, data: bytes, arena: int) -> int:
    """Load a damaged plan; if it loads, run it: the arena's guard bytes past the plan's
    arena stay untouched (a write out of bounds would change them)."""
    p = Plan(walker, data, arena_cap=arena)
    if p.rc == 0:
        guard = arena + 256
        big = (ctypes.c_int8 * guard)()
        ctypes.memset(big, 0x5A, guard)
        walker.aiot_plan_invoke(p.state, big)
        assert bytes(big)[arena:] == b"\x5a" * 256, "a loaded plan wrote past its arena"
    return p.rc


@pytest.mark.parametrize("which", ["conv", "elementwise"])
def test_damaged_version_2_plans_are_refused(walker, conv_model, which):
    """Every record of a plan (every v2 kind between the two models): truncation anywhere,
    each parameter word set to an out-of-range value, and random byte damage are refused
    or stay inside the plan and the arena (a crash fails the test)."""
    model = conv_model if which == "conv" else _cached(_elementwise_keras)
    data = L.build_plan(model.read_bytes())
    arena = L.plan_arena(data)
    assert Plan(walker, data, arena_cap=arena).rc == 0
    assert Plan(walker, data, arena_cap=arena - 4).rc == 11
    records = _records(data)
    assert {k for _, k, _ in records} >= ({L.KIND_CONV, L.KIND_DEPTHWISE, L.KIND_FC, L.KIND_ADD, L.KIND_SOFTMAX}
                                          if which == "conv" else {L.KIND_MUL, L.KIND_MIN_MAX, L.KIND_TANH})
    end = records[-1][0] + records[-1][2]
    for cut in range(0, end + 64, 3):  # every prefix of the records and a bit of the arrays
        assert Plan(walker, data[:cut], arena_cap=arena).rc == 8, f"plan cut at {cut} accepted"
    for pos, kind, size in records:
        for bad in (pos + 2,):  # record length
            broken = bytearray(data)
            struct.pack_into("<H", broken, bad, size + 4)
            assert Plan(walker, bytes(broken), arena_cap=arena).rc == 8
        broken = bytearray(data)
        struct.pack_into("<H", broken, pos, 99)  # unknown kind
        assert Plan(walker, bytes(broken), arena_cap=arena).rc == 8
        for w in range(2, size // 4):  # arena offsets and every parameter word
            for value in (0xFFFFFFF0, len(data), arena, 0x10000):
                broken = bytearray(data)
                struct.pack_into("<I", broken, pos + 4 * w, value)
                _refused_or_in_bounds(walker, bytes(broken), arena)
        for w in range(1, 4):  # tensor offsets past the arena
            broken = bytearray(data)
            struct.pack_into("<I", broken, pos + 4 * w, arena)
            if w != 2 or kind in (L.KIND_ADD, L.KIND_MUL, L.KIND_MIN_MAX):
                assert Plan(walker, bytes(broken), arena_cap=arena).rc == 8, f"kind {kind} offset word {w}"
    rng = np.random.default_rng(5)
    for _ in range(300):
        broken = bytearray(data)
        for pos in rng.integers(L.HEADER.size, end, 3):
            broken[int(pos)] = int(rng.integers(0, 256))
        _refused_or_in_bounds(walker, bytes(broken), arena)


def _conv_keras(L_):
    """conv + depthwise + max and average pool + residual add + dense + softmax."""
    import keras

    keras.utils.set_random_seed(21)
    x = keras.Input((10, 8, 3))
    h = L_.Conv2D(8, 3, padding="same", activation="relu")(x)
    d = L_.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    s = L_.Add()([h, d])
    p = L_.MaxPooling2D(2)(s)
    q = L_.Conv2D(6, 1, strides=1)(p)
    q = L_.AveragePooling2D(2)(q)
    y = L_.Dense(5, activation="softmax")(L_.Flatten()(q))
    return keras.Model(x, y)


def _elementwise_keras(L_):
    """MUL, MAXIMUM/MINIMUM (with the converter's int8 QUANTIZE), LOGISTIC, TANH, RELU,
    LEAKY_RELU, RELU6 between convs and a dense layer."""
    import keras

    keras.utils.set_random_seed(23)
    x = keras.Input((1, 12, 4))
    a = L_.Conv2D(4, (1, 3), padding="same")(x)
    b = L_.Conv2D(4, (1, 1))(x)
    m = L_.Multiply()([a, b])
    h = L_.Minimum()([L_.Maximum()([a, b]), m])
    r = L_.ReLU()(L_.Activation("sigmoid")(m))
    u = L_.ReLU(6.0)(L_.LeakyReLU(0.2)(L_.Activation("tanh")(h)))
    return keras.Model(x, L_.Dense(3)(L_.Flatten()(L_.Add()([r, u]))))


def _with_concat(L_):
    import keras

    keras.utils.set_random_seed(22)
    x = keras.Input((1, 6, 2))
    a = L_.Conv2D(2, (1, 3), padding="same")(x)
    return keras.Model(x, L_.Dense(2)(L_.Flatten()(L_.Concatenate()([a, x]))))


def _cached(builder):
    import importlib.util
    import inspect

    from aiot.paths import MODELS

    pytest.importorskip("tensorflow")
    spec = importlib.util.spec_from_file_location("aiot_model_recipes", MODELS / "recipes.py")
    recipes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipes)

    def build() -> bytes:
        import keras

        model = builder(keras.layers)
        shape = tuple(model.inputs[0].shape[1:])
        rep = np.random.default_rng(11).normal(size=(48, *shape)).astype(np.float32) * 1.5
        return recipes.convert_int8(model, rep, per_channel=True, batch1=True)

    return recipes.cached_tflite(["lifecycle-plan", inspect.getsource(builder)], build)


@pytest.fixture(scope="module")
def conv_model():
    return _cached(_conv_keras)


def test_conv_model_plan_is_bit_exact(walker, conv_model):
    from aiot.model import tflite
    from aiot.model.reference import TflmReference

    tfl = conv_model.read_bytes()
    assert {op.op for op in tflite.load(tfl).operators} >= {
        "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "ADD", "FULLY_CONNECTED", "SOFTMAX"}
    data = L.build_plan(tfl)
    assert L.HEADER.unpack_from(data)[1] == 2
    p = Plan(walker, data, arena_cap=L.plan_arena(data))
    assert p.rc == 0
    x = np.random.default_rng(1).integers(-128, 128, (24, p.head[6]), dtype=np.int8)
    x[0], x[1] = -128, 127
    np.testing.assert_array_equal(p.run(x), TflmReference(tfl).run(x).reshape(len(x), -1))


def test_elementwise_model_plan_is_bit_exact(walker):
    from aiot.model import tflite
    from aiot.model.reference import TflmReference

    tfl = _cached(_elementwise_keras).read_bytes()
    ops = {op.op for op in tflite.load(tfl).operators}
    assert ops >= {"MUL", "MAXIMUM", "MINIMUM", "LOGISTIC", "TANH", "LEAKY_RELU"}, ops
    data = L.build_plan(tfl)
    p = Plan(walker, data, arena_cap=L.plan_arena(data))
    assert p.rc == 0
    x = np.random.default_rng(4).integers(-128, 128, (24, p.head[6]), dtype=np.int8)
    x[0], x[1] = -128, 127
    np.testing.assert_array_equal(p.run(x), TflmReference(tfl).run(x).reshape(len(x), -1))


def test_unsupported_ops_are_named():
    """An op the plan does not run (CONCATENATION here) is refused by name, not serialized wrongly."""
    from aiot.errors import ToolkitError

    with pytest.raises(ToolkitError, match=r"node \d+ is CONCATENATION"):
        L.build_plan(_cached(_with_concat).read_bytes())


def test_dense_only_walker_refuses_other_layers(walker, conv_model):
    """A walker built without AIOT_PLAN_ALL_OPS (the default, aiot build --plan-ops dense) runs
    dense plans and refuses a conv plan (WRONG_ABI) instead of calling kernels it lacks."""
    so = hostbuild.compile_shared([FIRMWARE / "src" / "update" / "plan.c", *engine_sources()], name="aiot_plan_dense")
    dense = hostbuild.load(so)
    dense.aiot_plan_load.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p]
    dense.aiot_plan_invoke.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    fc = L.build_plan((AE24 / "model.tflite").read_bytes())
    x = np.load(AE24 / "vectors.npz")["x_int8"].reshape(-1, 24)[:8]
    np.testing.assert_array_equal(Plan(dense, fc).run(x), Plan(walker, fc).run(x))
    conv = L.build_plan(conv_model.read_bytes())
    assert Plan(dense, conv, arena_cap=L.plan_arena(conv)).rc == 9


def test_release_check_names_the_build_option_that_fits(conv_model):
    from aiot.errors import ToolkitError

    conv = L.build_plan(conv_model.read_bytes())
    need, n = L.plan_arena(conv), L.plan_layers(conv)
    L.check_fits(conv, "r", arena=need, layers=n, dense_only=False, where="b.json")
    with pytest.raises(ToolkitError, match=f"needs a {need:,}-byte arena") as e:
        L.check_fits(conv, "r", arena=need - 4, layers=n, dense_only=False, where="b.json")
    assert f"--plan-arena {need}" in e.value.hint and "--no-plan" in e.value.hint
    with pytest.raises(ToolkitError, match=f"at most {n - 1}") as e:
        L.check_fits(conv, "r", arena=need, layers=n - 1, dense_only=False, where="b.json")
    assert f"--plan-layers {n}" in e.value.hint
    with pytest.raises(ToolkitError, match="dense plans only") as e:
        L.check_fits(conv, "r", arena=need, layers=n, dense_only=True, where="b.json")
    assert "--plan-ops all" in e.value.hint
    fc = L.build_plan((AE24 / "model.tflite").read_bytes())
    L.check_fits(fc, "r", arena=L.plan_arena(fc), layers=L.plan_layers(fc), dense_only=True, where="b.json")
    v1 = (ROOT / "tests" / "fixtures" / "plan_v1_ae24.bin").read_bytes()
    assert L.plan_kinds(v1) == {L.KIND_FC} and L.plan_kinds(conv) >= {L.KIND_CONV, L.KIND_FC}


def test_several_inputs_are_refused():
    """The plan has one input and one output: a two-input model is refused for that."""
    from aiot.errors import ToolkitError

    with pytest.raises(ToolkitError, match="2 inputs and 1 outputs"):
        L.build_plan((ROOT / "tests" / "fixtures" / "tflite" / "two_inputs.tflite").read_bytes())


def test_mlperf_kws_plan_is_bit_exact(walker):
    """MLPerf Tiny keyword spotting (DS-CNN: conv, depthwise, average pool, dense, softmax) as data."""
    from pathlib import Path

    from aiot.model.reference import TflmReference

    kws = Path("/work/shared/models/mlperf-tiny/kws_ref_model.tflite")
    if not kws.is_file():
        pytest.skip("MLPerf Tiny models not on this machine")
    tfl = kws.read_bytes()
    data = L.build_plan(tfl)
    p = Plan(walker, data, arena_cap=L.plan_arena(data))
    assert p.rc == 0
    x = np.random.default_rng(2).integers(-128, 128, (3, p.head[6]), dtype=np.int8)
    np.testing.assert_array_equal(p.run(x), TflmReference(tfl).run(x).reshape(len(x), -1))


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
