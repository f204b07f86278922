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

// One kernel row's dot product against weights pre-widened to int16 (speed mode). DSP
// cores: SMLALD, two int16 x int16 products added into a 64-bit accumulator per
// instruction, exact (|w x| < 2^22); the int32 accumulator of an int32-bias CONV_2D is
// this sum modulo 2^32 (the caller truncates).
static inline int64_t dot_wide(const int16_t *x, const int16_t *w, int32_t n)
{
    int64_t acc = 0;
    int32_t i = 0;
#ifdef AIOT_DSP
    for (; i + 2 <= n; i += 2) {
        int32_t xx, ww;
        memcpy(&xx, x + i, 4);  // unaligned word loads (v7E-M, v8-M Main allow them)
        memcpy(&ww, w + i, 4);
        acc = __smlald(xx, ww, acc);
    }
#endif
    for (; i < n; ++i) {
        acc += (int32_t)w[i] * x[i];
    }
    return acc;
}

// Two output channels' dot products over one contiguous window row, added to a0/a1: the
// input pairs are loaded once for both channels. DSP cores: per two values one input
// word, two weight words and two SMLALD into the 64-bit sums (exact, as TFLM's), in
// assembly: GCC's own loop shuffles the accumulator pairs between registers.
static inline __attribute__((always_inline)) void dot2_wide(const int16_t *x, const int16_t *w0, const int16_t *w1,
                                                            int32_t n, int64_t *a0, int64_t *a1)
{
    int64_t s0 = *a0, s1 = *a1;
#ifdef AIOT_DSP
    if (n >= 2) {
        const int16_t *const x_end = x + (n & ~1);
        uint32_t l0 = (uint32_t)s0, h0 = (uint32_t)((uint64_t)s0 >> 32);
        uint32_t l1 = (uint32_t)s1, h1 = (uint32_t)((uint64_t)s1 >> 32);
        uint32_t xa, wa, wb;
        __asm__ volatile("1:\n\t"
                         "ldr    %[xa], [%[x]], #4\n\t"  // unaligned word loads (v7E-M, v8-M Main)
                         "ldr    %[wa], [%[w0]], #4\n\t"
                         "ldr    %[wb], [%[w1]], #4\n\t"
                         "smlald %[l0], %[h0], %[xa], %[wa]\n\t"
                         "smlald %[l1], %[h1], %[xa], %[wb]\n\t"
                         "cmp    %[x], %[xe]\n\t"
                         "bne    1b\n\t"
                         : [l0] "+r"(l0), [h0] "+r"(h0), [l1] "+r"(l1), [h1] "+r"(h1), [x] "+r"(x), [w0] "+r"(w0),
                           [w1] "+r"(w1), [xa] "=&r"(xa), [wa] "=&r"(wa), [wb] "=&r"(wb)
                         : [xe] "r"(x_end)
                         : "cc", "memory");
        s0 = (int64_t)(((uint64_t)h0 << 32) | l0);
        s1 = (int64_t)(((uint64_t)h1 << 32) | l1);
        n &= 1;
    }
#endif
    for (int32_t i = 0; i < n; ++i) {
        s0 += (int32_t)w0[i] * x[i];
        s1 += (int32_t)w1[i] * x[i];
    }
    *a0 = s0;
    *a1 = s1;
}

// Every output channel of one pixel whose window lies inside the input (speed mode):
// each kernel row is `row` = k_w * in_c contiguous values in the input (rows `step`
// apart) and in the weights; two channels per pass, the bias first, TFLM's requantization
// from the generator's hoisted multipliers. Not inlined: a small function of its own
// keeps the accumulators and pointers in registers.
static __attribute__((noinline)) void pixel_wide(const aiot_conv16_params_t *p16, const int16_t *x, size_t step,
                                                 const int16_t *w, const int64_t *bias, int16_t *y)
{
    const int32_t k_h = p16->geom.k_h, out_c = p16->geom.out_c;
    const int32_t row = p16->geom.k_w * p16->geom.in_c, taps = k_h * row;
    int32_t oc = 0;
    for (; oc + 2 <= out_c; oc += 2, w += 2 * taps) {
        int64_t a0 = bias != NULL ? bias[oc] : 0, a1 = bias != NULL ? bias[oc + 1] : 0;
        for (int32_t ky = 0; ky < k_h; ++ky) {
            dot2_wide(x + ky * step, w + ky * row, w + taps + ky * row, row, &a0, &a1);
        }
        y[oc] = requant16(&p16->rq, (uint32_t)oc, a0);
        y[oc + 1] = requant16(&p16->rq, (uint32_t)oc + 1, a1);
    }
    if (oc < out_c) {
        int64_t a0 = bias != NULL ? bias[oc] : 0;
        for (int32_t ky = 0; ky < k_h; ++ky) {
            a0 += dot_wide(x + ky * step, w + ky * row, row);
        }
        y[oc] = requant16(&p16->rq, (uint32_t)oc, a0);
    }
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
                            acc += dot_wide(x, (const int16_t *)filter + tap * (size_t)in_c, in_c);
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
