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

#include <string.h>

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

// (int32_t)((x * m + 2^(total - 1)) >> total) in 64 bits, the tail of TFLM's int64
// MultiplyByQuantizedMultiplier (m its Q15 multiplier, 0..0x7FFF; total = 15 - shift, 8..46). A
// shift below 32 takes the low word from two 32-bit halves (UMULL, MLA, ADDS/ADC, two
// shifts and an ORR) instead of a 64-bit variable shift; the int32 truncation is TFLM's.
static inline int32_t aiot_rshift64_round(int64_t x, int32_t m, int32_t total)
{
    if (total < 32 && m >= 0) {
        const uint64_t lo = (uint64_t)(uint32_t)x * (uint32_t)m;
        const uint32_t hi = (uint32_t)(lo >> 32) + (uint32_t)(int32_t)(x >> 32) * (uint32_t)m;
        const uint32_t r = (uint32_t)lo + (1u << (total - 1));
        const uint32_t h = hi + (r < (uint32_t)lo);
        return (int32_t)((r >> total) | (h << (32 - total)));
    }
    return (int32_t)((x * m + ((int64_t)1 << (total - 1))) >> total);
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
    return aiot_fp_clamp_s8(rq, shift < 0 ? aiot_fp_rdivpot(h, -shift) : h);
}

// The fast form in registers, for kernels that requantize four channels at a time. The
// final halving of aiot_fp_requant_fast absorbs the output zero point:
// floor((t + 1) / 2) + zp == floor((t + 1 + 2 zp) / 2), so bias1 = 2 * zp + 1.
typedef struct {
    int32_t bias1;  //!< 2 * output_offset + 1
    int32_t lo, hi; //!< activation clamp (-128 <= lo <= hi <= 127)
    uint32_t lo4, hi4;  //!< lo and hi in each byte (DSP byte-wise clamp)
} aiot_rq4_t;

static inline aiot_rq4_t aiot_fp_rq4(const aiot_requant_t *rq)
{
    const aiot_rq4_t r = {2 * rq->output_offset + 1, rq->act_min, rq->act_max,
                          (uint8_t)rq->act_min * 0x01010101u, (uint8_t)rq->act_max * 0x01010101u};
    return r;
}

static inline __attribute__((always_inline)) int32_t aiot_fp_fast2(const aiot_rq_ch_t *q, int32_t a, int32_t bias1)
{
    const int32_t h = aiot_fp_smmulr((int32_t)((uint32_t)a << 1), q->multiplier);
    return ((h + (a >> 31)) >> q->pre_shift) + bias1;  // twice the output, before rounding
}

// Requantize four channels with tables q[0..3] into y[0..3]. Forced inline so the
// accumulators stay in registers.
static inline __attribute__((always_inline)) void aiot_fp_requant4_fast(const aiot_rq_ch_t *q, const aiot_rq4_t *r,
                                                                       int32_t a0, int32_t a1, int32_t a2, int32_t a3,
                                                                       int8_t *y)
{
#ifdef AIOT_DSP
    // SSAT #8 with ASR #1 does the last halving and the int8 saturation in one; lo >= -128
    // and hi <= 127, so clamping after it is exact. The clamp runs on four bytes at once
    // (SSUB8 sets the GE flags per byte, SEL picks per byte) and one STR writes them
    // (v7E-M and v8-M Main allow unaligned word stores).
    uint32_t packed = (uint32_t)__ssat(aiot_fp_fast2(q, a0, r->bias1) >> 1, 8), ge;
    const int32_t v1 = __ssat(aiot_fp_fast2(q + 1, a1, r->bias1) >> 1, 8);
    const int32_t v2 = __ssat(aiot_fp_fast2(q + 2, a2, r->bias1) >> 1, 8);
    const int32_t v3 = __ssat(aiot_fp_fast2(q + 3, a3, r->bias1) >> 1, 8);
    __asm__("bfi    %[p], %[v1], #8, #8\n\t"
            "bfi    %[p], %[v2], #16, #8\n\t"
            "bfi    %[p], %[v3], #24, #8\n\t"
            "ssub8  %[t], %[p], %[lo]\n\t"
            "sel    %[p], %[p], %[lo]\n\t"
            "ssub8  %[t], %[p], %[hi]\n\t"
            "sel    %[p], %[hi], %[p]"
            : [p] "+&r"(packed), [t] "=&r"(ge)
            : [v1] "r"(v1), [v2] "r"(v2), [v3] "r"(v3), [lo] "r"(r->lo4), [hi] "r"(r->hi4)
            : "cc");
    memcpy(y, &packed, 4);
#else
    const int32_t a[4] = {a0, a1, a2, a3};
    for (uint32_t j = 0; j < 4; ++j) {
        int32_t v = aiot_fp_fast2(&q[j], a[j], r->bias1) >> 1;
        v = v < r->lo ? r->lo : v;
        v = v > r->hi ? r->hi : v;
        y[j] = (int8_t)v;
    }
#endif
}

// Generic requantization of channels o..o+3 (tables not in the fast form).
static inline void aiot_fp_requant4(const aiot_requant_t *rq, uint32_t o, int32_t a0, int32_t a1, int32_t a2,
                                    int32_t a3, int8_t *y)
{
    // One call for the four (kept out of line: inlined, its registers slow the kernels'
    // fast-form paths down).
    aiot_requant4_s8(rq, o, a0, a1, a2, a3, y);
}

#endif
