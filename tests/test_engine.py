"""Engine building blocks against independent oracles: the gemmlowp/TFLM rounding rules
re-derived in Python from their definitions, hand-computed cases, and the generator's
weight packing read back through the C accessor."""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest

from aiot.target import hostbuild
from aiot.codegen import engine_sources
from aiot.codegen.ops import pack_weights
from aiot.codegen.quant import activation_range, quantize_multiplier, round_half_away

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


@pytest.fixture(scope="module")
def lib():
    so = hostbuild.compile_shared(engine_sources(), name="aiotengine")
    lib = hostbuild.load(so)
    for fn in ("aiot_srdhm", "aiot_rounding_divide_by_pot", "aiot_mul_by_quant_mult"):
        getattr(lib, fn).restype = ctypes.c_int32
    lib.aiot_srdhm.argtypes = [ctypes.c_int32, ctypes.c_int32]
    lib.aiot_rounding_divide_by_pot.argtypes = [ctypes.c_int32, ctypes.c_int32]
    lib.aiot_mul_by_quant_mult.argtypes = [ctypes.c_int32, ctypes.c_int32, ctypes.c_int32]
    lib.aiot_packed_at.restype = ctypes.c_int8
    lib.aiot_packed_at.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32]
    lib.aiot_dot4_s8.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p]
    return lib


def srdhm_ref(a: int, b: int) -> int:
    # a * b / 2**31 rounded to nearest with ties toward +infinity (gemmlowp's nudge of
    # 2**30 for positive and 1 - 2**30 for negative products, then truncation), saturating
    # the single overflow case
    if a == b == I32_MIN:
        return I32_MAX
    return (a * b + 2**30) // 2**31


def rdivpot_ref(x: int, e: int) -> int:
    # x / 2**e rounded to nearest, ties away from zero
    if e == 0:
        return x
    q, r = divmod(abs(x), 2**e)
    q += 1 if r >= 2 ** (e - 1) else 0
    return q if x >= 0 else -q


def test_srdhm_matches_definition(lib):
    rng = np.random.default_rng(0)
    cases = [(I32_MIN, I32_MIN), (I32_MIN, I32_MAX), (I32_MAX, I32_MAX), (1, 2**30), (-1, 2**30), (3, 2**30),
             (-3, 2**30), (0, 5)]
    cases += [tuple(int(v) for v in rng.integers(I32_MIN, I32_MAX, 2, endpoint=True)) for _ in range(3000)]
    for a, b in cases:
        assert lib.aiot_srdhm(a, b) == srdhm_ref(a, b), (a, b)


def test_rounding_divide_by_pot_ties_away_from_zero(lib):
    assert [lib.aiot_rounding_divide_by_pot(x, 1) for x in (-3, -2, -1, 1, 2, 3)] == [-2, -1, -1, 1, 1, 2]
    assert lib.aiot_rounding_divide_by_pot(-5, 2) == -1 and lib.aiot_rounding_divide_by_pot(-6, 2) == -2
    rng = np.random.default_rng(1)
    for _ in range(3000):
        x, e = int(rng.integers(I32_MIN, I32_MAX)), int(rng.integers(0, 31))
        assert lib.aiot_rounding_divide_by_pot(x, e) == rdivpot_ref(x, e), (x, e)


def test_mul_by_quant_mult_double_rounding(lib):
    rng = np.random.default_rng(2)
    for _ in range(3000):
        x = int(rng.integers(-(2**20), 2**20))
        m = int(rng.integers(2**30, 2**31 - 1))
        s = int(rng.integers(-20, 4))
        left, right = max(s, 0), max(-s, 0)
        want = rdivpot_ref(srdhm_ref(x * 2**left, m), right)
        assert lib.aiot_mul_by_quant_mult(x, m, s) == want, (x, m, s)


def test_quantize_multiplier_hand_cases():
    assert quantize_multiplier(0.5) == (2**30, 0)
    assert quantize_multiplier(0.25) == (2**30, -1)
    assert quantize_multiplier(1.0) == (2**30, 1)
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(2.0**-40) == (0, 0)  # flushed like TFLM (shift < -31)
    m, s = quantize_multiplier(0.1)
    assert abs(m * 2.0**s / 2**31 - 0.1) < 1e-9 and 2**30 <= m < 2**31
    # a significand that rounds up to 2**31 moves to the next exponent
    assert quantize_multiplier(1 - 2.0**-40) == (2**30, 1)


def test_round_half_away_and_activation_ranges():
    assert [round_half_away(v) for v in (0.5, 1.5, 2.5, -0.5, -2.5, 2.4999999)] == [1, 2, 3, -1, -3, 2]
    # scale 1/16, zero point -128: relu6 tops out at -128 + 96
    assert activation_range("RELU6", 1 / 16, -128) == (-128, -32)
    assert activation_range("RELU", 0.1, 5) == (5, 127)
    assert activation_range("NONE", 0.1, 5) == (-128, 127)
    assert activation_range("RELU_N1_TO_1", 1 / 64, 0) == (-64, 64)


@pytest.mark.parametrize("rows, segs, seg_len", [(4, 1, 8), (9, 1, 7), (8, 3, 5), (3, 2, 4), (12, 1, 1)])
def test_packing_roundtrip_and_dot4(lib, rows, segs, seg_len):
    rng = np.random.default_rng(rows * 100 + seg_len)
    w = rng.integers(-127, 128, size=(rows, segs * seg_len), dtype=np.int8)
    packed = np.ascontiguousarray(pack_weights(w, segs, seg_len))
    assert packed.size == w.size
    full = rows - rows % 4
    base = packed.ctypes.data
    for g in range(0, full, 4):
        for s in range(segs):
            seg_ptr = base + g * segs * seg_len + s * 4 * seg_len
            for c in range(4):
                for k in range(seg_len):
                    assert lib.aiot_packed_at(seg_ptr, seg_len, c, k) == w[g + c, s * seg_len + k]
            x = np.ascontiguousarray(rng.integers(-128, 128, size=seg_len, dtype=np.int8))
            acc = (ctypes.c_int32 * 4)(1, 2, 3, 4)
            lib.aiot_dot4_s8(seg_ptr, x.ctypes.data, seg_len, acc)
            want = w[g : g + 4, s * seg_len : (s + 1) * seg_len].astype(np.int64) @ x.astype(np.int64)
            assert list(acc) == [int(v) + i + 1 for i, v in enumerate(want)]
    np.testing.assert_array_equal(packed[full * segs * seg_len :], w[full:].ravel())


def test_srdhm_oracle_tie_rule():
    # guard for the oracle itself: +0.5 rounds up, -0.5 rounds up to 0, -1.5 to -1
    assert srdhm_ref(1, 2**30) == 1 and srdhm_ref(-1, 2**30) == 0 and srdhm_ref(-3, 2**30) == -1
    assert math.isclose(srdhm_ref(2**20, 2**30), 2**19)


class _RqCh(ctypes.Structure):
    _fields_ = [("multiplier", ctypes.c_int32), ("pre_shift", ctypes.c_int32)]


class _Requant(ctypes.Structure):
    _fields_ = [("multiplier", ctypes.c_void_p), ("shift", ctypes.c_void_p), ("output_offset", ctypes.c_int32),
                ("act_min", ctypes.c_int32), ("act_max", ctypes.c_int32), ("per_channel", ctypes.c_uint8),
                ("fast", ctypes.POINTER(_RqCh))]


def test_fast_requantization_equals_double_rounding(lib):
    # The fast form (SMMULR on 2*acc, one add-and-shift rounding) against SRDHM + rounding
    # divide re-derived above, over its stated domain: |acc| < 2**30, right shifts 1..31.
    lib.aiot_requant_s8.restype = ctypes.c_int8
    lib.aiot_requant_s8.argtypes = [ctypes.POINTER(_Requant), ctypes.c_uint32, ctypes.c_int32]
    rng = np.random.default_rng(3)
    cases = []
    for r in range(1, 32):
        for m in (2**30, 2**31 - 1, int(rng.integers(2**30, 2**31 - 1)), 0):
            # accumulators whose result lands inside int8, ties (h = odd * 2**(r-1)) included
            for v in (-200, -129, -128, -3, -1, 0, 1, 2, 127, 128, 200):
                center = v * 2.0**r * 2**31 / max(m, 1)
                for acc in (int(center), int(center) - 1, int(center) + 1, 2 * v * 2 ** (r - 1), 2 * v * 2 ** (r - 1) - 1):
                    if abs(acc) < 2**30:
                        cases.append((acc, m, r))
        cases += [(int(a), int(rng.integers(0, 2**31 - 1)), r) for a in rng.integers(-(2**30) + 1, 2**30, 50)]
        cases += [(a, 2**31 - 1, r) for a in (2**30 - 1, -(2**30) + 1, -1, 1)]
    seen = set()
    for acc, m, r in cases:
        zp = int(rng.integers(-128, 128))
        lo, hi = sorted(int(v) for v in rng.integers(-128, 128, 2)) if rng.random() < 0.3 else (-128, 127)
        table = (_RqCh * 1)(_RqCh(m, r - 1))
        rq = _Requant(None, None, zp, lo, hi, 1, table)
        want = min(max(rdivpot_ref(srdhm_ref(acc, m), r) + zp, lo), hi)
        assert lib.aiot_requant_s8(ctypes.byref(rq), 0, acc) == want, (acc, m, r, zp, lo, hi)
        seen.add(want)
    assert len(seen) > 200  # the cases really spread over the int8 range, not just the clamps


def test_wide_packing_roundtrip_and_dot4(lib):
    from aiot.codegen.ops import pack_weights_wide

    lib.aiot_wide_at.restype = ctypes.c_int16
    lib.aiot_wide_at.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32]
    lib.aiot_dot4_s16w.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p]
    for rows, segs, seg_len in [(4, 1, 8), (9, 1, 7), (8, 3, 5), (3, 2, 4), (12, 1, 1)]:
        rng = np.random.default_rng(rows * 100 + seg_len)
        w = rng.integers(-128, 128, size=(rows, segs * seg_len), dtype=np.int8)
        wide = np.ascontiguousarray(pack_weights_wide(w, segs, seg_len))
        groups = -(-rows // 4)
        assert wide.dtype == np.int16 and wide.size == groups * 4 * segs * seg_len  # zero rows pad the last group
        base = wide.ctypes.data
        for g in range(groups):
            for s in range(segs):
                seg_ptr = base + 2 * (g * 4 * segs * seg_len + s * 4 * seg_len)
                for c in range(4):
                    for k in range(seg_len):
                        want = w[4 * g + c, s * seg_len + k] if 4 * g + c < rows else 0
                        assert lib.aiot_wide_at(seg_ptr, seg_len, c, k) == want
                x = np.ascontiguousarray(rng.integers(-128, 128, size=seg_len, dtype=np.int8))
                acc = (ctypes.c_int32 * 4)(1, -2, 3, -4)
                lib.aiot_dot4_s16w(seg_ptr, x.ctypes.data, seg_len, acc)
                rows_w = np.zeros((4, seg_len), np.int64)
                real = w[4 * g : 4 * g + 4, s * seg_len : (s + 1) * seg_len]
                rows_w[: len(real)] = real
                assert list(acc) == list(rows_w @ x.astype(np.int64) + np.array([1, -2, 3, -4]))


class _RsqrtParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("input_zero_point", ctypes.c_int32), ("output_zero_point", ctypes.c_int32),
                ("multiplier", ctypes.c_int32), ("shift", ctypes.c_int32)]


def test_rsqrt_below_its_zero_point_fails_like_tflite_micro(lib):
    # tflite-micro's RSQRT fails the Invoke on a value below the input zero point (no parity
    # model reaches one: their RSQRT inputs are non-negative by construction); at the zero
    # point it writes the type's maximum
    p = _RsqrtParams(3, -100, -128, 1 << 30, 1)
    out = np.zeros(3, np.int8)
    ok = np.array([-100, -99, 27], np.int8)
    assert lib.aiot_rsqrt_s8(ctypes.byref(p), ok.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p)) == 0
    assert out[0] == 127  # the zero point: the maximum
    assert out[1] > out[2]  # 1/sqrt falls
    bad = np.array([-100, -101, 0], np.int8)
    assert lib.aiot_rsqrt_s8(ctypes.byref(p), bad.ctypes.data_as(ctypes.c_void_p),
                             out.ctypes.data_as(ctypes.c_void_p)) == -3  # AIOT_ERR_DOMAIN
