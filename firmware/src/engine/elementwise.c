//! Per-element int8 kernels: requantize (QUANTIZE int8->int8, RELU, RELU6), LEAKY_RELU, clamp,
//! float boundary conversions, and broadcasting ADD/SUB/MUL as in TFLM's reference ops.
#include "aiot/fixedpoint.h"

#include <math.h>
#include <stddef.h>

static int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

aiot_status_t aiot_requantize_s8(const aiot_requantize_params_t *p, const int8_t *input, int8_t *output)
{
    if (p == NULL || input == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    for (uint32_t i = 0; i < p->size; ++i) {
        const int32_t v = aiot_fp_mbqm((int32_t)input[i] - p->input_zero_point, p->multiplier, p->shift);
        output[i] = (int8_t)clamp_i32(v + p->output_zero_point, p->act_min, p->act_max);
    }
    return AIOT_OK;
}

// LEAKY_RELU and the plain clamp (RELU6) for int8 and (16x8) int16 tensors: one body each.
#define AIOT_ACTIVATION_KERNELS(T, SUFFIX, LO, HI)                                                               \
    aiot_status_t aiot_leaky_relu_##SUFFIX(const aiot_leaky_relu_params_t *p, const T *input, T *output)         \
    {                                                                                                             \
        if (p == NULL || input == NULL || output == NULL) {                                                       \
            return AIOT_ERR_NULL;                                                                                 \
        }                                                                                                         \
        for (uint32_t i = 0; i < p->size; ++i) {                                                                  \
            const int32_t x = (int32_t)input[i] - p->input_zero_point;                                            \
            const int32_t v = x >= 0 ? aiot_fp_mbqm(x, p->identity_multiplier, p->identity_shift)                \
                                     : aiot_fp_mbqm(x, p->alpha_multiplier, p->alpha_shift);                      \
            output[i] = (T)clamp_i32(v + p->output_zero_point, LO, HI);                                           \
        }                                                                                                         \
        return AIOT_OK;                                                                                           \
    }                                                                                                             \
                                                                                                                  \
    aiot_status_t aiot_clamp_##SUFFIX(uint32_t size, int32_t lo, int32_t hi, const T *input, T *output)          \
    {                                                                                                             \
        if (input == NULL || output == NULL) {                                                                    \
            return AIOT_ERR_NULL;                                                                                 \
        }                                                                                                         \
        for (uint32_t i = 0; i < size; ++i) {                                                                     \
            output[i] = (T)clamp_i32(input[i], lo, hi);                                                           \
        }                                                                                                         \
        return AIOT_OK;                                                                                           \
    }

AIOT_ACTIVATION_KERNELS(int8_t, s8, -128, 127)
AIOT_ACTIVATION_KERNELS(int16_t, s16, -32768, 32767)

// TFLM's AffineQuantize of one value before the clamp: round(x / scale) in float (half
// away from zero) plus the zero point.
static inline int32_t quantize_f32(float x, float scale, int32_t zero_point)
{
    const float q = roundf(x / scale);  // TfLiteRound is round-half-away-from-zero, like roundf
    int32_t v;
    if (q >= 2147483520.0f) {
        v = INT32_MAX - 65536;
    } else if (q <= -2147483520.0f) {
        v = INT32_MIN + 65536;
    } else if (q != q) {
        v = 0;  // NaN: the zero point (what the float -> int conversion of a Cortex-M gives)
    } else {
        v = (int32_t)q;
    }
    return v + zero_point;
}

// The float boundary kernels of an int8 model and (16x8) of an int16 one.
#define AIOT_BOUNDARY_KERNELS(T, SUFFIX, LO, HI)                                                                 \
    aiot_status_t aiot_quantize_f32_##SUFFIX(uint32_t size, float scale, int32_t zero_point, const float *input,  \
                                             T *output)                                                           \
    {                                                                                                             \
        if (input == NULL || output == NULL) {                                                                    \
            return AIOT_ERR_NULL;                                                                                 \
        }                                                                                                         \
        if (!(scale > 0.0f)) {                                                                                    \
            return AIOT_ERR_PARAM;                                                                                \
        }                                                                                                         \
        for (uint32_t i = 0; i < size; ++i) {                                                                     \
            output[i] = (T)clamp_i32(quantize_f32(input[i], scale, zero_point), LO, HI);                          \
        }                                                                                                         \
        return AIOT_OK;                                                                                           \
    }                                                                                                             \
                                                                                                                  \
    aiot_status_t aiot_dequantize_##SUFFIX##_f32(uint32_t size, float scale, int32_t zero_point, const T *input,  \
                                                 float *output)                                                   \
    {                                                                                                             \
        if (input == NULL || output == NULL) {                                                                    \
            return AIOT_ERR_NULL;                                                                                 \
        }                                                                                                         \
        for (uint32_t i = 0; i < size; ++i) {                                                                     \
            output[i] = scale * (float)((int32_t)input[i] - zero_point);                                          \
        }                                                                                                         \
        return AIOT_OK;                                                                                           \
    }

AIOT_BOUNDARY_KERNELS(int8_t, s8, -128, 127)
AIOT_BOUNDARY_KERNELS(int16_t, s16, -32768, 32767)

// Walks the 5-D output index space and yields each input's flat offset.
#define AIOT_BCAST_LOOP(bc, BODY)                                                                                  \
    do {                                                                                                           \
        uint32_t o_ = 0;                                                                                           \
        for (uint32_t i0 = 0; i0 < (bc)->out_dims[0]; ++i0)                                                        \
            for (uint32_t i1 = 0; i1 < (bc)->out_dims[1]; ++i1)                                                    \
                for (uint32_t i2 = 0; i2 < (bc)->out_dims[2]; ++i2)                                                \
                    for (uint32_t i3 = 0; i3 < (bc)->out_dims[3]; ++i3)                                            \
                        for (uint32_t i4 = 0; i4 < (bc)->out_dims[4]; ++i4, ++o_) {                                \
                            const uint32_t a_ = i0 * (bc)->in1_strides[0] + i1 * (bc)->in1_strides[1] +            \
                                                i2 * (bc)->in1_strides[2] + i3 * (bc)->in1_strides[3] +            \
                                                i4 * (bc)->in1_strides[4];                                         \
                            const uint32_t b_ = i0 * (bc)->in2_strides[0] + i1 * (bc)->in2_strides[1] +            \
                                                i2 * (bc)->in2_strides[2] + i3 * (bc)->in2_strides[3] +            \
                                                i4 * (bc)->in2_strides[4];                                         \
                            BODY                                                                                   \
                        }                                                                                          \
    } while (0)

// TFLM's general ADD/SUB/SQUARED_DIFFERENCE of one pair (int8 and int16 alike; the clamp is
// the caller's range). A squared difference stays below 2^30: |sx - sy| <= 2^15 (int16,
// left shift 0) or 255 << 7 (int8).
static inline int32_t add_value(const aiot_add_params_t *p, int32_t a, int32_t b)
{
    const int32_t x = (a + p->input1_offset) * (1 << p->left_shift);
    const int32_t y = (b + p->input2_offset) * (1 << p->left_shift);
    const int32_t sx = aiot_fp_mbqm(x, p->input1_multiplier, p->input1_shift);
    const int32_t sy = aiot_fp_mbqm(y, p->input2_multiplier, p->input2_shift);
    const int32_t raw = p->kind == 2 ? (sx - sy) * (sx - sy) : (p->kind ? sx - sy : sx + sy);
    const int32_t out = aiot_fp_mbqm(raw, p->output_multiplier, p->output_shift) + p->output_offset;
    return clamp_i32(out, p->act_min, p->act_max);
}

static int8_t add_one(const aiot_add_params_t *p, int8_t a, int8_t b)
{
    return (int8_t)add_value(p, a, b);
}

// MultiplyByQuantizedMultiplier for |x| < 2^30, multiplier >= 0 and shift <= 0 (the
// caller checks): SRDHM is then SMMULR(2x, m) exactly, and the rounding right shift by
// r >= 1 is ((h - [h < 0]) >> (r - 1) + 1) >> 1 (see aiot_fp_requant_fast).
static inline int32_t mbqm_small(int32_t x, int32_t multiplier, int32_t right)
{
    const int32_t h = aiot_fp_smmulr((int32_t)((uint32_t)x << 1), multiplier);
    return right == 0 ? h : (((h + (h >> 31)) >> (right - 1)) + 1) >> 1;
}

aiot_status_t aiot_add_s8(const aiot_add_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *output)
{
    if (p == NULL || in1 == NULL || in2 == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    // |(x + offset) << left_shift| <= 255 << 20 < 2^28, the rescaled inputs are no larger
    // and their sum stays below 2^29: the small form is exact whenever every shift is a
    // right shift (the converter's usual case); the general one serves the rest.
    const int small = p->kind < 2 && p->left_shift <= 20 && p->input1_shift <= 0 && p->input2_shift <= 0 && p->output_shift <= 0 &&
                      p->input1_multiplier >= 0 && p->input2_multiplier >= 0 && p->output_multiplier >= 0;
    if (!p->shape.broadcast && small) {
        const aiot_add_params_t q = *p;  // local: the int8 stores could alias the params
        const int32_t r1 = -q.input1_shift, r2 = -q.input2_shift, ro = -q.output_shift;
        for (uint32_t i = 0; i < q.shape.size; ++i) {
            const int32_t sx = mbqm_small(((int32_t)in1[i] + q.input1_offset) * (1 << q.left_shift), q.input1_multiplier, r1);
            const int32_t sy = mbqm_small(((int32_t)in2[i] + q.input2_offset) * (1 << q.left_shift), q.input2_multiplier, r2);
            const int32_t out = mbqm_small(q.kind ? sx - sy : sx + sy, q.output_multiplier, ro) + q.output_offset;
            output[i] = (int8_t)clamp_i32(out, q.act_min, q.act_max);
        }
    } else if (!p->shape.broadcast) {
        for (uint32_t i = 0; i < p->shape.size; ++i) {
            output[i] = add_one(p, in1[i], in2[i]);
        }
    } else {
        AIOT_BCAST_LOOP(&p->shape, output[o_] = add_one(p, in1[a_], in2[b_]););
    }
    return AIOT_OK;
}

static inline int32_t mul_value(const aiot_mul_params_t *p, int32_t a, int32_t b)
{
    const int32_t prod = (a + p->input1_offset) * (b + p->input2_offset);
    const int32_t out = aiot_fp_mbqm(prod, p->output_multiplier, p->output_shift) + p->output_offset;
    return clamp_i32(out, p->act_min, p->act_max);
}

static int8_t mul_one(const aiot_mul_params_t *p, int8_t a, int8_t b)
{
    return (int8_t)mul_value(p, a, b);
}

aiot_status_t aiot_mul_s8(const aiot_mul_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *output)
{
    if (p == NULL || in1 == NULL || in2 == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    if (!p->shape.broadcast) {
        for (uint32_t i = 0; i < p->shape.size; ++i) {
            output[i] = mul_one(p, in1[i], in2[i]);
        }
    } else {
        AIOT_BCAST_LOOP(&p->shape, output[o_] = mul_one(p, in1[a_], in2[b_]););
    }
    return AIOT_OK;
}

static inline int32_t min_max_one(int32_t a, int32_t b, uint8_t is_max)
{
    return (a > b) == (is_max != 0) ? a : b;
}

// MAXIMUM/MINIMUM of raw int8 and (16x8) int16 values.
#define AIOT_MIN_MAX_KERNEL(T, SUFFIX)                                                                           \
    aiot_status_t aiot_min_max_##SUFFIX(const aiot_bcast_t *shape, uint8_t is_max, const T *in1, const T *in2,   \
                                        T *output)                                                                \
    {                                                                                                             \
        if (shape == NULL || in1 == NULL || in2 == NULL || output == NULL) {                                      \
            return AIOT_ERR_NULL;                                                                                 \
        }                                                                                                         \
        if (!shape->broadcast) {                                                                                  \
            for (uint32_t i = 0; i < shape->size; ++i) {                                                          \
                output[i] = (T)min_max_one(in1[i], in2[i], is_max);                                               \
            }                                                                                                     \
        } else {                                                                                                  \
            AIOT_BCAST_LOOP(shape, output[o_] = (T)min_max_one(in1[a_], in2[b_], is_max););                       \
        }                                                                                                         \
        return AIOT_OK;                                                                                           \
    }

AIOT_MIN_MAX_KERNEL(int8_t, s8)
AIOT_MIN_MAX_KERNEL(int16_t, s16)

aiot_status_t aiot_transpose_s8(const aiot_bcast_t *walk, const int8_t *input, int8_t *output)
{
    if (walk == NULL || input == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    AIOT_BCAST_LOOP(walk, output[o_] = input[a_]; (void)b_;);
    return AIOT_OK;
}

aiot_status_t aiot_strided_slice_s8(const aiot_bcast_t *walk, uint32_t first, const int8_t *input, int8_t *output)
{
    if (walk == NULL || input == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    // a_ wraps modulo 2^32 along the negative steps; first + a_ is the true offset, which
    // lies inside the input, so the wrapped sum is exact
    AIOT_BCAST_LOOP(walk, output[o_] = input[(uint32_t)(first + a_)]; (void)b_;);
    return AIOT_OK;
}

// ---- int16 (the 16x8 mode) ----------------------------------------------------------

aiot_status_t aiot_add_s16(const aiot_add_params_t *p, const int16_t *in1, const int16_t *in2, int16_t *output)
{
    if (p == NULL || in1 == NULL || in2 == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    AIOT_BCAST_LOOP(&p->shape, output[o_] = (int16_t)add_value(p, in1[a_], in2[b_]););
    return AIOT_OK;
}

aiot_status_t aiot_mul_s16(const aiot_mul_params_t *p, const int16_t *in1, const int16_t *in2, int16_t *output)
{
    if (p == NULL || in1 == NULL || in2 == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    AIOT_BCAST_LOOP(&p->shape, output[o_] = (int16_t)mul_value(p, in1[a_], in2[b_]););
    return AIOT_OK;
}

aiot_status_t aiot_requantize_x16(const aiot_requantize_params_t *p, uint8_t in16, const void *input, uint8_t out16,
                                  void *output)
{
    if (p == NULL || input == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    for (uint32_t i = 0; i < p->size; ++i) {
        const int32_t x = in16 ? ((const int16_t *)input)[i] : ((const int8_t *)input)[i];
        const int32_t v = clamp_i32(aiot_fp_mbqm(x - p->input_zero_point, p->multiplier, p->shift) + p->output_zero_point,
                                    p->act_min, p->act_max);
        if (out16) {
            ((int16_t *)output)[i] = (int16_t)v;
        } else {
            ((int8_t *)output)[i] = (int8_t)v;
        }
    }
    return AIOT_OK;
}
