//! Engine building blocks: TFLM's fixed-point rounding primitives as static inline functions, so
//! every kernel's inner requantization compiles to a handful of instructions (no calls,
//! no 64-bit division helper). aiot/engine.h exports the same maths as functions.
#ifndef AIOT_ENGINE_FIXEDPOINT_H
#define AIOT_ENGINE_FIXEDPOINT_H

#include "aiot/engine.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#define AIOT_DSP 1
#endif

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
    const int32_t mask = (int32_t)((1u << exponent) - 1u);  // exponent is 0..31
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

// (a * b + 2^31) >> 32: one SMMULR with the DSP extension.
static inline int32_t aiot_fp_smmulr(int32_t a, int32_t b)
{
#ifdef AIOT_DSP
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((int64_t)a * (int64_t)b + (1LL << 31)) >> 32);
#endif
}

// The fast form of aiot_fp_requant (the caller guarantees of aiot_rq_ch_t hold).
// 2 * acc cannot overflow, so h = SMMULR(2 * acc, m) = floor((acc * m + 2^30) / 2^31):
// SRDHM without its saturating case (m >= 0). RoundingDivideByPOT(h, r) rounds half away
// from zero, i.e. floor((h - [h < 0] + 2^(r-1)) / 2^r), which equals
// ((h - [h < 0]) >> (r - 1)) + 1) >> 1 (floor division nests). [acc < 0] may stand in
// for [h < 0]: they differ only when h == 0, where both give 0. |h| <= |acc| < 2^30, so
// nothing overflows.
static inline int32_t aiot_fp_requant_fast(const aiot_rq_ch_t *q, int32_t acc)
{
    const int32_t h = aiot_fp_smmulr((int32_t)((uint32_t)acc << 1), q->multiplier);
    return (((h + (acc >> 31)) >> q->pre_shift) + 1) >> 1;
}

static inline int8_t aiot_fp_clamp_s8(const aiot_requant_t *rq, int32_t v)
{
    v += rq->output_offset;
    v = v < rq->act_min ? rq->act_min : v;
    v = v > rq->act_max ? rq->act_max : v;
    return (int8_t)v;
}

static inline int8_t aiot_fp_requant(const aiot_requant_t *rq, uint32_t channel, int32_t acc)
{
    const uint32_t c = rq->per_channel ? channel : 0;
    if (rq->fast != NULL) {
        return aiot_fp_clamp_s8(rq, aiot_fp_requant_fast(&rq->fast[c], acc));
    }
    const int32_t shift = rq->shift[c];
    // Generated multipliers are >= 0, so the saturating case of SRDHM cannot occur.
    const int32_t x = shift > 0 ? (int32_t)((uint32_t)acc << shift) : acc;
    const int32_t h = aiot_fp_srdhm_nosat(x, rq->multiplier[c]);
    acc = (shift < 0 ? aiot_fp_rdivpot(h, -shift) : h) + rq->output_offset;
    acc = acc < rq->act_min ? rq->act_min : acc;
    acc = acc > rq->act_max ? rq->act_max : acc;
    return (int8_t)acc;
}

// Fast-form requantization of one output with the fields held in registers.
static inline int8_t aiot_fp_out_fast(const aiot_rq_ch_t *q, int32_t acc, int32_t zp, int32_t lo, int32_t hi)
{
    int32_t v = aiot_fp_requant_fast(q, acc) + zp;
    v = v < lo ? lo : v;
    return (int8_t)(v > hi ? hi : v);
}

// Requantize four consecutive channels o..o+3 (the multi-row kernels' epilogue), the
// accumulators passed by value so they stay in registers. Forced inline: GCC otherwise
// keeps one out-of-line copy and the accumulators make a round trip through memory. The
// generic form calls the out-of-line aiot_requant_s8 to keep that copy small.
static inline __attribute__((always_inline)) void aiot_fp_requant4(const aiot_requant_t *rq, uint32_t o, int32_t a0, int32_t a1, int32_t a2,
                                    int32_t a3, int8_t *y)
{
    const aiot_rq_ch_t *fast = rq->fast;
    if (fast != NULL) {
        const uint32_t s = rq->per_channel ? 1u : 0u;
        const aiot_rq_ch_t *q = fast + o * s;
        const int32_t zp = rq->output_offset, lo = rq->act_min, hi = rq->act_max;
        y[0] = aiot_fp_out_fast(q, a0, zp, lo, hi);
        y[1] = aiot_fp_out_fast(q + s, a1, zp, lo, hi);
        y[2] = aiot_fp_out_fast(q + 2u * s, a2, zp, lo, hi);
        y[3] = aiot_fp_out_fast(q + 3u * s, a3, zp, lo, hi);
        return;
    }
    y[0] = aiot_requant_s8(rq, o, a0);
    y[1] = aiot_requant_s8(rq, o + 1u, a1);
    y[2] = aiot_requant_s8(rq, o + 2u, a2);
    y[3] = aiot_requant_s8(rq, o + 3u, a3);
}

#endif
