//! TRANSPOSE_CONV int8 (NHWC, batch 1, OHWI filter) as a gather: each output pixel sums
//! the taps whose input pixel lands on it, with the same integers TFLM's scatter into an
//! int32 scratch adds up (integer sums do not depend on their order), then the bias and
//! the per-channel requantization. No scratch buffer.
#include "aiot/simd.h"

#include <stddef.h>
#include <string.h>

aiot_status_t aiot_transpose_conv_s8(const aiot_transpose_conv_params_t *p, const int8_t *input,
                                     const int8_t *weights, const int32_t *bias, int8_t *output)
{
    if (p == NULL || input == NULL || weights == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    if (p->stride_h == 0 || p->stride_w == 0) {
        return AIOT_ERR_PARAM;
    }
    int8_t *y = output;
    for (int32_t oy = 0; oy < (int32_t)p->out_h; ++oy) {
        for (int32_t ox = 0; ox < (int32_t)p->out_w; ++ox) {
            for (uint32_t oc = 0; oc < p->out_c; ++oc) {
                int32_t acc = 0;
                for (int32_t fy = 0; fy < (int32_t)p->k_h; ++fy) {
                    // output row oy = iy * stride_h - pad_h + fy
                    const int32_t ty = oy + (int32_t)p->pad_h - fy;
                    if (ty < 0 || ty % (int32_t)p->stride_h != 0 || ty / (int32_t)p->stride_h >= (int32_t)p->in_h) {
                        continue;
                    }
                    const int32_t iy = ty / (int32_t)p->stride_h;
                    for (int32_t fx = 0; fx < (int32_t)p->k_w; ++fx) {
                        const int32_t tx = ox + (int32_t)p->pad_w - fx;
                        if (tx < 0 || tx % (int32_t)p->stride_w != 0 ||
                            tx / (int32_t)p->stride_w >= (int32_t)p->in_w) {
                            continue;
                        }
                        const int32_t ix = tx / (int32_t)p->stride_w;
                        const int8_t *x = input + ((size_t)iy * p->in_w + (size_t)ix) * p->in_c;
                        const int8_t *w = weights + (((size_t)oc * p->k_h + (size_t)fy) * p->k_w + (size_t)fx) * p->in_c;
                        for (uint32_t ic = 0; ic < p->in_c; ++ic) {
                            acc += ((int32_t)x[ic] + p->input_offset) * (int32_t)w[ic];
                        }
                    }
                }
                if (bias != NULL) {
                    acc += bias[oc];
                }
                *y++ = aiot_fp_requant(&p->rq, oc, acc);
            }
        }
    }
    return AIOT_OK;
}

// The same sums by output phase (speed mode). Output row oy = iy * stride_h - pad_h + fy,
// so the rows of one phase ((oy + pad_h) % stride_h = py) take the taps fy = py + j *
// stride_h from input row q - j (q = (oy + pad_h) / stride_h); likewise the columns, whose
// taps, listed from the last one, read consecutive input pixels. Each (phase, fy) is one
// "sub-row": a contiguous run of ni x in_c input bytes against a [out_c][ni x in_c] matrix
// in aiot_dot4_wide's layout: a stride-1 convolution per phase, with SMLAD on DSP cores.
// The input zero point is folded per sub-row (row_bias = input_offset x the sub-row's
// weight sums), added when the sub-row's input row exists; a sub-row cut by the left or
// right edge reads a stack copy with the zero point where it lies outside. The size
// mode's entry point runs the same walk over packed int8 weights (aiot_dot4_s8).
// (Forced inline into the two entry points, so each runs one dot product form.)
static inline __attribute__((always_inline)) aiot_status_t
phases(const aiot_transpose_conv_params_t *p, const aiot_tconv_rows_t *rows, const int8_t *input,
       const int16_t *wide, const int8_t *packed, const int32_t *row_bias, const int32_t *bias, int8_t *output)
{
    const void *weights = wide != NULL ? (const void *)wide : (const void *)packed;
    if (p == NULL || rows == NULL || input == NULL || weights == NULL || row_bias == NULL || bias == NULL ||
        output == NULL) {
        return AIOT_ERR_NULL;
    }
    if (p->stride_h == 0 || p->stride_w == 0) {
        return AIOT_ERR_PARAM;
    }
    const int32_t sh = p->stride_h, sw = p->stride_w, k_w = p->k_w;
    const int32_t in_h = p->in_h, in_w = p->in_w;
    const uint32_t in_c = p->in_c, out_c = p->out_c, full = out_c & ~3u;
    const uint32_t padded = (out_c + 3u) & ~3u;  // row_bias entries per sub-row
    const int32_t max_ni = (k_w + sw - 1) / sw;
    if ((uint32_t)((p->k_h + sh - 1) / sh) > AIOT_TCONV_MAX_ROWS ||
        (uint32_t)((p->k_h + sh - 1) / sh) * (uint32_t)max_ni * in_c > AIOT_TCONV_PATCH) {
        return AIOT_ERR_PARAM;  // the generator takes the int8 kernel for these
    }
    const aiot_requant_t rq = p->rq;  // local: the int8 stores could alias the params
    const aiot_rq4_t r4 = aiot_fp_rq4(&rq);
    const int8_t zero_point = (int8_t)(-p->input_offset);
    int8_t patch[AIOT_TCONV_PATCH];
    const int8_t *xs[AIOT_TCONV_MAX_ROWS];
    uint32_t subrow[AIOT_TCONV_MAX_ROWS];
    int8_t *y = output;
    for (int32_t oy = 0; oy < (int32_t)p->out_h; ++oy) {
        const int32_t ty = oy + (int32_t)p->pad_h, py = ty % sh, q = ty / sh;
        for (int32_t ox = 0; ox < (int32_t)p->out_w; ++ox) {
            const int32_t tx = ox + (int32_t)p->pad_w, px = tx % sw, r = tx / sw;
            const uint32_t ph = (uint32_t)(py * sw + px);
            const int32_t ni = px < k_w ? (k_w - px + sw - 1) / sw : 0;
            const int32_t ix0 = r - ni + 1;  // the input pixel of the sub-rows' first tap
            const uint32_t len = (uint32_t)ni * in_c;
            const int cut = ix0 < 0 || r >= in_w;
            uint32_t n = 0;
            int8_t *free_patch = patch;
            for (uint32_t s = rows->first[ph], j = 0; s < rows->first[ph + 1u]; ++s, ++j) {
                const int32_t iy = q - (int32_t)j;
                if (iy < 0 || iy >= in_h) {
                    continue;
                }
                const int8_t *x = input + ((size_t)iy * (size_t)in_w) * in_c;
                if (cut) {
                    for (int32_t i = 0; i < ni; ++i) {
                        const int32_t ix = ix0 + i;
                        if (ix >= 0 && ix < in_w) {
                            memcpy(free_patch + (size_t)i * in_c, x + (size_t)ix * in_c, in_c);
                        } else {
                            memset(free_patch + (size_t)i * in_c, zero_point, in_c);
                        }
                    }
                    xs[n] = free_patch;
                    free_patch += len;
                } else {
                    xs[n] = x + (size_t)ix0 * in_c;
                }
                subrow[n++] = s;
            }
            for (uint32_t o = 0; o < padded; o += 4) {
                int32_t acc[4] = {0, 0, 0, 0};
                for (uint32_t i = 0; i < n; ++i) {
                    const uint32_t s = subrow[i];
                    const int32_t *rb = row_bias + s * padded + o;
                    acc[0] += rb[0];
                    acc[1] += rb[1];
                    acc[2] += rb[2];
                    acc[3] += rb[3];
                    if (wide != NULL) {
                        (void)aiot_dot4_wide(wide + rows->offset[s] + o * len, xs[i], len, acc);
                    } else if (o < full) {
                        aiot_dot4_s8(packed + rows->offset[s] + o * len, xs[i], len, acc);
                    } else {  // the last rows stay plain in the packed layout
                        for (uint32_t c = o; c < out_c; ++c) {
                            acc[c - o] += aiot_dot1_s8(packed + rows->offset[s] + c * len, xs[i], len);
                        }
                    }
                }
                if (o < full) {
                    if (rq.fast != NULL) {
                        aiot_fp_requant4_fast(rq.fast + o, &r4, acc[0] + bias[o], acc[1] + bias[o + 1],
                                              acc[2] + bias[o + 2], acc[3] + bias[o + 3], y + o);
                    } else {
                        aiot_fp_requant4(&rq, o, acc[0] + bias[o], acc[1] + bias[o + 1], acc[2] + bias[o + 2],
                                         acc[3] + bias[o + 3], y + o);
                    }
                } else {  // the zero-padded channels of the last group are computed, never stored
                    for (uint32_t c = o; c < out_c; ++c) {
                        y[c] = aiot_requant_s8(&rq, c, acc[c - o] + bias[c]);
                    }
                }
            }
            y += out_c;
        }
    }
    return AIOT_OK;
}

aiot_status_t aiot_transpose_conv_s8_wide(const aiot_transpose_conv_params_t *p, const aiot_tconv_rows_t *rows,
                                          const int8_t *input, const int16_t *weights, const int32_t *row_bias,
                                          const int32_t *bias, int8_t *output)
{
    return phases(p, rows, input, weights, NULL, row_bias, bias, output);
}

aiot_status_t aiot_transpose_conv_s8_packed(const aiot_transpose_conv_params_t *p, const aiot_tconv_rows_t *rows,
                                            const int8_t *input, const int8_t *weights, const int32_t *row_bias,
                                            const int32_t *bias, int8_t *output)
{
    return phases(p, rows, input, NULL, weights, row_bias, bias, output);
}
