//! CONV_2D and DEPTHWISE_CONV_2D int8, NHWC, batch 1, TFLM reference arithmetic
//! (per-channel requantization, dilation). Output pixels whose window lies inside the
//! image run packed dot products per kernel row; border pixels sum w * (x - zero point)
//! over the taps inside the image with the same SIMD blocks (border_bias), or, without
//! it, take the general one-tap-at-a-time path.
#include "aiot/simd.h"

#include <stddef.h>
#include <string.h>

static int check(const aiot_conv_params_t *p, const void *in, const void *f, const void *b, const void *out)
{
    if (p == NULL || in == NULL || f == NULL || b == NULL || out == NULL) {
        return AIOT_ERR_NULL;
    }
    if (p->stride_h == 0 || p->stride_w == 0 || p->dil_h == 0 || p->dil_w == 0) {
        return AIOT_ERR_PARAM;
    }
    return AIOT_OK;
}

// One output pixel, every channel, window possibly crossing the border. `wide` selects
// the int16 filter layout (all channels in groups of four) over the packed int8 one.
static void conv_pixel_general(const aiot_conv_params_t *p, const int8_t *input, const void *filter, int wide,
                               const int32_t *bias, int32_t iy0, int32_t ix0, int8_t *y)
{
    const uint32_t seg = p->seg_len;
    const uint32_t full = wide ? (p->out_c + 3u) & ~3u : p->out_c & ~3u;
    const int8_t *f8 = (const int8_t *)filter;
    const int16_t *f16 = (const int16_t *)filter;
    for (uint32_t oc = 0; oc < p->out_c; ++oc) {
        // element offset of this channel's (group's) first kernel row
        const size_t base = oc < full ? (size_t)(oc >> 2) * 4u * p->k_h * seg
                                      : (size_t)full * p->k_h * seg + (size_t)(oc - full) * p->k_h * seg;
        int32_t acc = bias[oc];
        for (uint32_t ky = 0; ky < p->k_h; ++ky) {
            const int32_t iy = iy0 + (int32_t)(ky * p->dil_h);
            const size_t row = oc < full ? base + (size_t)ky * 4u * seg : base + (size_t)ky * seg;
            for (uint32_t kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = ix0 + (int32_t)(kx * p->dil_w);
                const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
                const int8_t *x = inside ? input + ((size_t)iy * p->in_w + (size_t)ix) * p->in_c : NULL;
                for (uint32_t ic = 0; ic < p->in_c; ++ic) {
                    const uint32_t k = kx * p->in_c + ic;
                    const int32_t w = wide ? aiot_wide_at(f16 + row, seg, oc & 3u, k)
                                           : oc < full ? aiot_packed_at(f8 + row, seg, oc & 3u, k) : f8[row + k];
                    acc += w * (inside ? (int32_t)x[ic] : p->input_zero_point);
                }
            }
        }
        y[oc] = aiot_requant_s8(&p->rq, oc, acc);
    }
}


#ifdef AIOT_DSP
static inline uint32_t zp_pair(int32_t zp)
{
    return ((uint32_t)zp & 0xFFFFu) * 0x00010001u;
}
#endif

// One weight of a packed (int8) or wide (int16) segment of `seg` columns, channel j of
// its group of four, column k (engine.h describes both layouts).
static inline __attribute__((always_inline)) int32_t seg_weight(const void *w, int wide, uint32_t seg, uint32_t j,
                                                                uint32_t k)
{
    return wide ? aiot_wide_at((const int16_t *)w, seg, j, k) : aiot_packed_at((const int8_t *)w, seg, j, k);
}

// acc[j] += sum over columns k in [k0, k1) of w_j[k] * (x[k - k0] - zp), for the four
// channels of one packed or wide segment. Whole aligned blocks of four columns run as
// SIMD (the zero point subtracted per 16-bit lane), the rest column by column.
static inline __attribute__((always_inline)) void seg_range4(const void *w, int wide, uint32_t seg, const int8_t *x,
                                                             uint32_t k0, uint32_t k1, int32_t zp, int32_t acc[4])
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
#ifdef AIOT_DSP
    const uint32_t len4 = seg & ~3u;
    const uint32_t zp2 = zp_pair(zp);
#endif
    uint32_t k = k0;
    while (k < k1) {
#ifdef AIOT_DSP
        const uint32_t kb = k & ~3u;
        if (kb + 4u <= len4) {
            // A block of four columns; columns outside [k0, k1) read the zero point, so
            // their x - zp lanes are 0 and add nothing.
            uint32_t xw;
            if (kb == k && k + 4u <= k1) {
                xw = aiot_load32(x + (k - k0));
            } else {
                int8_t b4[4] = {(int8_t)zp, (int8_t)zp, (int8_t)zp, (int8_t)zp};
                const uint32_t end = k1 < kb + 4u ? k1 : kb + 4u;
                for (uint32_t j = k; j < end; ++j) {
                    b4[j - kb] = x[j - k0];
                }
                memcpy(&xw, b4, 4);
            }
            const uint32_t x02 = (uint32_t)__ssub16(__sxtb16(xw), zp2);
            const uint32_t x13 = (uint32_t)__ssub16((uint32_t)aiot_sxtb16_ror8(xw), zp2);
            if (wide) {
                const int8_t *b = (const int8_t *)((const int16_t *)w + 4u * kb);
                a0 = __smlad(aiot_load32(b), x02, a0);
                a0 = __smlad(aiot_load32(b + 4), x13, a0);
                a1 = __smlad(aiot_load32(b + 8), x02, a1);
                a1 = __smlad(aiot_load32(b + 12), x13, a1);
                a2 = __smlad(aiot_load32(b + 16), x02, a2);
                a2 = __smlad(aiot_load32(b + 20), x13, a2);
                a3 = __smlad(aiot_load32(b + 24), x02, a3);
                a3 = __smlad(aiot_load32(b + 28), x13, a3);
            } else {
                const int8_t *b = (const int8_t *)w + 4u * kb;
                const uint32_t w0 = aiot_load32(b), w1 = aiot_load32(b + 4);
                const uint32_t w2 = aiot_load32(b + 8), w3 = aiot_load32(b + 12);
                a0 = __smlad(__sxtb16(w0), x02, a0);
                a0 = __smlad((uint32_t)aiot_sxtb16_ror8(w0), x13, a0);
                a1 = __smlad(__sxtb16(w1), x02, a1);
                a1 = __smlad((uint32_t)aiot_sxtb16_ror8(w1), x13, a1);
                a2 = __smlad(__sxtb16(w2), x02, a2);
                a2 = __smlad((uint32_t)aiot_sxtb16_ror8(w2), x13, a2);
                a3 = __smlad(__sxtb16(w3), x02, a3);
                a3 = __smlad((uint32_t)aiot_sxtb16_ror8(w3), x13, a3);
            }
            k = kb + 4u;
            continue;
        }
#endif
        const int32_t xv = (int32_t)x[k - k0] - zp;
        a0 += seg_weight(w, wide, seg, 0, k) * xv;
        a1 += seg_weight(w, wide, seg, 1, k) * xv;
        a2 += seg_weight(w, wide, seg, 2, k) * xv;
        a3 += seg_weight(w, wide, seg, 3, k) * xv;
        ++k;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

// The valid taps of a window: rows ky with iy0 + ky * dil_h inside the image (a range,
// as dilation keeps them ordered), columns kx with ix0 + kx * dil_w inside.
typedef struct {
    uint32_t ky0, ky1, kx0, kx1;
} taps_t;

static inline taps_t valid_taps(int32_t i0, int32_t k, int32_t dil, int32_t n, int32_t j0, int32_t kk, int32_t djl,
                                int32_t m)
{
    taps_t t;
    int32_t a = 0, b = k;
    while (a < b && i0 + a * dil < 0) ++a;
    while (b > a && i0 + (b - 1) * dil >= n) --b;
    t.ky0 = (uint32_t)a;
    t.ky1 = (uint32_t)b;
    a = 0;
    b = kk;
    while (a < b && j0 + a * djl < 0) ++a;
    while (b > a && j0 + (b - 1) * djl >= m) --b;
    t.kx0 = (uint32_t)a;
    t.kx1 = (uint32_t)b;
    return t;
}

static inline __attribute__((always_inline)) void store4(const aiot_conv_params_t *c, const aiot_rq4_t *r4,
                                                         uint32_t oc, const int32_t acc[4], int8_t *y)
{
    if (oc + 4u <= c->out_c && c->rq.fast != NULL) {
        aiot_fp_requant4_fast(c->rq.fast + oc, r4, acc[0], acc[1], acc[2], acc[3], y + oc);
    } else if (oc + 4u <= c->out_c) {
        aiot_fp_requant4(&c->rq, oc, acc[0], acc[1], acc[2], acc[3], y + oc);
    } else {  // zero-padded rows of the last wide group: computed, never stored
        for (uint32_t j = 0; oc + j < c->out_c; ++j) {
            y[oc + j] = aiot_requant_s8(&c->rq, oc + j, acc[j]);
        }
    }
}

// One output pixel whose window crosses the border (dil_w == 1): per group of four
// channels, border_bias plus w * (x - zero point) over the rows and columns inside.
static inline __attribute__((always_inline)) void conv_pixel_border(const aiot_conv_params_t *c,
                                                                    const aiot_rq4_t *r4, const int8_t *input,
                                                                    const void *filter, int wide, int32_t iy0,
                                                                    int32_t ix0, int8_t *y)
{
    const taps_t t = valid_taps(iy0, c->k_h, c->dil_h, c->in_h, ix0, c->k_w, 1, c->in_w);
    const uint32_t seg = c->seg_len;
    const uint32_t k0 = t.kx0 * c->in_c, k1 = t.kx1 * c->in_c;
    const uint32_t groups_end = wide ? (c->out_c + 3u) & ~3u : c->out_c & ~3u;
    const int32_t zp = c->input_zero_point;
    const int8_t *f8 = (const int8_t *)filter;
    const int16_t *f16 = (const int16_t *)filter;
    for (uint32_t oc = 0; oc < groups_end; oc += 4) {
        int32_t acc[4];
        for (uint32_t j = 0; j < 4; ++j) {
            acc[j] = oc + j < c->out_c ? c->border_bias[oc + j] : 0;
        }
        for (uint32_t ky = t.ky0; ky < t.ky1 && k0 < k1; ++ky) {
            const size_t row = ((size_t)oc * c->k_h + 4u * ky) * seg;
            const int8_t *x = input + ((size_t)(iy0 + (int32_t)(ky * c->dil_h)) * c->in_w + (size_t)(ix0 + (int32_t)t.kx0)) * c->in_c;
            seg_range4(wide ? (const void *)(f16 + row) : (const void *)(f8 + row), wide, seg, x, k0, k1, zp, acc);
        }
        store4(c, r4, oc, acc, y);
    }
    for (uint32_t oc = groups_end; oc < c->out_c; ++oc) {  // packed mode's plain rows
        int32_t acc = c->border_bias[oc];
        for (uint32_t ky = t.ky0; ky < t.ky1; ++ky) {
            const int8_t *w = f8 + ((size_t)groups_end * c->k_h + (size_t)(oc - groups_end) * c->k_h + ky) * seg;
            const int8_t *x = input + ((size_t)(iy0 + (int32_t)(ky * c->dil_h)) * c->in_w + (size_t)(ix0 + (int32_t)t.kx0)) * c->in_c;
            for (uint32_t k = k0; k < k1; ++k) {
                acc += (int32_t)w[k] * ((int32_t)x[k - k0] - zp);
            }
        }
        y[oc] = aiot_requant_s8(&c->rq, oc, acc);
    }
}

// One output pixel whose window lies inside the image (or in a patch): per group of four
// channels, the dot products of its k_h kernel rows (`row_step` apart) with the packed or
// wide filter rows of seg_len columns.
static inline __attribute__((always_inline)) void conv_pixel_inside(const aiot_conv_params_t *cp,
                                                                    const aiot_rq4_t *r4, const int8_t *x0,
                                                                    size_t row_step, const void *filter, int wide,
                                                                    const int32_t *bias, int8_t *y)
{
    // Scalars, not a copy of the parameters: called per pixel, and the asm's memory
    // clobber would make the compiler materialise a copied struct every time.
    const uint32_t k_h = cp->k_h, out_c = cp->out_c, seg = cp->seg_len;
    const aiot_requant_t *rqp = &cp->rq;
    const aiot_rq_ch_t *const fast = cp->rq.fast;
    const uint32_t full = out_c & ~3u;
#ifdef AIOT_DSP
    if (wide && (seg & 3u) == 0) {
        // Accumulators in registers from the bias on, one assembly loop per kernel row
        // (13 instructions per 4 columns x 4 channels, two blocks per iteration): the
        // generic helper keeps them in an array that the asm's memory clobber spills.
        const int16_t *w = (const int16_t *)filter;
        const uint32_t blocks = seg >> 2;
        uint32_t oc = 0;
        for (; oc < full; oc += 4) {
            int32_t a0 = bias[oc], a1 = bias[oc + 1], a2 = bias[oc + 2], a3 = bias[oc + 3];
            const int8_t *xr = x0;
            for (uint32_t ky = 0; ky < k_h; ++ky, xr += row_step) {
                const int8_t *x = xr;
                uint32_t xw, x02;
                if (blocks & 1u) {
                    __asm__ volatile(AIOT_WIDE_BLOCK
                                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x),
                                       [w] "+r"(w), [xw] "=&r"(xw), [x02] "=&r"(x02)
                                     :
                                     : "r8", "r9", "r10", "r11", "memory");
                }
                if (blocks >= 2u) {
                    const int8_t *const x_end = x + 4u * (blocks & ~1u);
                    __asm__ volatile("1:\n\t" AIOT_WIDE_BLOCK AIOT_WIDE_BLOCK
                                     "cmp    %[x], %[xe]\n\t"
                                     "bne    1b\n\t"
                                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x),
                                       [w] "+r"(w), [xw] "=&r"(xw), [x02] "=&r"(x02)
                                     : [xe] "r"(x_end)
                                     : "r8", "r9", "r10", "r11", "cc", "memory");
                }
            }
            if (fast != NULL) {
                aiot_fp_requant4_fast(fast + oc, r4, a0, a1, a2, a3, y + oc);
            } else {
                aiot_fp_requant4(rqp, oc, a0, a1, a2, a3, y + oc);
            }
        }
        if (oc < out_c) {  // the zero-padded last group: computed, only real channels stored
            int32_t acc[4] = {0, 0, 0, 0};
            const int8_t *xr = x0;
            for (uint32_t ky = 0; ky < k_h; ++ky, xr += row_step) {
                w = aiot_dot4_wide(w, xr, seg, acc);
            }
            for (uint32_t j = 0; oc + j < out_c; ++j) {
                y[oc + j] = aiot_requant_s8(rqp, oc + j, acc[j] + bias[oc + j]);
            }
        }
        return;
    }
#endif
    if (wide) {
        const int16_t *w = (const int16_t *)filter;
        for (uint32_t oc = 0; oc < out_c; oc += 4) {
            int32_t acc[4] = {0, 0, 0, 0};
            const int8_t *xr = x0;
            for (uint32_t ky = 0; ky < k_h; ++ky, xr += row_step) {
                w = aiot_dot4_wide(w, xr, seg, acc);
            }
            if (oc + 4 <= out_c && fast != NULL) {
                aiot_fp_requant4_fast(fast + oc, r4, acc[0] + bias[oc], acc[1] + bias[oc + 1],
                                      acc[2] + bias[oc + 2], acc[3] + bias[oc + 3], y + oc);
            } else if (oc + 4 <= out_c) {
                aiot_fp_requant4(rqp, oc, acc[0] + bias[oc], acc[1] + bias[oc + 1], acc[2] + bias[oc + 2],
                                 acc[3] + bias[oc + 3], y + oc);
            } else {  // zero-padded rows of the last group: computed, never stored
                for (uint32_t j = 0; oc + j < out_c; ++j) {
                    y[oc + j] = aiot_requant_s8(rqp, oc + j, acc[j] + bias[oc + j]);
                }
            }
        }
        return;
    }
    const int8_t *w = (const int8_t *)filter;
    for (uint32_t oc = 0; oc < full; oc += 4) {
        int32_t acc[4] = {bias[oc], bias[oc + 1], bias[oc + 2], bias[oc + 3]};
        const int8_t *xr = x0;
        for (uint32_t ky = 0; ky < k_h; ++ky, w += 4u * seg, xr += row_step) {
            aiot_dot4_s8(w, xr, seg, acc);
        }
        if (fast != NULL) {
            aiot_fp_requant4_fast(fast + oc, r4, acc[0], acc[1], acc[2], acc[3], y + oc);
        } else {
            aiot_fp_requant4(rqp, oc, acc[0], acc[1], acc[2], acc[3], y + oc);
        }
    }
    for (uint32_t oc = full; oc < out_c; ++oc) {
        int32_t acc = bias[oc];
        const int8_t *xr = x0;
        for (uint32_t ky = 0; ky < k_h; ++ky, w += seg, xr += row_step) {
            acc += aiot_dot1_s8(w, xr, seg);
        }
        y[oc] = aiot_requant_s8(rqp, oc, acc);
    }
}

//! Largest window (k_h rows of seg_len bytes) a border pixel copies to the stack.
#ifndef AIOT_CONV_PATCH_BYTES
#ifdef AIOT_DSP
#define AIOT_CONV_PATCH_BYTES 768u
#else
#define AIOT_CONV_PATCH_BYTES 0u  // small cores: small stacks; the border path needs none
#endif
#endif

// A border pixel (dil_w == 1, k_h * seg_len <= AIOT_CONV_PATCH_BYTES): its window
// copied row by row with the zero point where it lies outside, then the inside kernel.
static inline __attribute__((always_inline)) void conv_pixel_patch(const aiot_conv_params_t *c,
                                                                   const aiot_rq4_t *r4, const int8_t *input,
                                                                   const void *filter, int wide, const int32_t *bias,
                                                                   int32_t iy0, int32_t ix0, int8_t *y)
{
    uint32_t words[(AIOT_CONV_PATCH_BYTES + 3u) / 4u + 1u];
    int8_t *patch = (int8_t *)words;
    const uint32_t seg = c->seg_len;
    const taps_t t = valid_taps(iy0, c->k_h, c->dil_h, c->in_h, ix0, c->k_w, 1, c->in_w);
    const uint32_t k0 = t.kx0 * c->in_c, k1 = t.kx1 * c->in_c;
    memset(patch, (int8_t)c->input_zero_point, (size_t)c->k_h * seg);
    for (uint32_t ky = t.ky0; ky < t.ky1 && k0 < k1; ++ky) {
        const int8_t *x = input + ((size_t)(iy0 + (int32_t)(ky * c->dil_h)) * c->in_w + (size_t)(ix0 + (int32_t)t.kx0)) * c->in_c;
        memcpy(patch + (size_t)ky * seg + k0, x, k1 - k0);
    }
    conv_pixel_inside(c, r4, patch, seg, filter, wide, bias, y);
}

// Both filter layouts share the pixel walk; forced inline into each entry point, so
// `wide` is a constant there and the linker keeps only the variant a model uses.
static inline __attribute__((always_inline)) aiot_status_t conv2d_any(const aiot_conv_params_t *p, const int8_t *input, const void *filter,
                                       int wide, const int32_t *bias, int8_t *output)
{
    const int rc = check(p, input, filter, bias, output);
    if (rc != AIOT_OK) {
        return (aiot_status_t)rc;
    }
    // A local copy of the parameters: the int8 output stores may alias anything, which
    // would make the compiler reload every field inside the pixel and channel loops.
    const aiot_conv_params_t c = *p;
    const uint32_t seg = c.seg_len;
    if (seg < (uint32_t)c.k_w * c.in_c) {
        return AIOT_ERR_PARAM;
    }
    const size_t row_stride = (size_t)c.in_w * c.in_c;
    // The packed rows may be longer than the window (zero weights): those reads must stay
    // inside the input tensor, so pixels too close to its end take the border path.
    const size_t in_bytes = (size_t)c.in_h * row_stride;
    const size_t overhang = seg - (uint32_t)c.k_w * c.in_c;
    const aiot_requant_t rq = c.rq;  // local: the int8 stores could alias the params
    const aiot_rq4_t r4 = aiot_fp_rq4(&rq);
    const int border_fast = c.border_bias != NULL && c.dil_w == 1;
    int8_t *y = output;
    for (int32_t oy = 0; oy < c.out_h; ++oy) {
        const int32_t iy0 = oy * c.stride_h - c.pad_top;
        const int rows_inside = iy0 >= 0 && iy0 + (c.k_h - 1) * c.dil_h < c.in_h;
        for (int32_t ox = 0; ox < c.out_w; ++ox, y += c.out_c) {
            const int32_t ix0 = ox * c.stride_w - c.pad_left;
            const size_t last_end = ((size_t)(iy0 + (c.k_h - 1) * c.dil_h) * c.in_w + (size_t)(ix0 + c.k_w)) * c.in_c;
            if (!rows_inside || c.dil_w != 1 || ix0 < 0 || ix0 + c.k_w > c.in_w || last_end + overhang > in_bytes) {
                if (c.dil_w == 1 && (size_t)c.k_h * seg <= AIOT_CONV_PATCH_BYTES) {
                    // The window copied with the padding as the zero point: the inside
                    // kernel on it gives TFLM's integers against the folded bias.
                    conv_pixel_patch(&c, &r4, input, filter, wide, bias, iy0, ix0, y);
                } else if (border_fast) {
                    conv_pixel_border(&c, &r4, input, filter, wide, iy0, ix0, y);
                } else {
                    conv_pixel_general(p, input, filter, wide, bias, iy0, ix0, y);
                }
                continue;
            }
            const int8_t *x0 = input + (size_t)iy0 * row_stride + (size_t)ix0 * c.in_c;
            conv_pixel_inside(&c, &r4, x0, (size_t)c.dil_h * row_stride, filter, wide, bias, y);
        }
    }
    return AIOT_OK;
}

aiot_status_t aiot_conv2d_s8(const aiot_conv_params_t *p, const int8_t *input, const int8_t *filter,
                             const int32_t *bias, int8_t *output)
{
    return conv2d_any(p, input, filter, 0, bias, output);
}

aiot_status_t aiot_conv2d_s8_wide(const aiot_conv_params_t *p, const int8_t *input, const int16_t *filter,
                                  const int32_t *bias, int8_t *output)
{
    return conv2d_any(p, input, filter, 1, bias, output);
}

// Depthwise weight of output channel oc at tap t (= ky * k_w + kx) in either layout.
static inline int32_t dw_weight(const aiot_conv_params_t *c, const void *filter, int wide, uint32_t t, uint32_t oc)
{
    if (!wide) {
        return ((const int8_t *)filter)[(size_t)t * c->out_c + oc];
    }
    const uint32_t taps = (uint32_t)c->k_h * c->k_w, full = c->out_c & ~3u;
    const int16_t *f = (const int16_t *)filter;
    if (oc < full) {
        static const uint8_t slot[4] = {0, 2, 1, 3};
        return f[(size_t)(oc & ~3u) * taps + 4u * t + slot[oc & 3u]];
    }
    return f[(size_t)full * taps + (size_t)t * (c->out_c - full) + (oc - full)];
}

// The groups of four channels (depth multiplier 1) of one output pixel over the taps in
// `t`: per channel, bias + sum of w * (x - zp) (zp = 0 for a window inside the image,
// whose bias has the zero point folded in; the unfolded bias with the real zero point
// for one that crosses the border). `x` is the input at the first tap inside.
static __attribute__((noinline)) void dw_pixel_groups(const aiot_conv_params_t *c, const aiot_rq4_t *r4,
                                                                  const int8_t *x, const void *filter, int wide,
                                                                  uint32_t full, taps_t t, const int32_t *bias,
                                                                  int32_t zp, int8_t *y)
{
    const size_t col_step = (size_t)c->dil_w * c->in_c;
    const size_t row_step = (size_t)c->dil_h * c->in_w * c->in_c;
    const uint32_t n = t.kx1 - t.kx0, rows = t.ky1 - t.ky0;
    const uint32_t first_tap = t.ky0 * c->k_w + t.kx0, skip = c->k_w - n;  // taps left out per row
#ifdef AIOT_DSP
    const uint32_t zp2 = zp_pair(zp);
#endif
    const int16_t *wg = (const int16_t *)filter + 4u * first_tap;  // wide: group 0 at the first tap
    const uint32_t group_taps = 4u * c->k_h * c->k_w;
    for (uint32_t ch = 0; ch < full; ch += 4, wg += group_taps) {
        int32_t a0 = bias[ch], a1 = bias[ch + 1], a2 = bias[ch + 2], a3 = bias[ch + 3];
        const int8_t *xrow = x + ch;
        const int16_t *w16 = wg;
        const int8_t *w8 = (const int8_t *)filter + (size_t)first_tap * c->out_c + ch;
        for (uint32_t r = 0; r < rows && n != 0; ++r, xrow += row_step) {
            const int8_t *xr = xrow;
#ifdef AIOT_DSP
            uint32_t left = n, xw, x02, w02, w13;
            if (wide) {
                // Per tap: LDR of four input channels, LDRD of the weight pairs, two
                // SXTB16, four SMLAxx, loop: 10 instructions for 4 MACs. Assembly because
                // GCC keeps a separate tap counter and recomputes addresses (14).
#define AIOT_DW_WIDE(SUB)                                                                                   \
    __asm__ volatile("1:\n\t"                                                                             \
                     "ldr    %[xw], [%[xr]]\n\t"                                                          \
                     "ldrd   %[w02], %[w13], [%[w]], #8\n\t"                                              \
                     "add    %[xr], %[xr], %[cs]\n\t"                                                     \
                     "sxtb16 %[x02], %[xw]\n\t"                                                           \
                     "sxtb16 %[xw], %[xw], ror #8\n\t" SUB                                                \
                     "smlabb %[a0], %[x02], %[w02], %[a0]\n\t"                                            \
                     "smlatt %[a2], %[x02], %[w02], %[a2]\n\t"                                            \
                     "smlabb %[a1], %[xw], %[w13], %[a1]\n\t"                                             \
                     "smlatt %[a3], %[xw], %[w13], %[a3]\n\t"                                             \
                     "subs   %[n], %[n], #1\n\t"                                                          \
                     "bne    1b\n\t"                                                                      \
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xr] "+r"(xr),          \
                       [w] "+r"(w16), [n] "+r"(left), [xw] "=&r"(xw), [x02] "=&r"(x02), [w02] "=&r"(w02), \
                       [w13] "=&r"(w13)                                                                   \
                     : [cs] "r"(col_step), [zp] "r"(zp2)                                                  \
                     : "cc", "memory")
                if (zp != 0) {
                    AIOT_DW_WIDE("ssub16 %[x02], %[x02], %[zp]\n\tssub16 %[xw], %[xw], %[zp]\n\t");
                } else {
                    AIOT_DW_WIDE("");
                }
#undef AIOT_DW_WIDE
                w16 += 4u * skip;
            } else {
                const uint32_t ws = c->out_c;
                for (; left != 0; --left, xr += col_step, w8 += ws) {
                    xw = aiot_load32(xr);
                    x02 = __sxtb16(xw);
                    xw = (uint32_t)aiot_sxtb16_ror8(xw);
                    if (zp != 0) {
                        x02 = (uint32_t)__ssub16(x02, zp2);
                        xw = (uint32_t)__ssub16(xw, zp2);
                    }
                    const uint32_t ww = aiot_load32(w8);
                    w02 = __sxtb16(ww);
                    w13 = (uint32_t)aiot_sxtb16_ror8(ww);
                    a0 = __smlabb(x02, w02, a0);
                    a2 = __smlatt(x02, w02, a2);
                    a1 = __smlabb(xw, w13, a1);
                    a3 = __smlatt(xw, w13, a3);
                }
                w8 += (size_t)skip * ws;
            }
#else
            for (uint32_t kx = 0; kx < n; ++kx, xr += col_step) {
                const int32_t x0 = xr[0] - zp, x1 = xr[1] - zp, x2 = xr[2] - zp, x3 = xr[3] - zp;
                if (wide) {
                    a0 += w16[0] * x0;
                    a2 += w16[1] * x2;
                    a1 += w16[2] * x1;
                    a3 += w16[3] * x3;
                    w16 += 4;
                } else {
                    a0 += w8[0] * x0;
                    a1 += w8[1] * x1;
                    a2 += w8[2] * x2;
                    a3 += w8[3] * x3;
                    w8 += c->out_c;
                }
            }
            w16 += 4u * skip;
            w8 += (size_t)skip * c->out_c;
#endif
        }
        if (c->rq.fast != NULL) {
            aiot_fp_requant4_fast(c->rq.fast + ch, r4, a0, a1, a2, a3, y + ch);
        } else {
            aiot_fp_requant4(&c->rq, ch, a0, a1, a2, a3, y + ch);
        }
    }
}

// One channel of one output pixel, the padding read as the zero point against the
// folded bias (any depth multiplier, any layout).
static int8_t dw_channel_general(const aiot_conv_params_t *c, const int8_t *input, const void *filter, int wide,
                                 const int32_t *bias, int32_t iy0, int32_t ix0, uint32_t oc)
{
    const uint32_t ic = oc / c->depth_multiplier;
    int32_t acc = bias[oc];
    for (int32_t ky = 0; ky < c->k_h; ++ky) {
        const int32_t iy = iy0 + ky * c->dil_h;
        for (int32_t kx = 0; kx < c->k_w; ++kx) {
            const int32_t ix = ix0 + kx * c->dil_w;
            const int32_t wv = dw_weight(c, filter, wide, (uint32_t)(ky * c->k_w + kx), oc);
            const int inside = iy >= 0 && iy < c->in_h && ix >= 0 && ix < c->in_w;
            const int32_t xv = inside ? input[((size_t)iy * c->in_w + ix) * c->in_c + ic] : c->input_zero_point;
            acc += wv * xv;
        }
    }
    return aiot_fp_requant(&c->rq, oc, acc);
}

#ifdef AIOT_DSP
//! Most taps (k_h * k_w) a depthwise window may have for the table-driven inside path.
#define AIOT_DW_MAX_TAPS 49u
//! Most channels for which border pixels take the table path (a stack row of zero points).
#define AIOT_DW_ZP_ROW 512u

// The groups of four channels of one pixel, wide filters: one assembly loop over all
// taps, each tap's channel-0 address base + tab[t]: for an inside pixel base is its
// window and tab the per-layer tap offsets; for a border pixel base is 0 and tab holds
// addresses, a tap in the padding pointing at a row of zero points (what the folded
// bias expects). No per-row bookkeeping: 11 instructions per tap, border or not.
static inline __attribute__((always_inline)) void dw_pixel_table_any(const aiot_conv_params_t *c,
                                                                     const aiot_rq4_t *r4, uint32_t base,
                                                                     const uint32_t *tab_all, const void *filter,
                                                                     int wide, uint32_t full, uint32_t taps,
                                                                     const int32_t *bias, int8_t *y)
{
    const int16_t *w = (const int16_t *)filter;
    for (uint32_t ch = 0; ch < full; ch += 4) {
        int32_t a0 = bias[ch], a1 = bias[ch + 1], a2 = bias[ch + 2], a3 = bias[ch + 3];
        const uint32_t *tab = tab_all;
        const uint32_t xc = base + ch;
        uint32_t left = taps, xw, x02, w02, w13;
        if (wide) {
            __asm__ volatile("1:\n\t"
                             "ldr    %[xw], [%[tab]], #8\n\t"
                             "ldrd   %[w02], %[w13], [%[w]], #8\n\t"
                             "ldr    %[xw], [%[x], %[xw]]\n\t"
                             "sxtb16 %[x02], %[xw]\n\t"
                             "sxtb16 %[xw], %[xw], ror #8\n\t"
                             "smlabb %[a0], %[x02], %[w02], %[a0]\n\t"
                             "smlatt %[a2], %[x02], %[w02], %[a2]\n\t"
                             "smlabb %[a1], %[xw], %[w13], %[a1]\n\t"
                             "smlatt %[a3], %[xw], %[w13], %[a3]\n\t"
                             "subs   %[n], %[n], #1\n\t"
                             "bne    1b\n\t"
                             : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [tab] "+r"(tab),
                               [w] "+r"(w), [n] "+r"(left), [xw] "=&r"(xw), [x02] "=&r"(x02), [w02] "=&r"(w02),
                               [w13] "=&r"(w13)
                             : [x] "r"(xc)
                             : "cc", "memory");
        } else {
            // int8 filter [tap][out_c]: the pair's second word is the tap's weight offset;
            // two more SXTB16 widen the four weights (13 instructions per tap).
            const uint32_t wc = (uint32_t)(uintptr_t)filter + ch;
            __asm__ volatile("1:\n\t"
                             "ldrd   %[xw], %[w13], [%[tab]], #8\n\t"
                             "ldr    %[xw], [%[x], %[xw]]\n\t"
                             "ldr    %[w13], [%[wc], %[w13]]\n\t"
                             "sxtb16 %[x02], %[xw]\n\t"
                             "sxtb16 %[xw], %[xw], ror #8\n\t"
                             "sxtb16 %[w02], %[w13]\n\t"
                             "sxtb16 %[w13], %[w13], ror #8\n\t"
                             "smlabb %[a0], %[x02], %[w02], %[a0]\n\t"
                             "smlatt %[a2], %[x02], %[w02], %[a2]\n\t"
                             "smlabb %[a1], %[xw], %[w13], %[a1]\n\t"
                             "smlatt %[a3], %[xw], %[w13], %[a3]\n\t"
                             "subs   %[n], %[n], #1\n\t"
                             "bne    1b\n\t"
                             : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [tab] "+r"(tab),
                               [n] "+r"(left), [xw] "=&r"(xw), [x02] "=&r"(x02), [w02] "=&r"(w02), [w13] "=&r"(w13)
                             : [x] "r"(xc), [wc] "r"(wc)
                             : "cc", "memory");
        }
        if (c->rq.fast != NULL) {
            aiot_fp_requant4_fast(c->rq.fast + ch, r4, a0, a1, a2, a3, y + ch);
        } else {
            aiot_fp_requant4(&c->rq, ch, a0, a1, a2, a3, y + ch);
        }
    }
}

// One out-of-line copy per layout, so each assembly loop gets the registers to itself.
static __attribute__((noinline)) void dw_pixel_table_wide(const aiot_conv_params_t *c, const aiot_rq4_t *r4,
                                                          uint32_t base, const uint32_t *tab, const void *filter,
                                                          uint32_t full, uint32_t taps, const int32_t *bias, int8_t *y)
{
    dw_pixel_table_any(c, r4, base, tab, filter, 1, full, taps, bias, y);
}

static __attribute__((noinline)) void dw_pixel_table_s8(const aiot_conv_params_t *c, const aiot_rq4_t *r4,
                                                        uint32_t base, const uint32_t *tab, const void *filter,
                                                        uint32_t full, uint32_t taps, const int32_t *bias, int8_t *y)
{
    dw_pixel_table_any(c, r4, base, tab, filter, 0, full, taps, bias, y);
}

static inline __attribute__((always_inline)) void dw_pixel_table(const aiot_conv_params_t *c, const aiot_rq4_t *r4,
                                                                 uint32_t base, const uint32_t *tab,
                                                                 const void *filter, int wide, uint32_t full,
                                                                 uint32_t taps, const int32_t *bias, int8_t *y)
{
    if (wide) {
        dw_pixel_table_wide(c, r4, base, tab, filter, full, taps, bias, y);
    } else {
        dw_pixel_table_s8(c, r4, base, tab, filter, full, taps, bias, y);
    }
}
#endif

static inline __attribute__((always_inline)) aiot_status_t depthwise_any(const aiot_conv_params_t *p,
                                                                         const int8_t *input, const void *filter,
                                                                         int wide, const int32_t *bias,
                                                                         int8_t *output)
{
    const int rc = check(p, input, filter, bias, output);
    if (rc != AIOT_OK) {
        return (aiot_status_t)rc;
    }
    if (p->depth_multiplier == 0 || p->out_c != p->in_c * p->depth_multiplier || (wide && p->depth_multiplier != 1)) {
        return AIOT_ERR_PARAM;
    }
    const aiot_conv_params_t c = *p;
    const aiot_rq4_t r4 = aiot_fp_rq4(&c.rq);
    // Groups of four channels need depth multiplier 1 (input channel = output channel).
    const uint32_t full = c.depth_multiplier == 1 ? c.out_c & ~3u : 0;
    const taps_t all = {0, c.k_h, 0, c.k_w};
#ifdef AIOT_DSP
    // Per tap: (input address or offset, int8 weight offset t * out_c); the wide loop
    // reads the first of each pair (its weights follow tap by tap).
    uint32_t tab[2u * AIOT_DW_MAX_TAPS], offs[2u * AIOT_DW_MAX_TAPS];
    uint32_t zrow_words[AIOT_DW_ZP_ROW / 4u];  // in_c zero points: what a padding tap reads
    const uint32_t taps = (uint32_t)c.k_h * c.k_w;
    const int use_table = taps <= AIOT_DW_MAX_TAPS && c.in_c <= AIOT_DW_ZP_ROW;
    if (use_table) {
        memset(zrow_words, (int8_t)c.input_zero_point, (size_t)c.in_c);
        for (uint32_t ky = 0, k = 0; ky < c.k_h; ++ky) {
            for (uint32_t kx = 0; kx < c.k_w; ++kx, ++k) {
                offs[2u * k] = (uint32_t)(((size_t)ky * c.dil_h * c.in_w + (size_t)kx * c.dil_w) * c.in_c);
                offs[2u * k + 1u] = k * c.out_c;
                tab[2u * k + 1u] = k * c.out_c;
            }
        }
    }
#endif
    int8_t *y = output;
    for (int32_t oy = 0; oy < c.out_h; ++oy) {
        const int32_t iy0 = oy * c.stride_h - c.pad_top;
        for (int32_t ox = 0; ox < c.out_w; ++ox, y += c.out_c) {
            const int32_t ix0 = ox * c.stride_w - c.pad_left;
            const taps_t t = valid_taps(iy0, c.k_h, c.dil_h, c.in_h, ix0, c.k_w, c.dil_w, c.in_w);
            const int inside = t.ky0 == 0 && t.ky1 == c.k_h && t.kx0 == 0 && t.kx1 == c.k_w;
            const ptrdiff_t origin = ((ptrdiff_t)iy0 * c.in_w + ix0) * c.in_c;
            uint32_t oc = 0;
#ifdef AIOT_DSP
            if (use_table && full != 0 && inside) {
                dw_pixel_table(&c, &r4, (uint32_t)(uintptr_t)(input + origin), offs, filter, wide, full, taps, bias, y);
                oc = full;
            } else if (use_table && full != 0) {
                for (uint32_t ky = 0, k = 0; ky < c.k_h; ++ky) {
                    const int32_t iy = iy0 + (int32_t)(ky * c.dil_h);
                    for (uint32_t kx = 0; kx < c.k_w; ++kx, ++k) {
                        const int32_t ix = ix0 + (int32_t)(kx * c.dil_w);
                        const int in = iy >= 0 && iy < c.in_h && ix >= 0 && ix < c.in_w;
                        tab[2u * k] = in ? (uint32_t)(uintptr_t)(input + ((size_t)iy * c.in_w + (size_t)ix) * c.in_c)
                                    : (uint32_t)(uintptr_t)zrow_words;
                    }
                }
                dw_pixel_table(&c, &r4, 0, tab, filter, wide, full, taps, bias, y);
                oc = full;
            }
#endif
            if (oc != 0) {
                // done by the table path
            } else if (inside) {
                {
                    dw_pixel_groups(&c, &r4, input + origin, filter, wide, full, all, bias, 0, y);
                }
                oc = full;
            } else if (c.border_bias != NULL) {
                if (t.ky0 < t.ky1 && t.kx0 < t.kx1) {
                    const ptrdiff_t first = origin + ((ptrdiff_t)t.ky0 * c.dil_h * c.in_w + (ptrdiff_t)t.kx0 * c.dil_w) * c.in_c;
                    dw_pixel_groups(&c, &r4, input + first, filter, wide, full, t, c.border_bias, c.input_zero_point, y);
                } else {  // no tap inside: the unfolded bias alone
                    dw_pixel_groups(&c, &r4, input, filter, wide, full, t, c.border_bias, c.input_zero_point, y);
                }
                oc = full;
            }
            for (; oc < c.out_c; ++oc) {
                y[oc] = dw_channel_general(&c, input, filter, wide, bias, iy0, ix0, oc);
            }
        }
    }
    return AIOT_OK;
}

aiot_status_t aiot_depthwise_conv2d_s8(const aiot_conv_params_t *p, const int8_t *input, const int8_t *filter,
                                       const int32_t *bias, int8_t *output)
{
    return depthwise_any(p, input, filter, 0, bias, output);
}

aiot_status_t aiot_depthwise_conv2d_s8_wide(const aiot_conv_params_t *p, const int8_t *input,
                                            const int16_t *filter, const int32_t *bias, int8_t *output)
{
    return depthwise_any(p, input, filter, 1, bias, output);
}
