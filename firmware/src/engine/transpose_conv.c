//! TRANSPOSE_CONV (NHWC, batch 1, OHWI filter) as a gather: each output pixel sums the
//! taps whose input pixel lands on it, with the same integers TFLM's scatter into a
//! scratch buffer adds up (integer sums do not depend on their order), then the bias and
//! the per-channel requantization. No scratch buffer. int8: an int32 accumulator and the
//! input zero point; 16x8: int16 input (zero point 0), an int64 accumulator and bias,
//! TFLM's 64-bit requantization.
#include "aiot/fixedpoint.h"

#include <stddef.h>

// The input row (column) whose tap f lands on output row o, as o = i * stride - pad + f,
// or -1 when none does.
static inline int32_t tc_source(int32_t o, uint32_t pad, int32_t f, uint32_t stride, uint32_t n)
{
    const int32_t t = o + (int32_t)pad - f;
    if (t < 0 || t % (int32_t)stride != 0 || t / (int32_t)stride >= (int32_t)n) {
        return -1;
    }
    return t / (int32_t)stride;
}

// The gather over geometry `g` (an aiot_transpose_conv_params_t *), activations of type T:
// for each output value in order, `ACC acc` sums (x + OFFSET) * w over its taps, adds the
// bias, and OUT(acc, oc) is stored.
#define AIOT_TRANSPOSE_CONV_GATHER(g, T, input, weights, bias, output, ACC, OFFSET, OUT)                         \
    do {                                                                                                        \
        T *y_ = (output);                                                                                       \
        for (int32_t oy = 0; oy < (int32_t)(g)->out_h; ++oy) {                                                  \
            for (int32_t ox = 0; ox < (int32_t)(g)->out_w; ++ox) {                                              \
                for (uint32_t oc = 0; oc < (g)->out_c; ++oc) {                                                  \
                    ACC acc = 0;                                                                                \
                    for (int32_t fy = 0; fy < (int32_t)(g)->k_h; ++fy) {                                        \
                        const int32_t iy = tc_source(oy, (g)->pad_h, fy, (g)->stride_h, (g)->in_h);             \
                        if (iy < 0) {                                                                           \
                            continue;                                                                           \
                        }                                                                                       \
                        for (int32_t fx = 0; fx < (int32_t)(g)->k_w; ++fx) {                                    \
                            const int32_t ix = tc_source(ox, (g)->pad_w, fx, (g)->stride_w, (g)->in_w);         \
                            if (ix < 0) {                                                                       \
                                continue;                                                                       \
                            }                                                                                   \
                            const T *x = (input) + ((size_t)iy * (g)->in_w + (size_t)ix) * (g)->in_c;          \
                            const int8_t *w =                                                                   \
                                (weights) + (((size_t)oc * (g)->k_h + (size_t)fy) * (g)->k_w + (size_t)fx) *    \
                                                (g)->in_c;                                                      \
                            for (uint32_t ic = 0; ic < (g)->in_c; ++ic) {                                       \
                                acc += ((int32_t)x[ic] + (OFFSET)) * (int32_t)w[ic];                            \
                            }                                                                                   \
                        }                                                                                       \
                    }                                                                                           \
                    if ((bias) != NULL) {                                                                       \
                        acc += (bias)[oc];                                                                      \
                    }                                                                                           \
                    *y_++ = OUT(acc, oc);                                                                       \
                }                                                                                               \
            }                                                                                                   \
        }                                                                                                       \
    } while (0)

#define AIOT_TC_OUT8(acc, oc) aiot_fp_requant(&p->rq, (oc), (acc))

aiot_status_t aiot_transpose_conv_s8(const aiot_transpose_conv_params_t *p, const int8_t *input,
                                     const int8_t *weights, const int32_t *bias, int8_t *output)
{
    if (p == NULL || input == NULL || weights == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    if (p->stride_h == 0 || p->stride_w == 0) {
        return AIOT_ERR_PARAM;
    }
    AIOT_TRANSPOSE_CONV_GATHER(p, int8_t, input, weights, bias, output, int32_t, p->input_offset, AIOT_TC_OUT8);
    return AIOT_OK;
}

// TFLM's 16x8 TRANSPOSE_CONV: the products (|w x| < 2^22) summed in 64 bits, the int64 bias
// (an int32 one widened by the generator), MultiplyByQuantizedMultiplier's 64-bit form from
// the generator's hoisted Q15 multipliers and total shifts, the int16 activation clamp.
static inline int16_t tc_out16(const aiot_requant16_t *rq, uint32_t oc, int64_t acc)
{
    const uint32_t c = rq->per_channel ? oc : 0;
    int32_t v = aiot_rshift64_round(acc, rq->multiplier[c], rq->shift[c]);
    v = v < rq->act_min ? rq->act_min : v;
    return (int16_t)(v > rq->act_max ? rq->act_max : v);
}

#define AIOT_TC_OUT16(acc, oc) tc_out16(&p16->rq, (oc), (acc))

aiot_status_t aiot_transpose_conv_s16(const aiot_transpose_conv16_params_t *p16, const int16_t *input,
                                      const int8_t *weights, const int64_t *bias, int16_t *output)
{
    if (p16 == NULL || input == NULL || weights == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    const aiot_transpose_conv_params_t *p = &p16->geom;
    if (p->stride_h == 0 || p->stride_w == 0 || !p16->rq.acc64) {
        return AIOT_ERR_PARAM;
    }
    AIOT_TRANSPOSE_CONV_GATHER(p, int16_t, input, weights, bias, output, int64_t, 0, AIOT_TC_OUT16);
    return AIOT_OK;
}
