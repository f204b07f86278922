"""Generation-time quantization maths, mirroring what TFLite Micro computes in Prepare().

Scales are float32 in the flatbuffer; TFLM widens them to double before dividing, and
rounds half away from zero (std::round). Getting any of this 1 ULP different changes
outputs by 1 LSB, so each step below follows TFLM's order of operations."""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def round_half_away(x: float) -> int:
    """std::round on a double: exact (no x + 0.5 shortcut, which double-rounds)."""
    if x < 0:
        return -round_half_away(-x)
    r = math.floor(x)
    return int(r + 1) if x - r >= 0.5 else int(r)


def quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLM QuantizeMultiplier: m == q * 2**shift with q a Q31 significand."""
    if m == 0.0:
        return 0, 0
    frac, shift = math.frexp(m)
    q = round_half_away(frac * (1 << 31))
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q), int(shift)


def f32(x: float) -> float:
    """Round a Python float to float32 and back (what a C float holds)."""
    return float(np.float32(x))


def quantize_value(value: float, scale: float, zero_point: int) -> int:
    """zero_point + round(value / scale) in float32, as TFLM's activation ranges do."""
    q = float(np.float32(value) / np.float32(scale))
    return int(zero_point) + round_half_away(q)


INT16_MIN, INT16_MAX = -32768, 32767


def activation_range(activation: str, scale: float, zero_point: int, dtype: str = "int8") -> tuple[int, int]:
    """TFLM CalculateActivationRangeQuantized for int8 (or, with dtype "int16", int16) outputs."""
    lo, hi = (INT16_MIN, INT16_MAX) if dtype == "int16" else (INT8_MIN, INT8_MAX)
    if activation == "RELU":
        return max(lo, quantize_value(0.0, scale, zero_point)), hi
    if activation == "RELU6":
        return max(lo, quantize_value(0.0, scale, zero_point)), min(hi, quantize_value(6.0, scale, zero_point))
    if activation == "RELU_N1_TO_1":
        return max(lo, quantize_value(-1.0, scale, zero_point)), min(hi, quantize_value(1.0, scale, zero_point))
    if activation == "NONE":
        return lo, hi
    raise ValueError(activation)


def conv_multipliers(input_scale: float, filter_scales: np.ndarray, output_scale: float) -> tuple[list[int], list[int]]:
    """Per-channel (or single) multipliers: double(in) * double(filter) / double(out)."""
    mults, shifts = [], []
    for fs in np.asarray(filter_scales, dtype=np.float32).ravel():
        m, s = quantize_multiplier(float(input_scale) * float(fs) / float(output_scale))
        mults.append(m)
        shifts.append(s)
    return mults, shifts
