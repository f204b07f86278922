//! CONV_2D and DEPTHWISE_CONV_2D int8, NHWC, batch 1, TFLM reference arithmetic
//! (per-channel requantization, dilation). Output pixels whose window lies inside the
//! image run packed dot products per kernel row; border pixels take the general path.
#include "aiot/simd.h"

#include <stddef.h>

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
    const uint32_t full = c.out_c & ~3u;
    const size_t row_stride = (size_t)c.in_w * c.in_c;
    // The packed rows may be longer than the window (zero weights): those reads must stay
    // inside the input tensor, so pixels too close to its end take the general path.
    const size_t in_bytes = (size_t)c.in_h * row_stride;
    const size_t overhang = seg - (uint32_t)c.k_w * c.in_c;
    const aiot_requant_t rq = c.rq;  // local: the int8 stores could alias the params
    const aiot_rq4_t r4 = aiot_fp_rq4(&rq);
    int8_t *y = output;
    for (int32_t oy = 0; oy < c.out_h; ++oy) {
        const int32_t iy0 = oy * c.stride_h - c.pad_top;
        const int rows_inside = iy0 >= 0 && iy0 + (c.k_h - 1) * c.dil_h < c.in_h;
        for (int32_t ox = 0; ox < c.out_w; ++ox, y += c.out_c) {
            const int32_t ix0 = ox * c.stride_w - c.pad_left;
            const size_t last_end = ((size_t)(iy0 + (c.k_h - 1) * c.dil_h) * c.in_w + (size_t)(ix0 + c.k_w)) * c.in_c;
            if (!rows_inside || c.dil_w != 1 || ix0 < 0 || ix0 + c.k_w > c.in_w || last_end + overhang > in_bytes) {
                conv_pixel_general(p, input, filter, wide, bias, iy0, ix0, y);
                continue;
            }
            const int8_t *x0 = input + (size_t)iy0 * row_stride + (size_t)ix0 * c.in_c;
            if (wide) {
                const int16_t *w = (const int16_t *)filter;
                for (uint32_t oc = 0; oc < c.out_c; oc += 4) {
                    int32_t acc[4] = {0, 0, 0, 0};
                    for (uint32_t ky = 0; ky < c.k_h; ++ky) {
                        w = aiot_dot4_wide(w, x0 + (size_t)ky * c.dil_h * row_stride, seg, acc);
                    }
                    if (oc + 4 <= c.out_c && rq.fast != NULL) {
                        aiot_fp_requant4_fast(rq.fast + oc, &r4, acc[0] + bias[oc], acc[1] + bias[oc + 1],
                                              acc[2] + bias[oc + 2], acc[3] + bias[oc + 3], y + oc);
                    } else if (oc + 4 <= c.out_c) {
                        aiot_fp_requant4(&rq, oc, acc[0] + bias[oc], acc[1] + bias[oc + 1], acc[2] + bias[oc + 2],
                                         acc[3] + bias[oc + 3], y + oc);
                    } else {  // zero-padded rows of the last group: computed, never stored
                        for (uint32_t j = 0; oc + j < c.out_c; ++j) {
                            y[oc + j] = aiot_requant_s8(&rq, oc + j, acc[j] + bias[oc + j]);
                        }
                    }
                }
                continue;
            }
            const int8_t *w = (const int8_t *)filter;
            for (uint32_t oc = 0; oc < full; oc += 4) {
                int32_t acc[4] = {bias[oc], bias[oc + 1], bias[oc + 2], bias[oc + 3]};
                for (uint32_t ky = 0; ky < c.k_h; ++ky, w += 4u * seg) {
                    aiot_dot4_s8(w, x0 + (size_t)ky * c.dil_h * row_stride, seg, acc);
                }
                if (rq.fast != NULL) {
                    aiot_fp_requant4_fast(rq.fast + oc, &r4, acc[0], acc[1], acc[2], acc[3], y + oc);
                } else {
                    aiot_fp_requant4(&rq, oc, acc[0], acc[1], acc[2], acc[3], y + oc);
                }
            }
            for (uint32_t oc = full; oc < c.out_c; ++oc) {
                int32_t acc = bias[oc];
                for (uint32_t ky = 0; ky < c.k_h; ++ky, w += seg) {
                    acc += aiot_dot1_s8(w, x0 + (size_t)ky * c.dil_h * row_stride, seg);
                }
                y[oc] = aiot_requant_s8(&c.rq, oc, acc);
            }
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

aiot_status_t aiot_depthwise_conv2d_s8(const aiot_conv_params_t *p, const int8_t *input, const int8_t *filter,
                                       const int32_t *bias, int8_t *output)
{
    const int rc = check(p, input, filter, bias, output);
    if (rc != AIOT_OK) {
        return (aiot_status_t)rc;
    }
    if (p->depth_multiplier == 0 || p->out_c != p->in_c * p->depth_multiplier) {
        return AIOT_ERR_PARAM;
    }
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, out_c = p->out_c;
    int8_t *y = output;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            for (int32_t oc = 0; oc < out_c; ++oc) {
                const int32_t ic = oc / p->depth_multiplier;
                int32_t acc = bias[oc];
                for (int32_t ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = iy0 + ky * p->dil_h;
                    for (int32_t kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = ix0 + kx * p->dil_w;
                        const int32_t wv = filter[((size_t)ky * p->k_w + kx) * out_c + oc];
                        const int inside = iy >= 0 && iy < in_h && ix >= 0 && ix < in_w;
                        const int32_t xv = inside ? input[((size_t)iy * in_w + ix) * in_c + ic] : p->input_zero_point;
                        acc += wv * xv;
                    }
                }
                *y++ = aiot_fp_requant(&p->rq, (uint32_t)oc, acc);
            }
        }
    }
    return AIOT_OK;
}
