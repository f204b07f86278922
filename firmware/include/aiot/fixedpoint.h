//! Engine building blocks: TFLM's fixed-point rounding primitives as static inline functions, so
//! every kernel's inner requantization compiles to a handful of instructions (no calls,
//! no 64-bit division helper). aiot/engine.h exports the same maths as functions.
#ifndef AIOT_ENGINE_FIXEDPOINT_H
#define AIOT_ENGINE_FIXEDPOINT_H

#include "aiot/engine.h"

static inline int32_t aiot_fp_srdhm(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    int64_t t = ab + (ab >= 0 ? (1LL << 30) : (1 - (1LL << 30)));
    // Division by 2^31 truncating toward zero, as C's '/' in the reference, without a call.
    if (t < 0) {
        t += (1LL << 31) - 1;
    }
    return (int32_t)(t >> 31);
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
    acc = aiot_fp_mbqm(acc, rq->multiplier[c], rq->shift[c]) + rq->output_offset;
    acc = acc < rq->act_min ? rq->act_min : acc;
    acc = acc > rq->act_max ? rq->act_max : acc;
    return (int8_t)acc;
}

#endif
