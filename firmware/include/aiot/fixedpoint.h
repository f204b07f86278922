//! Engine building blocks: TFLM's fixed-point rounding primitives as static inline functions, so
//! every kernel's inner requantization compiles to a handful of instructions (no calls,
//! no 64-bit division helper). aiot/engine.h exports the same maths as functions.
#ifndef AIOT_ENGINE_FIXEDPOINT_H
#define AIOT_ENGINE_FIXEDPOINT_H

#include "aiot/engine.h"

// gemmlowp's nudge-then-truncate equals floor((a*b + 2^30) / 2^31) for every pair except
// INT32_MIN * INT32_MIN, so the 64-bit product only needs an add and a shift.
static inline int32_t aiot_fp_srdhm_nosat(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * (int64_t)b + (1LL << 30)) >> 31);
}

static inline int32_t aiot_fp_srdhm(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    return aiot_fp_srdhm_nosat(a, b);
}

static inline int32_t aiot_fp_rdivpot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)((1LL << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static inline int32_t aiot_fp_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return aiot_fp_rdivpot(aiot_fp_srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}

static inline int8_t aiot_fp_requant(const aiot_requant_t *rq, uint32_t channel, int32_t acc)
{
    const uint32_t c = rq->per_channel ? channel : 0;
    const int32_t shift = rq->shift[c];
    // Generated multipliers are >= 0, so the saturating case of SRDHM cannot occur.
    const int32_t x = shift > 0 ? (int32_t)((uint32_t)acc << shift) : acc;
    const int32_t h = aiot_fp_srdhm_nosat(x, rq->multiplier[c]);
    acc = (shift < 0 ? aiot_fp_rdivpot(h, -shift) : h) + rq->output_offset;
    acc = acc < rq->act_min ? rq->act_min : acc;
    acc = acc > rq->act_max ? rq->act_max : acc;
    return (int8_t)acc;
}

#endif
