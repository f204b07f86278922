//! The 16x8 matmul-like layers (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED as a 1x1
//! convolution): int16 activations, int8 weights, TFLM's reference arithmetic. Portable C
//! on every core; the int8 kernels are untouched.
#include "aiot/fixedpoint.h"

#include <stddef.h>
#include <string.h>

int32_t aiot_mul_by_quant_mult64(int64_t x, int32_t multiplier, int32_t shift)
{
    // TFLM's int64 MultiplyByQuantizedMultiplier: the Q31 multiplier rounded to a Q15 one,
    // then a single rounding right shift by 15 - shift (shift is -31..7, so 8..46 bits).
    const int32_t reduced = multiplier < 0x7FFF0000 ? (multiplier + (1 << 15)) >> 16 : 0x7FFF;
    return aiot_rshift64_round(x, reduced, 15 - shift);
}

static inline int16_t requant16(const aiot_requant16_t *rq, uint32_t channel, int64_t acc)
{
    const uint32_t c = rq->per_channel ? channel : 0;
    int32_t v;
    if (rq->acc64) {
        // the generator stored TFLM's Q15 multiplier and the total right shift
        v = aiot_rshift64_round(acc, rq->multiplier[c], rq->shift[c]);
    } else {
        // an int32 accumulator wraps modulo 2^32 exactly as this truncation does
        v = aiot_fp_mbqm((int32_t)(uint32_t)(uint64_t)acc, rq->multiplier[c], rq->shift[c]);
    }
    v = v < rq->act_min ? rq->act_min : v;
    v = v > rq->act_max ? rq->act_max : v;
    return (int16_t)v;
}

// Speed mode (wide = 1): the weights widened to int16 and packed per group of four
// output channels (zero channels complete the last group), per kernel row, per pair of
// row values: [group][ky][pair][channel][2], a row of odd length ending in a pair whose
// second weight is 0. One input word (two int16 values) then meets four weight words.
#define AIOT_W16_PAIRS(row) (((row) + 1) >> 1)

// The int16 index of weight (oc, ky, k) (k = kx * in_c + ic along the kernel row).
static inline size_t w16_index(uint32_t oc, uint32_t ky, uint32_t k, uint32_t k_h, uint32_t row)
{
    return ((((size_t)(oc >> 2) * k_h + ky) * AIOT_W16_PAIRS(row) + (k >> 1)) * 4u + (oc & 3u)) * 2u + (k & 1u);
}

// s[j] += the dot product of channel j's packed row with the `pairs` input pairs at x;
// returns the weights past them. DSP cores: per pair one LDR of two input values, one
// LDM of four weight words, four SMLAD (6 instructions for 8 MACs). The sums wrap modulo
// 2^32; callers keep pairs <= 128 where they must not (|w x| <= 2^22, 2^23 per SMLAD).
static inline __attribute__((always_inline)) const int16_t *dot4_pairs(const int16_t *x, const int16_t *w,
                                                                       uint32_t pairs, int32_t s[4])
{
    int32_t s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
#ifdef AIOT_DSP
    if (pairs != 0u) {
        const int16_t *const x_end = x + 2u * pairs;
        uint32_t xw;
        __asm__ volatile("1:\n\t"
                         "ldr    %[xw], [%[x]], #4\n\t"  // unaligned word load (v7E-M, v8-M Main)
                         "ldmia  %[w]!, {r8, r9, r10, r11}\n\t"
                         "smlad  %[s0], %[xw], r8, %[s0]\n\t"
                         "smlad  %[s1], %[xw], r9, %[s1]\n\t"
                         "smlad  %[s2], %[xw], r10, %[s2]\n\t"
                         "smlad  %[s3], %[xw], r11, %[s3]\n\t"
                         "cmp    %[x], %[xe]\n\t"
                         "bne    1b\n\t"
                         : [s0] "+r"(s0), [s1] "+r"(s1), [s2] "+r"(s2), [s3] "+r"(s3), [x] "+r"(x), [w] "+r"(w),
                           [xw] "=&r"(xw)
                         : [xe] "r"(x_end)
                         : "r8", "r9", "r10", "r11", "cc", "memory");
    }
#else
    // modulo 2^32 as SMLAD (a wrapping int32 accumulator is TFLM's too)
    for (uint32_t i = 0; i < pairs; ++i, x += 2, w += 8) {
        s0 = (int32_t)((uint32_t)s0 + (uint32_t)(w[0] * x[0] + w[1] * x[1]));
        s1 = (int32_t)((uint32_t)s1 + (uint32_t)(w[2] * x[0] + w[3] * x[1]));
        s2 = (int32_t)((uint32_t)s2 + (uint32_t)(w[4] * x[0] + w[5] * x[1]));
        s3 = (int32_t)((uint32_t)s3 + (uint32_t)(w[6] * x[0] + w[7] * x[1]));
    }
#endif
    s[0] = s0;
    s[1] = s1;
    s[2] = s2;
    s[3] = s3;
    return w;
}

// TFLM's requantization of four int32 sums s (fits32) into y[0..n): the multipliers
// and shifts of channels oc.. (or the one per-tensor pair), the int16 clamp.
static inline void requant4_32(const aiot_requant16_t *rq, uint32_t oc, const int32_t s[4], uint32_t n, int16_t *y)
{
    const uint32_t c0 = rq->per_channel ? oc : 0u, dc = rq->per_channel ? 1u : 0u;
    const int32_t *mp = rq->multiplier + c0, *tp = rq->shift + c0;
    const int32_t lo = rq->act_min, hi = rq->act_max;
    for (uint32_t j = 0; j < n; ++j, mp += dc, tp += dc) {
        const int32_t m = *mp, total = *tp;
        int32_t v;
        if (rq->acc64 && total < 32) {
            const int64_t prod = (int64_t)s[j] * m;
            const uint32_t low = (uint32_t)prod, r = low + (1u << (total - 1));
            const uint32_t h = (uint32_t)((uint64_t)prod >> 32) + (r < low);
            v = (int32_t)((r >> total) | (h << (32 - total)));
        } else if (rq->acc64) {
            v = aiot_rshift64_round(s[j], m, total);
        } else {
            v = aiot_fp_mbqm(s[j], m, total);
        }
        v = v < lo ? lo : v;
        y[j] = (int16_t)(v > hi ? hi : v);
    }
}

// pixel_wide when every sum is an int32 (fits32): the SMLAD sums are the accumulators,
// from the bias on (or wrapping there as TFLM's int32 accumulator does).
static __attribute__((noinline)) void pixel_wide32(const aiot_conv16_params_t *p16, const int16_t *x, size_t step,
                                                   const int16_t *w, const int64_t *bias, int16_t *y)
{
    const uint32_t k_h = p16->geom.k_h, out_c = p16->geom.out_c;
    const uint32_t row = (uint32_t)p16->geom.k_w * p16->geom.in_c, full = row >> 1;
    for (uint32_t oc = 0; oc < out_c; oc += 4) {
        const uint32_t n = out_c - oc < 4u ? out_c - oc : 4u;
        int32_t s[4] = {0, 0, 0, 0};
        if (bias != NULL) {
            for (uint32_t j = 0; j < n; ++j) {
                s[j] = (int32_t)bias[oc + j];
            }
        }
        for (uint32_t ky = 0; ky < k_h; ++ky) {
            const int16_t *xr = x + ky * step;
            w = dot4_pairs(xr, w, full, s);
            if (row & 1u) {
                const int32_t v = xr[row - 1];
                for (uint32_t j = 0; j < 4; ++j) {
                    s[j] = (int32_t)((uint32_t)s[j] + (uint32_t)((int32_t)w[2 * j] * v));
                }
                w += 8;
            }
        }
        requant4_32(&p16->rq, oc, s, n, y + oc);
    }
}

// Every output channel of one pixel whose window rows are `row` = k_w * in_c contiguous
// values, `step` apart (the input itself, or a zero-padded copy of a border window):
// four channels per pass from the bias on, int32 partial sums of at most 128 pairs
// moved into the 64-bit sums TFLM keeps, then TFLM's requantization from the generator's
// hoisted multipliers. Not inlined: a function of its own keeps its values in registers.
static __attribute__((noinline)) void pixel_wide(const aiot_conv16_params_t *p16, const int16_t *x, size_t step,
                                                 const int16_t *w, const int64_t *bias, int16_t *y)
{
    const uint32_t k_h = p16->geom.k_h, out_c = p16->geom.out_c;
    const uint32_t row = (uint32_t)p16->geom.k_w * p16->geom.in_c, full = row >> 1;
    if (p16->rq.fits32) {
        pixel_wide32(p16, x, step, w, bias, y);
        return;
    }
    for (uint32_t oc = 0; oc < out_c; oc += 4) {
        int64_t acc[4];
        for (uint32_t j = 0; j < 4; ++j) {
            acc[j] = bias != NULL && oc + j < out_c ? bias[oc + j] : 0;
        }
        for (uint32_t ky = 0; ky < k_h; ++ky) {
            const int16_t *xr = x + ky * step;
            for (uint32_t done = 0; done < full;) {
                const uint32_t n = full - done > 128u ? 128u : full - done;
                int32_t s[4] = {0, 0, 0, 0};
                w = dot4_pairs(xr + 2u * done, w, n, s);
                for (uint32_t j = 0; j < 4; ++j) {
                    acc[j] += s[j];
                }
                done += n;
            }
            if (row & 1u) {  // the last value, against the first weight of its pair
                const int32_t v = xr[row - 1];
                for (uint32_t j = 0; j < 4; ++j) {
                    acc[j] += (int32_t)w[2 * j] * v;
                }
                w += 8;
            }
        }
        for (uint32_t j = 0; j < 4 && oc + j < out_c; ++j) {
            y[oc + j] = requant16(&p16->rq, oc + j, acc[j]);
        }
    }
}

//! Values of a border window copied to the stack (zeros in the padding, which add
//! nothing: int16 activations have zero point 0) for pixel_wide: 768 B, the int8 conv's
//! patch size; larger windows take the per-tap path.
#define AIOT_CONV16_PATCH 384

// One tap of a border window too large for the patch, against the packed weights.
static __attribute__((noinline)) int64_t tap_wide(const aiot_conv_params_t *p, const int16_t *w, const int16_t *x,
                                                  uint32_t oc, uint32_t ky, uint32_t kx)
{
    const uint32_t row = (uint32_t)p->k_w * p->in_c;
    int64_t acc = 0;
    for (uint32_t ic = 0; ic < p->in_c; ++ic) {
        acc += (int32_t)w[w16_index(oc, ky, kx * p->in_c + ic, p->k_h, row)] * x[ic];
    }
    return acc;
}

// DEPTHWISE_CONV_2D, speed mode (wide, fits32): weights int16 in the file's
// [tap][channel] order; per output pixel four channels per pass, each tap inside the input
// adding its products to int32 sums (taps in the padding are skipped, as in TFLM; their
// input would be the zero point 0 anyway). DSP cores, depth multiplier 1: per tap two
// input words and two weight words (two channels each), SMLABB and SMLATT (8 instructions
// for 4 MACs where the portable loop takes about 9 per MAC); multiplier 2: one input word
// for the four channels, each half doubled (PKHBT/PKHTB), the same four products; other
// multipliers and channel tails one product at a time.
static inline __attribute__((always_inline)) void depthwise_wide(const aiot_conv16_params_t *p16,
                                                                 const int16_t *input, const int16_t *w,
                                                                 const int64_t *bias, int16_t *output, uint32_t dm)
{
    const aiot_conv_params_t *p = &p16->geom;
    const int32_t in_h = p->in_h, in_w = p->in_w;
    const uint32_t c_n = p->out_c, in_c = p->in_c;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            int16_t *y = output + ((size_t)oy * p->out_w + ox) * c_n;
            for (uint32_t c = 0; c < c_n; c += 4) {
                const uint32_t n = c_n - c < 4u ? c_n - c : 4u;
                int32_t s[4] = {0, 0, 0, 0};
                for (uint32_t j = 0; j < n && bias != NULL; ++j) {
                    s[j] = (int32_t)bias[c + j];
                }
                for (int32_t ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = y0 + ky * p->dil_h;
                    if (iy < 0 || iy >= in_h) {
                        continue;
                    }
                    for (int32_t kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = x0 + kx * p->dil_w;
                        if (ix < 0 || ix >= in_w) {
                            continue;
                        }
                        const int16_t *x = input + ((size_t)iy * in_w + ix) * in_c;
                        const int16_t *wt = w + ((size_t)ky * p->k_w + kx) * c_n + c;
#ifdef AIOT_DSP
                        if (n == 4u && dm <= 2u) {
                            uint32_t xa, xb, wa, wb;
                            if (dm == 1u) {
                                memcpy(&xa, x + c, 4);  // unaligned word loads (v7E-M, v8-M Main allow them)
                                memcpy(&xb, x + c + 2, 4);
                            } else {  // channels 4i..4i+3 read inputs 2i, 2i, 2i+1, 2i+1: each half doubled
                                uint32_t xv;
                                memcpy(&xv, x + c / 2u, 4);
                                xa = (xv & 0xFFFFu) | (xv << 16);
                                xb = (xv & 0xFFFF0000u) | (xv >> 16);
                            }
                            memcpy(&wa, wt, 4);
                            memcpy(&wb, wt + 2, 4);
                            s[0] = __smlabb(xa, wa, s[0]);
                            s[1] = __smlatt(xa, wa, s[1]);
                            s[2] = __smlabb(xb, wb, s[2]);
                            s[3] = __smlatt(xb, wb, s[3]);
                            continue;
                        }
#endif
                        for (uint32_t j = 0; j < n; ++j) {
                            s[j] += (int32_t)wt[j] * x[(c + j) / dm];
                        }
                    }
                }
                requant4_32(&p16->rq, c, s, n, y + c);
            }
        }
    }
}

// depthwise_wide compiled for a depth multiplier of 1 (no division per product) and for any.
static __attribute__((noinline)) void depthwise_wide_dm1(const aiot_conv16_params_t *p16, const int16_t *input,
                                                         const int16_t *w, const int64_t *bias, int16_t *output)
{
    depthwise_wide(p16, input, w, bias, output, 1u);
}

static __attribute__((noinline)) void depthwise_wide_dm(const aiot_conv16_params_t *p16, const int16_t *input,
                                                        const int16_t *w, const int64_t *bias, int16_t *output)
{
    depthwise_wide(p16, input, w, bias, output, p16->geom.depth_multiplier);
}

aiot_status_t aiot_conv2d_s16(const aiot_conv16_params_t *p16, const int16_t *input, const void *filter,
                              const int64_t *bias, int16_t *output)
{
    if (p16 == NULL || input == NULL || filter == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    const aiot_conv_params_t *p = &p16->geom;
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, out_c = p->out_c;
    const uint32_t dm = p->depth_multiplier ? p->depth_multiplier : 1u;
    if (p16->depthwise && p16->wide) {  // the generator's choice: sums that fit in int32
        (dm == 1u ? depthwise_wide_dm1 : depthwise_wide_dm)(p16, input, (const int16_t *)filter, bias, output);
        return AIOT_OK;
    }
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            int16_t *y = output + ((size_t)oy * p->out_w + ox) * (size_t)out_c;
            if (p16->wide && p->dil_w == 1 && y0 >= 0 && y0 + (p->k_h - 1) * p->dil_h < in_h && x0 >= 0 &&
                x0 + p->k_w <= in_w) {
                pixel_wide(p16, input + ((size_t)y0 * in_w + x0) * (size_t)in_c, (size_t)p->dil_h * in_w * (size_t)in_c,
                           (const int16_t *)filter, bias, y);
                continue;
            }
            if (p16->wide && (uint32_t)p->k_h * p->k_w * (uint32_t)in_c <= AIOT_CONV16_PATCH) {
                int16_t patch[AIOT_CONV16_PATCH];
                int16_t *q = patch;
                for (int32_t ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = y0 + ky * p->dil_h;
                    for (int32_t kx = 0; kx < p->k_w; ++kx, q += in_c) {
                        const int32_t ix = x0 + kx * p->dil_w;
                        if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                            memset(q, 0, (size_t)in_c * sizeof(int16_t));
                        } else {
                            memcpy(q, input + ((size_t)iy * in_w + ix) * (size_t)in_c, (size_t)in_c * sizeof(int16_t));
                        }
                    }
                }
                pixel_wide(p16, patch, (size_t)p->k_w * (size_t)in_c, (const int16_t *)filter, bias, y);
                continue;
            }
            for (int32_t oc = 0; oc < out_c; ++oc) {
                int64_t acc = 0;
                for (int32_t ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = y0 + ky * p->dil_h;
                    if (iy < 0 || iy >= in_h) {
                        continue;  // padding taps are skipped, as in TFLM
                    }
                    for (int32_t kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = x0 + kx * p->dil_w;
                        if (ix < 0 || ix >= in_w) {
                            continue;
                        }
                        const int16_t *x = input + ((size_t)iy * in_w + ix) * (size_t)in_c;
                        const size_t tap = ((size_t)oc * p->k_h + ky) * p->k_w + kx;
                        if (p16->depthwise) {
                            const int8_t w = ((const int8_t *)filter)[((size_t)ky * p->k_w + kx) * (size_t)out_c + oc];
                            acc += (int64_t)w * x[(uint32_t)oc / dm];
                        } else if (p16->wide) {
                            acc += tap_wide(p, (const int16_t *)filter, x, (uint32_t)oc, (uint32_t)ky, (uint32_t)kx);
                        } else {
                            const int8_t *w = (const int8_t *)filter + tap * (size_t)in_c;
                            int32_t part = 0;  // |w * x| < 2^22: an int32 partial sum of up to 256 taps
                            for (int32_t ic = 0; ic < in_c; ++ic) {
                                part += (int32_t)w[ic] * x[ic];
                                if ((ic & 255) == 255) {
                                    acc += part;
                                    part = 0;
                                }
                            }
                            acc += part;
                        }
                    }
                }
                if (bias != NULL) {
                    acc += bias[oc];
                }
                y[oc] = requant16(&p16->rq, (uint32_t)oc, acc);
            }
        }
    }
    return AIOT_OK;
}
